//! The per-camera fan-out hub: one camera connection feeds any number of consumers.
//!
//! - **Bounded per-consumer links.** Each consumer is an `appsrc` or a [`FrameQueue`]; when its
//!   queue holds more than [`MAX_QUEUE`] of media, the hub drops frames for that consumer only
//!   (counted) and resumes at the next keyframe. A slow viewer never stalls the camera or the others.
//! - **GOP cache with restamping.** The frames since the last keyframe are kept. A new consumer gets
//!   them as a burst restamped to just before the next live frame (see
//!   `notes/gst-rtsp-server-facts.md`), so it starts decoding at once instead of waiting up to a
//!   whole GOP, and does not stay a GOP behind live.
//! - **Survives reconnects.** The hub outlives each camera session; consumers stay registered and
//!   resume at the new session's first keyframe ("re-homing" for free).
//!
//! It has a face for each kind of holder, so nobody reaches past their part:
//! - the ingest holds a [`SessionWriter`] (`writer`): it owns the session's generation, and
//!   dropping it ends the session;
//! - each consumer holds a [`ConsumerLink`] (`link`): dropping it unregisters the consumer;
//! - the actor and the API read a [`HubStatus`] (`status`).
//!
//! Frames are handed to consumers after the hub's lock is released (as gstreamer-rs's
//! `StreamProducer` does), so a consumer's queue never holds up the camera's other tracks.

mod link;
mod queue;
mod status;
#[cfg(test)]
mod tests;
mod writer;

pub use link::ConsumerLink;
pub use queue::FrameQueue;
pub use status::{HubStatus, StreamInfo};
pub use writer::SessionWriter;

use crate::error::{Error, ErrorKind};
use crate::metrics::CameraCounters;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer_app as gst_app;
use link::Consumer;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most media a consumer may have queued before it starts dropping.
pub const MAX_QUEUE: gst::ClockTime = gst::ClockTime::from_mseconds(500);

/// What a camera session delivers, once known: a viewer's media is built from this.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub video: gst::Caps,
    pub audio: Option<gst::Caps>,
}

#[derive(Default)]
struct Session {
    video_caps: Option<gst::Caps>,
    audio_caps: Option<gst::Caps>,
    audio_filler: Option<gst::Sample>,
    /// `None` until the source has announced all its tracks.
    has_audio: Option<bool>,
    got_keyframe: bool,
    audio_in: Option<String>,
    /// The camera's own G.711 at 8 kHz, kept beside the AAC for WebRTC passthrough.
    g711: Option<&'static str>,
}

impl Session {
    fn layout(&self) -> Option<Layout> {
        let has_audio = self.has_audio?;
        if !self.got_keyframe {
            return None;
        }
        let video = self.video_caps.clone()?;
        let audio = if has_audio {
            Some(self.audio_caps.clone()?)
        } else {
            None
        };
        Some(Layout { video, audio })
    }
}

#[derive(Default)]
struct State {
    generation: u64,
    session: Session,
    /// A failure that waiting cannot fix (wrong password); viewers are told at once.
    failure: Option<Error>,
    gop: Vec<gst::Sample>,
    gop_complete: bool,
    /// The newest audio frame: a joining viewer gets it with its burst, so its media need not
    /// wait for the next audio frame before it can start.
    last_audio: Option<gst::Sample>,
    consumers: Vec<Consumer>,
    /// Audio-only consumers (cry detection, WebRTC audio): every audio frame, no keyframe wait.
    audio_taps: Vec<(u64, glib::WeakRef<gst_app::AppSrc>, AudioForm)>,
    /// Frames in the newest complete GOP: a transcoder keeps the camera's keyframe interval.
    gop_frames: Option<usize>,
    sample_taps: Vec<Arc<dyn SampleTap>>,
    last_video_at: Option<Instant>,
    last_info: StreamInfo,
    keyframes_seen: u64,
}

/// Which audio an audio tap gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioForm {
    /// The one AAC track every viewer gets.
    Aac,
    /// The camera's own G.711, untouched (only when [`Hub::g711`] says there is one).
    G711,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    Video,
    Audio,
}

