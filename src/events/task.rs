//! One camera's events: turns cry events and MQTT commands into clips, keeps the Event select,
//! and stops event playback when the selection changes or the switch goes OFF.
//!
//! One recording per kind at a time: a trigger while that kind records extends its end. Each
//! clip ends `post_roll` after its event ends, and at the latest after [`MAX_EVENT`].

use super::recorder::{Recorder, Recording};
use super::store::{ClipMeta, ClipStore};
use super::{Kind, Slot};
use crate::camera::ViewerControl;
use crate::error::{Error, ErrorKind};
use crate::metrics::CameraCounters;
use crate::settings::Settings;
use crate::snapshot::policy::Kind as SnapshotKind;
use crate::snapshot::{Request as SnapshotRequest, SnapshotHandle};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest event a clip covers; a motion `ON` that never sees `OFF` ends here.
pub const MAX_EVENT: Duration = Duration::from_secs(600);
/// A manual clip without a duration.
pub const DEFAULT_MANUAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub enum EventRequest {
    Motion(bool),
    /// "Record clip": the event lasts this long (then the post-roll).
    RecordClip(Duration),
    Select(Slot),
    EventStream(bool),
    CryStarted(SystemTime),
    CryEnded,
}

/// What the MQTT publisher shows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventsState {
    /// The select's option: the stored choice, else the slot of the newest clip.
    pub selected: Option<Slot>,
    pub clip: Option<ClipMeta>,
    pub motion: bool,
    pub recording: Vec<Kind>,
    pub playing: usize,
    /// The last recording failure (disk full…), cleared when the next recording starts: the
    /// store announces a saved clip before its task reports back, so clearing on save would
    /// briefly show the new clip beside the old error.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventsHandle {
    requests: mpsc::Sender<EventRequest>,
    state: watch::Receiver<EventsState>,
}

impl EventsHandle {
    pub fn state(&self) -> watch::Receiver<EventsState> {
        self.state.clone()
    }

    pub async fn request(&self, request: EventRequest) -> Result<(), Error> {
        self.requests
            .send(request)
            .await
            .map_err(|_| Error::new(ErrorKind::Internal, "the events task stopped"))
    }

    /// From a thread that must not wait (cry detection).
    pub fn try_request(&self, request: EventRequest) {
        if self.requests.try_send(request).is_err() {
            tracing::warn!("an event was dropped: the events task is behind");
        }
    }
}

/// The clip the Event select points at: the chosen slot, else the newest clip.
pub fn selected_clip(settings: &Settings, store: &ClipStore, camera: &str) -> Option<ClipMeta> {
    match settings.camera(camera).selected_event {
        Some(slot) => store.nth(slot.kind, slot.index),
        None => store.newest(),
    }
}

pub struct EventsTask {
    pub camera: String,
    pub post_roll: Duration,
    pub recorder: Arc<Recorder>,
    pub store: Arc<ClipStore>,
    pub settings: Arc<Settings>,
    pub snapshot: SnapshotHandle,
    pub viewers: Arc<dyn ViewerControl>,
    pub playing: watch::Receiver<usize>,
    /// Where failed clips are counted (`/metrics`).
    pub counters: Arc<CameraCounters>,
    pub cancel: CancellationToken,
}

enum Slotted {
    /// Waiting for the camera's first frames; the end may already be known.
    Starting { end: Option<Instant> },
    Running {
        recording: Recording,
        end: Option<Instant>,
        since: Instant,
    },
}

enum Internal {
    Started(Kind, Result<Recording, Error>),
    Finished(Kind, Result<ClipMeta, Error>),
}

impl EventsTask {
    pub fn spawn(self) -> (EventsHandle, tokio::task::JoinHandle<()>) {
        let (requests_tx, requests) = mpsc::channel(32);
        let (state_tx, state) = watch::channel(EventsState::default());
        let span = crate::camera::span(&self.camera);
        let task = tokio::spawn(tracing::Instrument::instrument(
            self.run(requests, state_tx),
            span,
        ));
        (
            EventsHandle {
                requests: requests_tx,
                state,
            },
            task,
        )
    }

