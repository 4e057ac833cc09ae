//! Still images of a camera: for the MQTT "Snapshot" camera entity and for `/api/frame.jpeg`.
//!
//! A snapshot never costs a second camera connection. In order of cost:
//! 1. the camera streams anyway: decode the hub's cached keyframe (no waiting for the next one);
//! 2. the camera is idle and has a `snapshot_url`: fetch the camera's own still image;
//! 3. otherwise take a short [`Purpose::Snapshot`] lease: connect, first keyframe, decode, release.
//!
//! A keyframe that does not decode is retried on the next one. [`SnapshotTask`] runs the modes,
//! the interval and the button for one camera and publishes through a `watch` channel.

pub mod encode;
pub mod fetch;
pub mod policy;

use crate::camera::CameraState;
use crate::camera::demand::{Demand, Purpose};
use crate::camera::state::Status;
use crate::config::SnapshotConfig;
use crate::error::{Error, ErrorKind};
use crate::media::hub::{HubStatus, Keyframe};
use crate::settings::{CameraSettings, Settings};
use encode::Size;
use policy::{Decision, Kind, Mode, RateLimit};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Where a snapshot's picture came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The cached keyframe of a stream that was running anyway.
    LiveStream,
    /// A short connection made for this snapshot.
    Connection,
    /// The camera's own still-image URL.
    SnapshotUrl,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub jpeg: bytes::Bytes,
    pub width: u32,
    pub height: u32,
    pub taken_at: SystemTime,
    pub source: Source,
}

/// At most this many sizes are cached per camera for `frame.jpeg?cache=`.
const CACHED_SIZES: usize = 8;
/// Decode attempts on successive keyframes before giving up.
const DECODE_ATTEMPTS: usize = 3;

/// Makes still images of one camera from whatever costs least. Shared by the MQTT snapshot
/// task and the HTTP API.
pub struct Snapshotter {
    pub camera: String,
    config: SnapshotConfig,
    start_timeout: Duration,
    hub: HubStatus,
    demand: Demand,
    state: watch::Receiver<CameraState>,
    http: reqwest::Client,
    cache: Mutex<HashMap<Size, Snapshot>>,
}

