//! The per-camera fan-out hub: one camera connection feeds any number of consumers.
//!
//! - **Bounded per-consumer links.** Each consumer is an `appsrc`; when its queue holds more than
//!   [`MAX_QUEUE`] of media, the hub drops frames for that consumer only (counted) and resumes at
//!   the next keyframe. A slow viewer never stalls the camera or the others.
//! - **GOP cache with restamping.** The frames since the last keyframe are kept. A new consumer gets
//!   them as a burst restamped to just before the next live frame (see
//!   `notes/gst-rtsp-server-facts.md`), so it starts decoding at once instead of waiting up to a
//!   whole GOP, and does not stay a GOP behind live.
//! - **Survives reconnects.** The hub outlives each camera session; consumers stay registered and
//!   resume at the new session's first keyframe ("re-homing" for free).
//!
//! Pushing happens on the ingest's streaming threads; the lock is held only for queue operations,
//! which never block.

use crate::metrics::CameraCounters;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The most media a consumer may have queued before it starts dropping.
pub const MAX_QUEUE: gst::ClockTime = gst::ClockTime::from_mseconds(500);
/// A GOP longer than this is not cached (a new consumer then waits for a keyframe).
const MAX_GOP_FRAMES: usize = 600;
/// Spacing of restamped cached frames: small, so the burst decodes in a blink.
const BURST_SPACING: gst::ClockTime = gst::ClockTime::from_mseconds(2);

/// What a camera session delivers, once known: a viewer's media is built from this.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub video: gst::Caps,
    pub audio: Option<gst::Caps>,
}

/// A human summary of the streams, for the info sensor and logs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    pub video_codec: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub fps: Option<f64>,
    pub audio_codec_in: Option<String>,
    pub audio_codec_out: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// New: gets the cached GOP as a burst before the next live frame.
    Burst,
    /// Joined without a usable cache, or the camera reconnected: resumes at the next keyframe.
    WaitKeyframe,
    /// Its queue overflowed: every frame is dropped (and counted) until a keyframe finds room.
    Dropping,
    Live,
}

struct Consumer {
    id: u64,
    video: glib::WeakRef<gst_app::AppSrc>,
    audio: Option<glib::WeakRef<gst_app::AppSrc>>,
    start: Start,
    /// The time of the audio frame it joined with: live frames up to it are older and skipped,
    /// so its audio never goes back in time.
    audio_after: Option<gst::ClockTime>,
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
    failure: Option<String>,
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
/// on the ingest's streaming threads with the hub locked: it must only queue, never block.
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

pub struct Hub {
    state: Mutex<State>,
    ready: Condvar,
    ready_generation: watch::Sender<u64>,
    keyframe: watch::Sender<Option<Keyframe>>,
    next_consumer: AtomicU64,
    counters: Arc<CameraCounters>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            ready_generation: watch::Sender::new(0),
            keyframe: watch::Sender::new(None),
            next_consumer: AtomicU64::new(1),
            counters: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new camera session starts: forget what the last one delivered, keep the consumers.
    pub fn begin_session(&self) -> u64 {
        let mut state = self.lock();
        state.generation += 1;
        state.session = Session::default();
        state.failure = None;
        state.gop.clear();
        state.gop_complete = false;
        state.last_audio = None;
        self.keyframe.send_replace(None);
        for consumer in &mut state.consumers {
            if consumer.start == Start::Live {
                consumer.start = Start::WaitKeyframe;
            }
            consumer.audio_after = None;
        }
        for tap in &state.sample_taps {
            tap.reset();
        }
        state.generation
    }

    /// Registers a consumer of every frame for the hub's whole life.
    pub fn add_sample_tap(&self, tap: Arc<dyn SampleTap>) {
        self.lock().sample_taps.push(tap);
    }

    /// The camera cannot be reached in a way waiting will not fix; wake every waiting viewer.
    pub fn fail(&self, reason: &str) {
        let mut state = self.lock();
        state.failure = Some(reason.to_string());
        state.gop.clear();
        self.keyframe.send_replace(None);
        self.ready.notify_all();
    }

