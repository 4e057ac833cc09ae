//! Writes event clips: pre-roll + event + post-roll, video passed through and the hub's AAC
//! audio, as fragmented MP4 (`mp4mux fragment-duration=1000`), so a killed process leaves a
//! clip that plays up to its last second.
//!
//! The recorder is a sample tap on the hub: it keeps the pre-roll and feeds every running
//! recording from the hub's streaming threads without blocking them (appsrc queues only).

use super::preroll::{Frame, PreRoll, Track};
use super::store::{ClipMeta, ClipStore, round_tenths};
use super::{Kind, event_id};
use crate::camera::demand::{Demand, Lease, Purpose};
use crate::config::ClipConfig;
use crate::error::{Error, ErrorKind};
use crate::media::hub::{Hub, SampleTap};
use crate::media::pipeline::PipelineGuard;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long a recording of an idle camera waits for its first keyframe.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(15);
/// How long after the first video a recording waits for audio before it goes without.
const FIRST_AUDIO_WAIT: Duration = Duration::from_secs(2);
/// How long finishing a clip may take (the muxer writes its last fragment).
const FINISH_WAIT: Duration = Duration::from_secs(10);
const PREROLL_CLEARED: &str = "the pre-roll was cleared (the camera reconnected)";

/// The clip store could not write (a full disk, a share gone): space may come back.
fn disk(error: anyhow::Error) -> Error {
    Error::new(ErrorKind::Transient, error.to_string())
}

pub struct Recorder {
    camera: String,
    config: ClipConfig,
    store: Arc<ClipStore>,
    demand: Demand,
    inner: Mutex<Inner>,
}

struct Inner {
    preroll: PreRoll,
    active: Vec<Active>,
    next_id: u64,
}

/// A recording being fed by the hub.
struct Active {
    id: u64,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
    /// Subtracted from every timestamp, so the clip starts at 0.
    base: gst::ClockTime,
    last_pts: gst::ClockTime,
    /// The writer fell [`WRITER_QUEUE_BYTES`] behind and frames were dropped.
    overflowed: bool,
}

/// A running recording; [`Recording::finish`] ends it.
pub struct Recording {
    recorder: Arc<Recorder>,
    id: u64,
    meta: ClipMeta,
    guard: PipelineGuard,
    _lease: Lease,
}

impl Recorder {
    pub fn new(
        camera: &str,
        config: &ClipConfig,
        store: Arc<ClipStore>,
        hub: Arc<Hub>,
        demand: Demand,
    ) -> Arc<Self> {
        let recorder = Arc::new(Self {
            camera: camera.to_string(),
            config: config.clone(),
            store,
            demand,
            inner: Mutex::new(Inner {
                preroll: PreRoll::new(config.pre_roll),
                active: Vec::new(),
                next_id: 0,
            }),
        });
        hub.add_sample_tap(recorder.clone());
        recorder
    }

    /// Bytes the pre-roll holds now.
    pub fn preroll_bytes(&self) -> usize {
        self.lock().preroll.bytes()
    }