    async fn run(
        mut self,
        mut requests: mpsc::Receiver<EventRequest>,
        state: watch::Sender<EventsState>,
    ) {
        let (internal_tx, mut internal) = mpsc::channel::<Internal>(16);
        let mut slots: HashMap<Kind, Slotted> = HashMap::new();
        let mut clips = self.store.subscribe();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut motion = false;
        let mut error: Option<String> = None;
        loop {
            self.publish(&state, &slots, motion, &error);
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                Some(request) = requests.recv() => {
                    let now = Instant::now();
                    match request {
                        EventRequest::Motion(on) => {
                            motion = on;
                            if on {
                                self.trigger(&mut slots, Kind::Motion, SystemTime::now(), None, &internal_tx);
                            } else {
                                self.end(&mut slots, Kind::Motion, now + self.post_roll);
                            }
                        }
                        EventRequest::RecordClip(length) => {
                            let end = now + length + self.post_roll;
                            self.trigger(&mut slots, Kind::Manual, SystemTime::now(), Some(end), &internal_tx);
                        }
                        EventRequest::CryStarted(at) => {
                            self.trigger(&mut slots, Kind::Cry, at, None, &internal_tx);
                        }
                        EventRequest::CryEnded => self.end(&mut slots, Kind::Cry, now + self.post_roll),
                        EventRequest::Select(slot) => {
                            if let Err(e) = self.settings.update(&self.camera, |s| s.selected_event = Some(slot)) {
                                tracing::warn!("the Event selection is not saved: {e:#}");
                            }
                            let stopped = self.viewers.stop_event_playback(&self.camera);
                            tracing::info!("event {} selected{}", slot.label(), if stopped > 0 { format!("; stopped {stopped} playback(s)") } else { String::new() });
                        }
                        EventRequest::EventStream(true) => tracing::info!(
                            "Event stream ON ignored: playback starts when a client opens the event stream"
                        ),
                        EventRequest::EventStream(false) => {
                            let stopped = self.viewers.stop_event_playback(&self.camera);
                            tracing::info!("Event stream OFF: stopped {stopped} playback(s)");
                        }
                    }
                }
                Some(message) = internal.recv() => match message {
                    Internal::Started(kind, Ok(recording)) => {
                        error = None;
                        let end = match slots.remove(&kind) {
                            Some(Slotted::Starting { end }) => end,
                            _ => None,
                        };
                        slots.insert(kind, Slotted::Running { recording, end, since: Instant::now() });
                    }
                    Internal::Started(kind, Err(e)) | Internal::Finished(kind, Err(e)) => {
                        slots.remove(&kind);
                        crate::metrics::count(&self.counters.clip_failures, 1);
                        tracing::warn!("{} clip not recorded: {e}", kind.key());
                        error = Some(e.message().to_string());
                    }
                    Internal::Finished(_, Ok(_)) => {}
                },
                _ = clips.changed() => {}
                _ = self.playing.changed() => {}
                _ = tick.tick() => self.finish_due(&mut slots, &internal_tx),
            }
        }
        // SIGTERM: every clip is finished now, without its post-roll, so none is cut short.
        for (kind, slotted) in slots.drain() {
            if let Slotted::Running { recording, .. } = slotted
                && let Err(e) = recording.finish().await
            {
                crate::metrics::count(&self.counters.clip_failures, 1);
                tracing::warn!("{} clip not finished at shutdown: {e}", kind.key());
            }
        }
    }

    fn trigger(
        &self,
        slots: &mut HashMap<Kind, Slotted>,
        kind: Kind,
        started_at: SystemTime,
        end: Option<Instant>,
        internal: &mpsc::Sender<Internal>,
    ) {
        match slots.get_mut(&kind) {
            // Already recording this kind: the event goes on.
            Some(Slotted::Starting { end: current } | Slotted::Running { end: current, .. }) => {
                *current = match (end, *current) {
                    (Some(new), Some(old)) => Some(new.max(old)),
                    _ => None,
                };
            }
            None => {
                slots.insert(kind, Slotted::Starting { end });
                let recorder = self.recorder.clone();
                let internal = internal.clone();
                tokio::spawn(async move {
                    let result = recorder.start(kind, started_at).await;
                    let _ = internal.send(Internal::Started(kind, result)).await;
                });
                let snapshot = self.snapshot.clone();
                let snapshot_kind = match kind {
                    Kind::Cry => None, // cry detection asks for its own
                    Kind::Motion => Some(SnapshotKind::Motion),
                    Kind::Manual => Some(SnapshotKind::Manual),
                };
                if let Some(snapshot_kind) = snapshot_kind {
                    tokio::spawn(async move {
                        let _ = snapshot
                            .request(SnapshotRequest::Event(snapshot_kind))
                            .await;
                    });
                }
            }
        }
    }

    fn end(&self, slots: &mut HashMap<Kind, Slotted>, kind: Kind, at: Instant) {
        if let Some(Slotted::Starting { end } | Slotted::Running { end, .. }) = slots.get_mut(&kind)
        {
            *end = Some(at);
        }
    }

    fn finish_due(&self, slots: &mut HashMap<Kind, Slotted>, internal: &mpsc::Sender<Internal>) {
        let now = Instant::now();
        let due: Vec<Kind> = slots
            .iter()
            .filter_map(|(kind, slotted)| match slotted {
                Slotted::Running { end, since, .. }
                    if end.is_some_and(|e| e <= now) || now - *since >= MAX_EVENT =>
                {
                    Some(*kind)
                }
                _ => None,
            })
            .collect();
        for kind in due {
            if let Some(Slotted::Running { recording, .. }) = slots.remove(&kind) {
                let internal = internal.clone();
                tokio::spawn(async move {
                    let result = recording.finish().await;
                    let _ = internal.send(Internal::Finished(kind, result)).await;
                });
            }
        }
    }

    fn publish(
        &self,
        state: &watch::Sender<EventsState>,
        slots: &HashMap<Kind, Slotted>,
        motion: bool,
        error: &Option<String>,
    ) {
        let chosen = self.settings.camera(&self.camera).selected_event;
        let clip = selected_clip(&self.settings, &self.store, &self.camera);
        let selected = chosen.or_else(|| {
            clip.as_ref().map(|c| Slot {
                kind: c.kind,
                index: 1,
            })
        });
        let mut recording: Vec<Kind> = slots.keys().copied().collect();
        recording.sort();
        let next = EventsState {
            selected,
            clip,
            motion,
            recording,
            playing: *self.playing.borrow(),
            error: error.clone(),
        };
        state.send_if_modified(|current| {
            let changed = *current != next;
            *current = next;
            changed
        });
    }
}