    /// The session ended (camera stopped): no cached frames survive it.
    pub fn end_session(&self) {
        let mut state = self.lock();
        state.gop.clear();
        state.gop_complete = false;
        state.last_audio = None;
        state.session.got_keyframe = false;
        self.keyframe.send_replace(None);
    }

    /// The newest keyframe while the camera streams; `None` while it is idle.
    pub fn subscribe_keyframes(&self) -> watch::Receiver<Option<Keyframe>> {
        self.keyframe.subscribe()
    }

    /// Fires with the generation of each session that became ready.
    pub fn subscribe_ready(&self) -> watch::Receiver<u64> {
        self.ready_generation.subscribe()
    }

    /// Blocks the calling (GLib) thread until the camera delivers what a viewer needs.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Layout, String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            if let Some(layout) = state.session.layout() {
                return Ok(layout);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "the camera did not deliver video within {:.0} s",
                    timeout.as_secs_f64()
                ));
            }
            state = self
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The tracks chosen so far from the camera's SDP (called once per offered stream).
    pub fn set_tracks(&self, generation: u64, has_audio: bool, audio_in: Option<String>) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.session.has_audio = Some(has_audio);
        state.session.audio_in = audio_in;
        self.announce_if_ready(&mut state);
    }

    fn announce_if_ready(&self, state: &mut State) {
        if let Some(layout) = state.session.layout() {
            state.last_info = stream_info(&layout, state.session.audio_in.clone());
            self.ready.notify_all();
            self.ready_generation.send_replace(state.generation);
        }
    }

    pub fn info(&self) -> StreamInfo {
        self.lock().last_info.clone()
    }

    /// Frames dropped for slow consumers, since start.
    pub fn dropped_frames(&self) -> u64 {
        self.counters.dropped_frames.load(Ordering::Relaxed)
    }

    /// The camera's counters (`/metrics`).
    pub fn counters(&self) -> &Arc<CameraCounters> {
        &self.counters
    }

    /// Counts media bytes as they arrive from the camera.
    pub fn received(&self, bytes: usize) {
        crate::metrics::count(&self.counters.received_bytes, bytes as u64);
    }

    /// When the last video frame arrived: the stall watchdog reads this.
    pub fn last_video_at(&self) -> Option<Instant> {
        self.lock().last_video_at
    }

    /// Registers a viewer's appsrcs. It gets the cached GOP as soon as its media starts
    /// (its first `need-data`), or with the next live frame, whichever comes first.
    pub fn add_consumer(
        self: &Arc<Self>,
        video: &gst_app::AppSrc,
        audio: Option<&gst_app::AppSrc>,
    ) -> ConsumerId {
        let id = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        for src in std::iter::once(video).chain(audio) {
            prepare_consumer_src(src);
        }
        let hub = Arc::downgrade(self);
        video.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |src, _| {
                    if let Some(hub) = hub.upgrade() {
                        hub.prime(id);
                    }
                    // Once is enough: later need-data calls only mean "queue low".
                    src.set_callbacks(gst_app::AppSrcCallbacks::builder().build());
                })
                .build(),
        );
        self.lock().consumers.push(Consumer {
            id,
            video: video.downgrade(),
            audio: audio.map(|a| a.downgrade()),
            start: Start::Burst,
            audio_after: None,
        });
        ConsumerId(id)
    }

    /// Gives a joining consumer the cached GOP now, without waiting for the next live frame.
    fn prime(&self, id: u64) {
        let mut state = self.lock();
        if !state.gop_complete || state.gop.is_empty() {
            return;
        }
        let State {
            consumers,
            gop,
            last_audio,
            session,
            ..
        } = &mut *state;
        // A live frame may have got there first.
        if let Some(consumer) = consumers
            .iter_mut()
            .find(|c| c.id == id && c.start == Start::Burst)
        {
            consumer.join(gop, last_audio.as_ref().or(session.audio_filler.as_ref()));
        }
    }

    /// Ends every consumer's stream (MQTT OFF); returns how many there were.
    ///
    /// Ending the media reaches viewers that are still negotiating and have no RTSP session yet.
    pub fn end_all_consumers(&self) -> usize {
        let consumers = std::mem::take(&mut self.lock().consumers);
        for consumer in &consumers {
            let sources = std::iter::once(&consumer.video).chain(consumer.audio.as_ref());
            for src in sources.filter_map(|weak| weak.upgrade()) {
                let _ = src.end_of_stream();
            }
        }
        consumers.len()
    }

    /// Registers an audio-only consumer: it gets every audio frame in `form` from now on,
    /// across reconnects, and drops frames (counted) if it falls [`MAX_QUEUE`] behind.
    pub fn add_audio_tap(&self, src: &gst_app::AppSrc, form: AudioForm) -> ConsumerId {
        let id = self.next_consumer.fetch_add(1, Ordering::Relaxed);
        prepare_consumer_src(src);
        self.lock().audio_taps.push((id, src.downgrade(), form));
        ConsumerId(id)
    }

    pub fn remove_consumer(&self, id: ConsumerId) {
        let mut state = self.lock();
        state.consumers.retain(|c| c.id != id.0);
        state.audio_taps.retain(|(tap, _, _)| *tap != id.0);
    }

    /// The camera sends G.711 at 8 kHz (`"PCMA"` or `"PCMU"`), which is also kept as it came.
    pub fn set_g711(&self, generation: u64, encoding: Option<&'static str>) {
        let mut state = self.lock();
        if state.generation == generation {
            state.session.g711 = encoding;
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

    /// Called on the ingest's audio thread with the camera's untouched G.711 frames.
    pub fn push_g711(&self, generation: u64, sample: gst::Sample) {
        let state = self.lock();
        if state.generation != generation {
            return;
        }
        let dropped = feed_taps(
            &state.audio_taps,
            AudioForm::G711,
            &sample,
            std::iter::empty(),
        );
        drop(state);
        if dropped > 0 {
            crate::metrics::count(&self.counters.dropped_frames, dropped);
        }
    }

    /// Called on the ingest's video streaming thread for every frame.
    pub fn push_video(&self, generation: u64, sample: gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let is_keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.last_video_at = Some(Instant::now());
        if is_keyframe {
            if state.gop_complete && !state.gop.is_empty() {
                state.gop_frames = Some(state.gop.len());
            }
            state.gop.clear();
            state.gop_complete = true;
            if !state.session.got_keyframe {
                tracing::debug!(
                    "first keyframe of camera session {generation}, pts {:?}",
                    buffer.pts()
                );
                state.session.got_keyframe = true;
                state.session.video_caps = sample.caps_owned();
                self.announce_if_ready(&mut state);
            } else if let Some(caps) = sample.caps_owned() {
                state.session.video_caps = Some(caps);
            }
            state.keyframes_seen += 1;
            self.keyframe.send_replace(Some(Keyframe {
                seq: state.keyframes_seen,
                sample: sample.clone(),
            }));
        }
        if !state.session.got_keyframe {
            return;
        }
        for tap in &state.sample_taps {
            tap.frame(Frame {
                track: Track::Video,
                keyframe: is_keyframe,
                sample: sample.clone(),
            });
        }
        if state.gop.len() < MAX_GOP_FRAMES {
            state.gop.push(sample.clone());
        } else {
            state.gop_complete = false;
        }
        let State {
            consumers,
            gop,
            gop_complete,
            last_audio,
            session,
            ..
        } = &mut *state;
        let audio_start = last_audio.as_ref().or(session.audio_filler.as_ref());
        let mut dropped = 0;
        consumers.retain_mut(|consumer| {
            let Some(src) = consumer.video.upgrade() else {
                return false;
            };
            match consumer.start {
                Start::Burst if *gop_complete => {
                    consumer.join(gop, audio_start);
                    return true;
                }
                Start::Burst | Start::WaitKeyframe if !is_keyframe => {
                    consumer.start = Start::WaitKeyframe;
                    return true;
                }
                Start::Live if src.current_level_time() > MAX_QUEUE => {
                    consumer.start = Start::Dropping;
                    dropped += 1;
                    return true;
                }
                Start::Dropping if !is_keyframe || src.current_level_time() > MAX_QUEUE => {
                    dropped += 1;
                    return true;
                }
                _ => {}
            }
            consumer.start = Start::Live;
            let _ = src.push_sample(&sample);
            true
        });
        drop(state);
        if dropped > 0 {
            crate::metrics::count(&self.counters.dropped_frames, dropped);
        }
    }

    /// The audio track's caps are known (before its first frame). `filler` is a silent frame in
    /// that format, for viewers that join before the first real one.
    pub fn set_audio_caps(&self, generation: u64, caps: gst::Caps, filler: Option<gst::Buffer>) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.session.audio_filler =
            filler.map(|buffer| gst::Sample::builder().buffer(&buffer).caps(&caps).build());
        state.session.audio_caps = Some(caps);
        self.announce_if_ready(&mut state);
    }

    /// Called on the ingest's audio streaming thread; audio follows video into each consumer.
    pub fn push_audio(&self, generation: u64, sample: gst::Sample) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        state.last_audio = Some(sample.clone());
        if state.session.got_keyframe {
            for tap in &state.sample_taps {
                tap.frame(Frame {
                    track: Track::Audio,
                    keyframe: false,
                    sample: sample.clone(),
                });
            }
        }
        let pts = sample.buffer().and_then(|b| b.pts());
        let viewers = state
            .consumers
            .iter()
            .filter(|c| c.start == Start::Live)
            .filter(|c| {
                c.audio_after
                    .is_none_or(|after| pts.is_some_and(|pts| pts > after))
            })
            .filter_map(|c| c.audio.as_ref());
        let dropped = feed_taps(&state.audio_taps, AudioForm::Aac, &sample, viewers);
        drop(state);
        if dropped > 0 {
            crate::metrics::count(&self.counters.dropped_frames, dropped);
        }
    }
}