    /// Starts a clip of `kind` that began at `started_at`. Holds the camera while it records;
    /// an idle camera is started and the clip begins at its first keyframe.
    pub async fn start(
        self: &Arc<Self>,
        kind: Kind,
        started_at: SystemTime,
    ) -> Result<Recording, Error> {
        // The camera not delivering, or reconnecting, is worth another try; a writer that cannot
        // be built is not.
        let camera_gone = |message: &str| Error::new(ErrorKind::Transient, message);
        let lease = self.demand.lease(Purpose::Recorder);
        let waited = std::time::Instant::now();
        while self.lock().preroll.is_empty() {
            if waited.elapsed() > FIRST_FRAME_WAIT {
                return Err(camera_gone("the camera sent no video to record"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A camera just started sends its first audio a moment after the first keyframe.
        let video_at = std::time::Instant::now();
        let first_audio = loop {
            let audio = self.lock().preroll.first(Track::Audio);
            if audio.is_some() || video_at.elapsed() > FIRST_AUDIO_WAIT {
                break audio;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let first_video = self
            .lock()
            .preroll
            .first(Track::Video)
            .ok_or_else(|| camera_gone(PREROLL_CLEARED))?;
        let event_id = event_id(kind, started_at);
        let video_caps = first_video
            .sample
            .caps_owned()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the camera's video has no caps"))?;
        let video = match video_caps.structure(0).map(|s| s.name().as_str()) {
            Some("video/x-h265") => "h265",
            _ => "h264",
        };
        let audio_caps = first_audio.and_then(|f| f.sample.caps_owned());
        let meta = ClipMeta {
            event_id: event_id.clone(),
            kind,
            started_at,
            duration_s: None,
            video: video.into(),
            audio: audio_caps.is_some(),
            complete: false,
            bytes: 0,
        };
        let path = self.store.begin(&meta).map_err(disk)?;
        let (guard, video_src, audio_src) = writer(&path, &video_caps, audio_caps.as_ref())
            .map_err(|e| Error::new(ErrorKind::Internal, e))
            .inspect_err(|_| self.store.abandon(&event_id))?;
        let started = {
            let mut inner = self.lock();
            let frames = inner.preroll.frames();
            // A camera that reconnects between the checks above and here empties the pre-roll:
            // that recording fails cleanly, and the next one starts afresh.
            match frames.first().and_then(|first| first.sample.buffer()) {
                None => Err(camera_gone(PREROLL_CLEARED)),
                Some(buffer) => {
                    inner.next_id += 1;
                    let id = inner.next_id;
                    let base = [buffer.dts(), buffer.pts()]
                        .into_iter()
                        .flatten()
                        .min()
                        .unwrap_or(gst::ClockTime::ZERO);
                    let mut active = Active {
                        id,
                        video: video_src,
                        audio: audio_src,
                        base,
                        last_pts: base,
                        overflowed: false,
                    };
                    for frame in &frames {
                        active.push(frame);
                    }
                    inner.active.push(active);
                    Ok(id)
                }
            }
        };
        let id = started.inspect_err(|_| self.store.abandon(&event_id))?;
        tracing::info!(
            camera = %self.camera,
            "recording {event_id} ({} s of pre-roll)",
            self.config.pre_roll.as_secs()
        );
        Ok(Recording {
            recorder: self.clone(),
            id,
            meta,
            guard,
            _lease: lease,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SampleTap for Recorder {
    fn frame(&self, frame: Frame) {
        let mut inner = self.lock();
        for active in &mut inner.active {
            active.push(&frame);
        }
        if inner.preroll.push(frame) {
            tracing::warn!(
                "no keyframe from the camera for over {} s: the event pre-roll is emptied, and clips start at its next keyframe",
                (inner.preroll.span() + super::preroll::KEYFRAME_WAIT).as_secs()
            );
        }
    }

    fn reset(&self) {
        self.lock().preroll.clear();
    }
}

impl Active {
    fn push(&mut self, frame: &Frame) {
        let Some(buffer) = frame.sample.buffer() else {
            return;
        };
        let Some(pts) = buffer.pts() else {
            return;
        };
        if pts < self.base {
            return;
        }
        let mut copy = buffer.copy();
        {
            let copy = copy.make_mut();
            copy.set_pts(pts - self.base);
            if let Some(dts) = buffer.dts() {
                copy.set_dts(dts.saturating_sub(self.base));
            }
        }
        let src = match frame.track {
            Track::Video => &self.video,
            Track::Audio => match &self.audio {
                Some(audio) => audio,
                None => return,
            },
        };
        // Either track can end last, and players take the file's duration from the longer one.
        self.last_pts = self.last_pts.max(pts);
        if !self.overflowed && src.current_level_bytes() >= WRITER_QUEUE_BYTES {
            self.overflowed = true;
            tracing::warn!(
                "the clip writer is {} MiB behind (a stalled disk or network share?): frames are dropped until it catches up, and the clip is marked incomplete",
                WRITER_QUEUE_BYTES >> 20
            );
        }
        let _ = src.push_buffer(copy);
    }
}

impl Recording {
    pub fn event_id(&self) -> &str {
        &self.meta.event_id
    }

    pub fn kind(&self) -> Kind {
        self.meta.kind
    }

    /// Ends the clip now: the muxer writes its last fragment and the clip joins the store.
    pub async fn finish(self) -> Result<ClipMeta, Error> {
        let Recording {
            recorder,
            id,
            mut meta,
            guard,
            _lease,
        } = self;
        let active = {
            let mut inner = recorder.lock();
            let index = inner.active.iter().position(|a| a.id == id);
            index.map(|i| inner.active.remove(i))
        };
        let Some(active) = active else {
            return Err(Error::new(ErrorKind::Internal, "the recording was lost"));
        };
        meta.duration_s = Some(round_tenths(Duration::from_nanos(
            (active.last_pts - active.base).nseconds(),
        )));
        let result = tokio::task::spawn_blocking(move || {
            for src in std::iter::once(&active.video).chain(active.audio.as_ref()) {
                let _ = src.end_of_stream();
            }
            let ending = wait_for_end(&guard);
            if matches!(ending, Ok(Ending::TimedOut)) {
                // Its thread is blocked writing to a stalled disk or share, and stopping the
                // pipeline waits for that write: let it stop on its own thread whenever the
                // write returns, rather than hold up this clip (and the next) until then.
                std::thread::Builder::new()
                    .name("clip-writer-close".into())
                    .spawn(move || drop(guard))
                    .map_err(|e| format!("cannot close the clip writer: {e}"))?;
            }
            ending
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| Error::new(ErrorKind::Internal, e));
        match result {
            Ok(ending) => {
                let closed = ending == Ending::Closed;
                let complete = closed && !active.overflowed;
                if !closed {
                    tracing::warn!(
                        camera = %recorder.camera,
                        "the clip writer did not close {} within {} s (a slow disk or share?); it is kept as written, and plays up to its last fragment",
                        meta.event_id,
                        FINISH_WAIT.as_secs()
                    );
                }
                recorder
                    .store
                    .finish(meta.clone(), complete)
                    .map_err(disk)?;
                tracing::info!(
                    camera = %recorder.camera,
                    "clip {} saved ({} s)",
                    meta.event_id,
                    meta.duration_s.unwrap_or_default()
                );
                Ok(meta)
            }
            Err(e) => {
                recorder.store.abandon(&meta.event_id);
                Err(e)
            }
        }
    }
}

/// What a clip writer may queue per track while its disk or share is slow: about a minute of
/// 4 Mbit/s video.
const WRITER_QUEUE_BYTES: u64 = 32 * 1024 * 1024;

/// `appsrc ! parse ! mp4mux (fragmented) ! filesink`, with an AAC branch when there is audio.
fn writer(
    path: &std::path::Path,
    video_caps: &gst::Caps,
    audio_caps: Option<&gst::Caps>,
) -> Result<(PipelineGuard, gst_app::AppSrc, Option<gst_app::AppSrc>), String> {
    let parse = match video_caps.structure(0).map(|s| s.name().as_str()) {
        Some("video/x-h265") => "h265parse",
        _ => "h264parse",
    };
    let audio = if audio_caps.is_some() {
        "appsrc name=a format=time ! queue ! aacparse ! mux."
    } else {
        ""
    };
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=v format=time ! queue ! {parse} ! mp4mux name=mux fragment-duration=1000 streamable=true ! filesink name=file {audio}"
    ))
    .map_err(|e| format!("cannot build the clip writer: {e}"))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "the clip writer is not a pipeline".to_string())?;
    pipeline
        .by_name("file")
        .expect("named in the description")
        .set_property("location", path.to_string_lossy().to_string());
    let src = |name: &str, caps: &gst::Caps| {
        let src = pipeline
            .by_name(name)
            .and_downcast::<gst_app::AppSrc>()
            .expect("named in the description");
        src.set_caps(Some(caps));
        // The hub never waits: a writer that falls behind queues, up to a bound, then drops
        // the newest frames rather than grow memory without end.
        src.set_block(false);
        src.set_max_bytes(WRITER_QUEUE_BYTES);
        src.set_leaky_type(gst_app::AppLeakyType::Upstream);
        src
    };
    let video = src("v", video_caps);
    let audio = audio_caps.map(|caps| src("a", caps));
    let guard = PipelineGuard::new(pipeline);
    guard
        .pipeline()
        .set_state(gst::State::Playing)
        .map_err(|_| {
            pipeline_error(&guard).unwrap_or_else(|| "cannot start the clip writer".into())
        })?;
    Ok((guard, video, audio))
}

/// How a clip writer ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// End of stream: the file is closed and whole.
    Closed,
    /// Still writing after [`FINISH_WAIT`]; its fragments so far are on disk and play.
    TimedOut,
}

fn wait_for_end(guard: &PipelineGuard) -> Result<Ending, String> {
    let bus = guard.pipeline().bus().ok_or("the clip writer has no bus")?;
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(FINISH_WAIT.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    match message.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok(Ending::Closed),
        Some(gst::MessageView::Error(e)) => {
            Err(format!("the clip could not be written: {}", e.error()))
        }
        _ => Ok(Ending::TimedOut),
    }
}

fn pipeline_error(guard: &PipelineGuard) -> Option<String> {
    let message = guard
        .pipeline()
        .bus()?
        .pop_filtered(&[gst::MessageType::Error])?;
    match message.view() {
        gst::MessageView::Error(e) => Some(format!("the clip could not be written: {}", e.error())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One real H.264 keyframe of noise (large, as a busy scene is), from GStreamer's encoder.
    fn keyframe() -> gst::Sample {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "videotestsrc pattern=snow num-buffers=1 ! video/x-raw,width=1280,height=720 \
             ! x264enc speed-preset=ultrafast qp-min=10 qp-max=10 ! h264parse \
             ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let out = pipeline
            .by_name("out")
            .and_downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let sample = out.pull_sample().expect("an encoded frame");
        pipeline.set_state(gst::State::Null).unwrap();
        sample
    }

    /// Makes `path` a pipe someone opened and never reads: writes to it block, as on a network
    /// share that stalled.
    fn stalled_file(path: &std::path::Path) -> std::fs::File {
        use std::os::unix::fs::OpenOptionsExt;
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap()
    }

    /// `frame` again at `n` × 40 ms, as the camera's next frame.
    fn again(frame: &gst::Sample, n: u64) -> gst::Sample {
        let mut buffer = frame.buffer().unwrap().copy();
        buffer
            .make_mut()
            .set_pts(gst::ClockTime::from_mseconds(40 * n));
        gst::Sample::builder()
            .buffer(&buffer)
            .caps(&frame.caps().unwrap().to_owned())
            .build()
    }

    #[test]
    fn a_stalled_writer_drops_frames_instead_of_growing_without_bound() {
        let frame = keyframe();
        let size = frame.buffer().unwrap().size() as u64;
        let caps = frame.caps().unwrap().to_owned();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let _reader = stalled_file(&path);
        let (_guard, video, _) = writer(&path, &caps, None).unwrap();
        let mut active = Active {
            id: 1,
            video: video.clone(),
            audio: None,
            base: gst::ClockTime::ZERO,
            last_pts: gst::ClockTime::ZERO,
            overflowed: false,
        };
        // Twice what may queue, as frames 40 ms apart.
        let frames = 2 * WRITER_QUEUE_BYTES / size + 100;
        for i in 0..frames {
            active.push(&Frame {
                track: Track::Video,
                keyframe: true,
                sample: again(&frame, i),
            });
        }
        assert!(active.overflowed, "{frames} frames of {size} bytes");
        let queued = video.current_level_bytes();
        assert!(
            queued <= WRITER_QUEUE_BYTES + size,
            "{queued} bytes queued, bound {WRITER_QUEUE_BYTES}"
        );
    }

    /// A writer that cannot close its file in time (a stalled share) leaves a clip that plays up
    /// to its last fragment: it is kept and listed, marked incomplete, never deleted.
    #[tokio::test]
    async fn a_clip_whose_writer_cannot_close_in_time_is_kept_as_incomplete() {
        let frame = keyframe();
        let dir = tempfile::tempdir().unwrap();
        let config = ClipConfig::default();
        let store = ClipStore::open(dir.path(), "cam", &config).unwrap();
        let hub = Hub::new();
        let recorder = Recorder::new("cam", &config, store.clone(), hub.clone(), Demand::new());
        let writer = hub.begin_session();
        writer.set_tracks(false, None);
        let started_at = SystemTime::now();
        let id = event_id(Kind::Manual, started_at);
        let _reader = stalled_file(&store.path(&id));
        for n in 0..5 {
            writer.push_video(again(&frame, n));
        }
        let recording = recorder.start(Kind::Manual, started_at).await.unwrap();
        for n in 5..50 {
            writer.push_video(again(&frame, n));
        }
        let kept = recording.finish().await.unwrap();
        assert_eq!(kept.event_id, id);
        let listed = store.clip(&id).expect("the clip is listed");
        assert!(!listed.complete, "{listed:?}");
        assert!(store.path(&id).exists(), "the clip file is kept");
    }
}