/// One encoded frame as the hub passes it on.
#[derive(Debug, Clone)]
pub struct Frame {
    pub track: Track,
    pub keyframe: bool,
    pub sample: gst::Sample,
}

impl Frame {
    pub fn pts(&self) -> Option<gst::ClockTime> {
        self.sample.buffer().and_then(|b| b.pts())
    }
}

/// A consumer of every frame from the first keyframe of each session on (the recorder). Called
/// on the ingest's streaming threads with the hub locked, so that no frame of an old session
/// reaches it after `reset`: it must only queue, never block.
pub trait SampleTap: Send + Sync {
    fn frame(&self, frame: Frame);
    /// A new camera session starts: frames from before cannot be joined to the new ones.
    fn reset(&self);
}

/// The newest keyframe of the running session: what snapshots decode.
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// Counts keyframes over the hub's life, so a waiter can ask for a newer one.
    pub seq: u64,
    pub sample: gst::Sample,
}

/// What a viewer waiting for the camera gets now: its layout, the failure that ends the wait, or
/// `None` to wait on.
fn readiness(state: &State) -> Option<Result<Layout, Error>> {
    if let Some(failure) = &state.failure {
        return Some(Err(failure.clone()));
    }
    state.session.layout().map(Ok)
}

fn not_ready_within(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!(
            "the camera did not deliver video within {:.0} s",
            timeout.as_secs_f64()
        ),
    )
}

pub struct Hub {
    state: Mutex<State>,
    /// Wakes the threads in [`Hub::wait_ready`] when the camera becomes ready or fails.
    ready: Condvar,
    /// The same for the tasks in [`Hub::ready`].
    waiting: watch::Sender<()>,
    ready_generation: watch::Sender<u64>,
    keyframe: watch::Sender<Option<Keyframe>>,
    next_consumer: AtomicU64,
    counters: Arc<CameraCounters>,
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            waiting: watch::Sender::new(()),
            ready_generation: watch::Sender::new(0),
            keyframe: watch::Sender::new(None),
            next_consumer: AtomicU64::new(1),
            counters: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the actor and the API may read.
    pub fn status(self: &Arc<Self>) -> HubStatus {
        HubStatus::new(self.clone())
    }

    /// Registers a consumer of every frame for the hub's whole life.
    pub fn add_sample_tap(&self, tap: Arc<dyn SampleTap>) {
        self.lock().sample_taps.push(tap);
    }

    /// The camera cannot be reached in a way waiting will not fix; wake every waiting viewer.
    pub fn fail(&self, error: &Error) {
        let mut state = self.lock();
        state.failure = Some(error.clone());
        state.gop.clear();
        self.keyframe.send_replace(None);
        self.wake_waiting();
    }

    /// Blocks the calling (GLib) thread until the camera delivers what a viewer needs.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Layout, Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(outcome) = readiness(&state) {
                return outcome;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(not_ready_within(timeout));
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// [`Hub::wait_ready`] for async callers, holding no thread while it waits: every RTSP and
    /// MSE viewer that joins a starting camera waits here.
    pub async fn ready(&self, timeout: Duration) -> Result<Layout, Error> {
        // Subscribed before the first look, so a change between the look and the wait is seen.
        let mut changes = self.waiting.subscribe();
        let wait = async {
            loop {
                if let Some(outcome) = readiness(&self.lock()) {
                    return outcome;
                }
                // The hub holds the sender, so the channel outlives this wait.
                let _ = changes.changed().await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| Err(not_ready_within(timeout)))
    }

    fn wake_waiting(&self) {
        self.ready.notify_all();
        self.waiting.send_replace(());
    }

    fn announce_if_ready(&self, state: &mut State) {
        if let Some(layout) = state.session.layout() {
            state.last_info = status::stream_info(&layout, state.session.audio_in.clone());
            self.wake_waiting();
            self.ready_generation.send_replace(state.generation);
        }
    }

    /// The running session's G.711 encoding, if its audio can be passed through as it came.
    pub fn g711(&self) -> Option<&'static str> {
        self.lock().session.g711
    }

    /// Frames from one keyframe to the next, once a whole GOP has been seen.
    pub fn gop_frames(&self) -> Option<usize> {
        self.lock().gop_frames
    }
}