/// Identifies a consumer for [`Hub::remove_consumer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerId(u64);

fn prepare_consumer_src(src: &gst_app::AppSrc) {
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    src.set_do_timestamp(false);
    // The hub bounds the queue itself (and counts what it drops); appsrc must never block it.
    src.set_block(false);
    src.set_max_bytes(64 * 1024 * 1024);
}

impl Consumer {
    /// Pushes the GOP so far: every frame but the newest restamped to just before it, a few ms
    /// apart, then the newest with its own timestamp, and one audio frame to start the audio
    /// track (the newest, or silence before the first). The consumer
    /// stays joining if its media is not running yet (appsrc flushing), to try again.
    fn join(&mut self, gop: &[gst::Sample], audio_start: Option<&gst::Sample>) {
        let (Some(video), Some((newest, cached))) = (self.video.upgrade(), gop.split_last()) else {
            return;
        };
        let Some(live_pts) = newest.buffer().and_then(|b| b.pts()) else {
            return;
        };
        let count = cached.len() as u64;
        for (i, sample) in cached.iter().enumerate() {
            let pts = live_pts.saturating_sub(BURST_SPACING * (count - i as u64));
            if video.push_sample(&restamp(sample, pts)).is_err() {
                return;
            }
        }
        if video.push_sample(newest).is_err() {
            return;
        }
        self.start = Start::Live;
        let Some(audio) = self.audio.as_ref().and_then(|a| a.upgrade()) else {
            return;
        };
        if let Some(first) = audio_start {
            // The newest audio at its own time, or silence on a cold start stamped to start with
            // the video.
            let first = match first.buffer().and_then(|b| b.pts()) {
                Some(_) => first.clone(),
                None => restamp(first, live_pts),
            };
            self.audio_after = first.buffer().and_then(|b| b.pts());
            let _ = audio.push_sample(&first);
        }
    }
}