impl Snapshotter {
    pub fn new(
        camera: &crate::config::CameraConfig,
        hub: HubStatus,
        demand: Demand,
        state: watch::Receiver<CameraState>,
    ) -> Self {
        Self {
            camera: camera.id.clone(),
            config: camera.snapshot.clone(),
            start_timeout: camera.start_timeout,
            hub,
            demand,
            state,
            http: fetch::client(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The size of the MQTT snapshot (`snapshot_width`).
    pub fn configured_size(&self) -> Size {
        Size {
            width: self.config.width,
            height: None,
        }
    }

    /// Whether the camera runs only because snapshots asked for it.
    fn held_only_by_snapshots(&self) -> bool {
        let demand = self.demand.snapshot();
        demand.total() == demand.snapshots
    }

    /// Whether the camera streams right now, so a snapshot is free.
    pub fn is_streaming(&self) -> bool {
        self.hub.subscribe_keyframes().borrow().is_some()
    }

    /// A snapshot no older than `max_age` if one was made, else a new one.
    pub async fn capture_cached(&self, size: Size, max_age: Duration) -> Result<Snapshot, Error> {
        let cached = self.lock_cache().get(&size).cloned();
        if let Some(snapshot) = cached {
            if snapshot.taken_at.elapsed().is_ok_and(|age| age <= max_age) {
                return Ok(snapshot);
            }
        }
        self.capture(size).await
    }

    /// The newest snapshot made, of any size.
    pub fn newest(&self) -> Option<Snapshot> {
        self.lock_cache()
            .values()
            .max_by_key(|s| s.taken_at)
            .cloned()
    }

    /// A new snapshot, from the cheapest source there is.
    pub async fn capture(&self, size: Size) -> Result<Snapshot, Error> {
        let mut keyframes = self.hub.subscribe_keyframes();
        let current = keyframes.borrow_and_update().clone();
        let snapshot = match current {
            Some(keyframe) => {
                self.decode_stream(&mut keyframes, Some(keyframe), size, Source::LiveStream)
                    .await?
            }
            None => self.capture_idle_camera(&mut keyframes, size).await?,
        };
        let mut cache = self.lock_cache();
        if cache.len() >= CACHED_SIZES && !cache.contains_key(&size) {
            cache.clear();
        }
        cache.insert(size, snapshot.clone());
        Ok(snapshot)
    }

    async fn capture_idle_camera(
        &self,
        keyframes: &mut watch::Receiver<Option<Keyframe>>,
        size: Size,
    ) -> Result<Snapshot, Error> {
        if let Some(url) = &self.config.url {
            match fetch::fetch(&self.http, url).await {
                Ok(jpeg) => {
                    let sample = gstreamer::Sample::builder()
                        .buffer(&gstreamer::Buffer::from_slice(jpeg))
                        .caps(&gstreamer::Caps::builder("image/jpeg").build())
                        .build();
                    return self.encode(sample, size, Source::SnapshotUrl).await;
                }
                Err(e) => tracing::warn!("{e}; taking the snapshot from the stream instead"),
            }
        }
        let _lease = self.demand.lease(Purpose::Snapshot);
        self.decode_stream(keyframes, None, size, Source::Connection)
            .await
    }

    /// Decodes `first` (or the next keyframe), moving on to the next keyframe if it is broken.
    async fn decode_stream(
        &self,
        keyframes: &mut watch::Receiver<Option<Keyframe>>,
        mut next: Option<Keyframe>,
        size: Size,
        source: Source,
    ) -> Result<Snapshot, Error> {
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        let mut last_error = None;
        for _ in 0..DECODE_ATTEMPTS {
            let keyframe = match next.take() {
                Some(keyframe) => keyframe,
                None => {
                    let after = last_error.as_ref().map(|(seq, _)| *seq);
                    self.next_keyframe(keyframes, after, deadline).await?
                }
            };
            match self.encode(keyframe.sample, size, source).await {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => {
                    tracing::warn!("a keyframe did not decode ({e}); trying the next one");
                    last_error = Some((keyframe.seq, e));
                }
            }
        }
        Err(last_error.map_or_else(
            || Error::new(ErrorKind::Internal, "no keyframe was tried"),
            |(_, e)| e,
        ))
    }

    /// Waits for a keyframe newer than `after`, giving up early on a camera that cannot come up.
    async fn next_keyframe(
        &self,
        keyframes: &mut watch::Receiver<Option<Keyframe>>,
        after: Option<u64>,
        deadline: tokio::time::Instant,
    ) -> Result<Keyframe, Error> {
        let mut state = self.state.clone();
        let newer = |k: &Option<Keyframe>| k.as_ref().is_some_and(|k| Some(k.seq) > after);
        // The camera is not delivering: worth trying again later.
        let unavailable = |message: String| Error::new(ErrorKind::Transient, message);
        tokio::select! {
            found = keyframes.wait_for(newer) => match found {
                Ok(keyframe) => Ok(keyframe.clone().expect("wait_for checked it")),
                Err(_) => Err(unavailable("the camera is shutting down".into())),
            },
            stuck = state.wait_for(|s| s.stuck) => Err(unavailable(stuck
                .ok()
                .and_then(|s| s.error.clone())
                .unwrap_or_else(|| "the camera failed".into()))),
            _ = tokio::time::sleep_until(deadline) => {
                let state = self.state.borrow();
                Err(unavailable(match (&state.error, state.status) {
                    (Some(error), _) => error.clone(),
                    (None, Status::Active) => format!("no keyframe within {} s", self.start_timeout.as_secs()),
                    (None, _) => format!("the camera did not deliver video within {} s", self.start_timeout.as_secs()),
                }))
            }
        }
    }

    async fn encode(
        &self,
        sample: gstreamer::Sample,
        size: Size,
        source: Source,
    ) -> Result<Snapshot, Error> {
        let internal = |message: String| Error::new(ErrorKind::Internal, message);
        // Each encode decodes a whole keyframe: a crowd of requests for many cameras waits its
        // turn instead of taking every core and hundreds of MB at once.
        static ENCODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let _turn = ENCODES
            .acquire()
            .await
            .map_err(|_| internal("the encoder is shutting down".into()))?;
        let quality = self.config.quality;
        let encoded = tokio::task::spawn_blocking(move || encode::to_jpeg(&sample, size, quality))
            .await
            .map_err(|e| internal(format!("the encoder crashed: {e}")))?
            .map_err(internal)?;
        Ok(Snapshot {
            jpeg: encoded.jpeg,
            width: encoded.width,
            height: encoded.height,
            taken_at: SystemTime::now(),
            source,
        })
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Size, Snapshot>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the MQTT publisher shows for a camera's snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotState {
    pub settings: CameraSettings,
    /// The newest image and why it was taken.
    pub image: Option<(Arc<Snapshot>, Kind)>,
    /// Why the last attempt gave no image, redacted.
    pub error: Option<String>,
}

/// Requests from MQTT (and, later, from the event sources) to a camera's snapshot task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Request {
    SetMode(Mode),
    SetInterval(u32),
    /// The "Take snapshot" button.
    Take,
    /// An event happened (cry, motion, manual clip): a snapshot of that moment.
    Event(Kind),
}

/// Cheap to clone; the only way into a camera's snapshot task.
#[derive(Debug, Clone)]
pub struct SnapshotHandle {
    requests: mpsc::Sender<Request>,
    state: watch::Receiver<SnapshotState>,
}

impl SnapshotHandle {
    pub fn state(&self) -> watch::Receiver<SnapshotState> {
        self.state.clone()
    }

    pub async fn request(&self, request: Request) -> Result<(), Error> {
        self.requests
            .send(request)
            .await
            .map_err(|_| Error::new(ErrorKind::Internal, "the snapshot task stopped"))
    }
}

/// Runs one camera's snapshot modes: the interval, the button, events.
pub struct SnapshotTask {
    pub snapshotter: Arc<Snapshotter>,
    pub settings: Arc<Settings>,
    pub cancel: CancellationToken,
}

impl SnapshotTask {
    pub fn spawn(self) -> (SnapshotHandle, tokio::task::JoinHandle<()>) {
        let (requests_tx, requests) = mpsc::channel(16);
        let initial = SnapshotState {
            settings: self.settings.camera(&self.snapshotter.camera),
            image: None,
            error: None,
        };
        let (state_tx, state) = watch::channel(initial);
        let span = crate::camera::span(&self.snapshotter.camera);
        let task = tokio::spawn(self.run(requests, state_tx).instrument(span));
        (
            SnapshotHandle {
                requests: requests_tx,
                state,
            },
            task,
        )
    }

    async fn run(self, mut requests: mpsc::Receiver<Request>, state: watch::Sender<SnapshotState>) {
        let id = self.snapshotter.camera.clone();
        let mut rate_limit = RateLimit::default();
        let mut camera = self.snapshotter.state.clone();
        let mut was_active = false;
        let mut next_tick = tokio::time::Instant::now();
        loop {
            let settings = state.borrow().settings;
            let kind = tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(request) = requests.recv() => match request {
                    Request::SetMode(mode) => {
                        tracing::info!("snapshot mode set to {}", mode.label());
                        self.change(&state, |s| s.snapshot_mode = mode);
                        next_tick = tokio::time::Instant::now();
                        continue;
                    }
                    Request::SetInterval(seconds) => {
                        tracing::info!("snapshot interval set to {seconds} s");
                        self.change(&state, |s| s.snapshot_interval_s = seconds);
                        next_tick = tokio::time::Instant::now() + Duration::from_secs(seconds.into());
                        continue;
                    }
                    Request::Take => match rate_limit.check(Instant::now()) {
                        Ok(()) => Kind::OnDemand,
                        Err(wait) => {
                            tracing::info!(
                                "\"Take snapshot\" pressed again within {} s: ignored (the next press counts in {:.1} s)",
                                RateLimit::PERIOD.as_secs(),
                                wait.as_secs_f64()
                            );
                            continue;
                        }
                    },
                    Request::Event(kind) => kind,
                },
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick = tokio::time::Instant::now()
                        + Duration::from_secs(settings.snapshot_interval_s.into());
                    Kind::Interval
                }
                Ok(()) = camera.changed() => {
                    // Auto: a stream that someone else started makes a free snapshot.
                    let active = camera.borrow_and_update().status == Status::Active;
                    let started = active && !was_active;
                    was_active = active;
                    if !started
                        || settings.snapshot_mode != Mode::Auto
                        || self.snapshotter.held_only_by_snapshots()
                    {
                        continue;
                    }
                    next_tick = tokio::time::Instant::now()
                        + Duration::from_secs(settings.snapshot_interval_s.into());
                    Kind::Interval
                }
            };
            let go = match policy::decide(settings.snapshot_mode, kind) {
                Decision::Skip => false,
                Decision::Take => true,
                Decision::TakeIfStreaming => self.snapshotter.is_streaming(),
            };
            if !go {
                continue;
            }
            let size = self.snapshotter.configured_size();
            let result = tokio::select! {
                _ = self.cancel.cancelled() => break,
                result = self.snapshotter.capture(size) => result,
            };
            match result {
                Ok(snapshot) => {
                    tracing::debug!(
                        "{kind:?} snapshot {}x{} from {:?}, {} bytes",
                        snapshot.width,
                        snapshot.height,
                        snapshot.source,
                        snapshot.jpeg.len()
                    );
                    state.send_modify(|s| {
                        s.image = Some((Arc::new(snapshot), kind));
                        s.error = None;
                    });
                }
                Err(error) => {
                    tracing::warn!("no snapshot for camera {id}: {error}");
                    state.send_modify(|s| s.error = Some(error.message().to_string()));
                }
            }
        }
    }

    fn change(&self, state: &watch::Sender<SnapshotState>, change: impl Fn(&mut CameraSettings)) {
        if let Err(e) = self.settings.update(&self.snapshotter.camera, &change) {
            tracing::error!("{e:#}; the change holds until restart");
        }
        state.send_modify(|s| change(&mut s.settings));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::hub::Hub;
    use gstreamer as gst;

    #[tokio::test]
    async fn a_broken_keyframe_is_retried_on_the_next_one() {
        let good = encode::tests::keyframe(320, 240);
        let caps = good.caps().unwrap().to_owned();
        let broken = gst::Sample::builder()
            .buffer(&gst::Buffer::from_slice(vec![0x17u8; 2000]))
            .caps(&caps)
            .build();
        let hub = Hub::new();
        let writer = hub.begin_session();
        writer.set_tracks(false, None);
        writer.push_video(broken);
        let config = crate::config::Config::parse(
            "cameras:\n  - id: cam\n    url: rtsp://cam/x\n",
            std::path::Path::new("/tmp"),
        )
        .unwrap()
        .cameras
        .remove(0);
        let (_state_tx, state) = watch::channel(CameraState::default());
        let snapshotter = Arc::new(Snapshotter::new(
            &config,
            hub.status(),
            Demand::new(),
            state,
        ));
        let capture = tokio::spawn({
            let snapshotter = snapshotter.clone();
            async move { snapshotter.capture(Size::default()).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !capture.is_finished(),
            "gave up on the first, broken keyframe"
        );
        writer.push_video(good);
        let snapshot = capture.await.unwrap().unwrap();
        assert_eq!((snapshot.width, snapshot.height), (320, 240));
        assert_eq!(snapshot.source, Source::LiveStream);
    }
}