/// Pushes an audio frame to the taps of `form` and to `viewers`; returns how many were too far
/// behind to take it.
fn feed_taps<'a>(
    taps: &'a [(u64, glib::WeakRef<gst_app::AppSrc>, AudioForm)],
    form: AudioForm,
    sample: &gst::Sample,
    viewers: impl Iterator<Item = &'a glib::WeakRef<gst_app::AppSrc>>,
) -> u64 {
    let taps = taps
        .iter()
        .filter(|(_, _, f)| *f == form)
        .map(|(_, src, _)| src);
    let mut dropped = 0;
    for src in viewers.chain(taps).filter_map(|weak| weak.upgrade()) {
        if src.current_level_time() > MAX_QUEUE {
            dropped += 1;
            continue;
        }
        let _ = src.push_sample(sample);
    }
    dropped
}

fn restamp(sample: &gst::Sample, pts: gst::ClockTime) -> gst::Sample {
    let mut builder = gst::Sample::builder();
    let mut buffer = sample.buffer_owned().unwrap_or_default();
    {
        let buffer = buffer.make_mut();
        buffer.set_pts(pts);
        buffer.set_dts(pts);
    }
    builder = builder.buffer(&buffer);
    let caps = sample.caps_owned();
    if let Some(caps) = &caps {
        builder = builder.caps(caps);
    }
    if let Some(segment) = sample.segment() {
        builder = builder.segment(segment);
    }
    builder.build()
}

fn stream_info(layout: &Layout, audio_in: Option<String>) -> StreamInfo {
    let mut info = StreamInfo {
        audio_codec_in: audio_in,
        ..StreamInfo::default()
    };
    if let Some(s) = layout.video.structure(0) {
        info.video_codec = Some(
            match s.name().as_str() {
                "video/x-h264" => "H264",
                "video/x-h265" => "H265",
                other => other,
            }
            .to_string(),
        );
        info.width = s.get::<i32>("width").ok();
        info.height = s.get::<i32>("height").ok();
        info.fps = s
            .get::<gst::Fraction>("framerate")
            .ok()
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map(|f| (f.numer() as f64 / f.denom() as f64 * 100.0).round() / 100.0);
    }
    if let Some(s) = layout.audio.as_ref().and_then(|c| c.structure(0)) {
        let rate = s.get::<i32>("rate").unwrap_or(0);
        let channels = s.get::<i32>("channels").unwrap_or(0);
        info.audio_codec_out = Some(format!("AAC {rate} Hz {channels} ch"));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pts_ms: u64, keyframe: bool) -> gst::Sample {
        let mut buffer = gst::Buffer::from_slice(vec![if keyframe { 0x65u8 } else { 0x41 }; 64]);
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_mseconds(pts_ms));
            if !keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build();
        camera_sample(&buffer, &caps)
    }

    /// Camera samples carry their time segment; appsrc measures its queue with it.
    fn camera_sample(buffer: &gst::Buffer, caps: &gst::Caps) -> gst::Sample {
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        gst::Sample::builder()
            .buffer(buffer)
            .caps(caps)
            .segment(&segment)
            .build()
    }

    /// `appsrc ! queue ! appsink`: a consumer whose output the test reads, or never reads.
    fn consumer_pipeline() -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "appsrc name=src ! queue max-size-buffers=1 ! appsink name=sink sync=false max-buffers=1",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let src = pipeline
            .by_name("src")
            .and_downcast::<gst_app::AppSrc>()
            .unwrap();
        let sink = pipeline
            .by_name("sink")
            .and_downcast::<gst_app::AppSink>()
            .unwrap();
        (pipeline, src, sink)
    }

    fn pull_pts(sink: &gst_app::AppSink) -> (u64, bool) {
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(2))
            .expect("a frame reaches the consumer");
        let buffer = sample.buffer().unwrap();
        (
            buffer.pts().unwrap().mseconds(),
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        )
    }

    fn running_hub() -> (Arc<Hub>, u64) {
        gst::init().unwrap();
        let hub = Arc::new(Hub::new());
        let generation = hub.begin_session();
        hub.set_tracks(generation, false, None);
        (hub, generation)
    }

    #[test]
    fn a_joining_consumer_gets_the_gop_restamped_just_before_the_newest_frame() {
        let (hub, generation) = running_hub();
        for (pts, key) in [(1000, true), (1040, false), (1080, false)] {
            hub.push_video(generation, frame(pts, key));
        }
        let (pipeline, src, sink) = consumer_pipeline();
        hub.add_consumer(&src, None);
        // Its media starts now: the GOP arrives without waiting for a live frame.
        pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(pull_pts(&sink), (1076, true));
        assert_eq!(pull_pts(&sink), (1078, false));
        assert_eq!(pull_pts(&sink), (1080, false));
        hub.push_video(generation, frame(1120, false));
        assert_eq!(pull_pts(&sink), (1120, false));
        pipeline.set_state(gst::State::Null).unwrap();
    }

    fn audio_frame(pts_ms: u64) -> gst::Sample {
        let mut buffer = gst::Buffer::from_slice(vec![0u8; 16]);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(pts_ms));
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .build();
        camera_sample(&buffer, &caps)
    }

    /// Encoded audio comes out after the video of the same instant. A viewer joining between
    /// them got its first audio stamped at the video's time, and the next live frame went back
    /// in time (players dropped it: "non monotonically increasing dts").
    #[test]
    fn a_joining_consumers_audio_never_goes_back_in_time() {
        let (hub, generation) = running_hub();
        hub.push_video(generation, frame(1000, true));
        hub.push_audio(generation, audio_frame(936));
        hub.push_video(generation, frame(1040, false));
        let (video_pipeline, video, _video_sink) = consumer_pipeline();
        let (audio_pipeline, audio, audio_sink) = consumer_pipeline();
        hub.add_consumer(&video, Some(&audio));
        audio_pipeline.set_state(gst::State::Playing).unwrap();
        video_pipeline.set_state(gst::State::Playing).unwrap();
        assert_eq!(
            pull_pts(&audio_sink).0,
            936,
            "the newest audio, at its own time"
        );
        hub.push_audio(generation, audio_frame(1000));
        assert_eq!(pull_pts(&audio_sink).0, 1000);
        video_pipeline.set_state(gst::State::Null).unwrap();
        audio_pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn a_consumer_that_stops_reading_drops_whole_frames_until_a_keyframe_and_they_are_counted() {
        let (hub, generation) = running_hub();
        hub.push_video(generation, frame(0, true));
        let (pipeline, src, sink) = consumer_pipeline();
        hub.add_consumer(&src, None);
        pipeline.set_state(gst::State::Playing).unwrap();
        // 2 s of 25 fps delta frames pile up behind the stalled sink.
        for i in 1..=50u64 {
            hub.push_video(generation, frame(i * 40, false));
        }
        let dropped = hub.dropped_frames();
        assert!(dropped > 20, "only {dropped} dropped");
        assert!(src.current_level_time() <= MAX_QUEUE + gst::ClockTime::from_mseconds(80));
        // The viewer catches up; it still gets no delta frame it cannot decode...
        while sink
            .try_pull_sample(gst::ClockTime::from_mseconds(200))
            .is_some()
        {}
        hub.push_video(generation, frame(51 * 40, false));
        assert_eq!(hub.dropped_frames(), dropped + 1);
        // ...and resumes at the next keyframe.
        hub.push_video(generation, frame(52 * 40, true));
        assert_eq!(hub.dropped_frames(), dropped + 1);
        assert_eq!(pull_pts(&sink), (52 * 40, true));
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn a_viewer_waiting_for_a_camera_that_refuses_it_is_told_at_once() {
        let hub = Hub::new();
        hub.begin_session();
        hub.fail("401 Unauthorized");
        let started = Instant::now();
        assert_eq!(
            hub.wait_ready(Duration::from_secs(5)).unwrap_err(),
            "401 Unauthorized"
        );
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
