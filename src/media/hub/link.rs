//! The consumers' face of the hub: registering a viewer or an audio tap gives a
//! [`ConsumerLink`], and dropping the link is the only way out.

use super::queue::FrameQueue;
use super::{AudioForm, Hub, MAX_QUEUE, State, Track};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// Spacing of restamped cached frames: small, so the burst decodes in a blink.
const BURST_SPACING: gst::ClockTime = gst::ClockTime::from_mseconds(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// New: gets the cached GOP as a burst before the next live frame.
    Burst,
    /// Joined without a usable cache, or the camera reconnected: resumes at the next keyframe.
    WaitKeyframe,
    /// Its queue overflowed: every frame is dropped (and counted) until a keyframe finds room.
    Dropping,
    Live,
}

pub(super) struct Consumer {
    pub(super) id: u64,
    pub(super) video: SinkRef,
    pub(super) audio: Option<SinkRef>,
    pub(super) start: Start,
    /// The time of the audio frame it joined with: live frames up to it are older and skipped,
    /// so its audio never goes back in time.
    pub(super) audio_after: Option<gst::ClockTime>,
    /// How much video may wait in its queue before it drops frames.
    pub(super) max_queue: gst::ClockTime,
}

/// A consumer's place in the hub; dropping it unregisters the consumer.
#[must_use = "the consumer is unregistered when its link is dropped"]
pub struct ConsumerLink {
    hub: Weak<Hub>,
    id: u64,
}

impl Drop for ConsumerLink {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.lock();
            state.consumers.retain(|c| c.id != self.id);
            state.audio_taps.retain(|(tap, _, _)| *tap != self.id);
        }
    }
}

impl Hub {
    fn link(self: &Arc<Self>) -> ConsumerLink {
        ConsumerLink {
            hub: Arc::downgrade(self),
            id: self.next_consumer.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Registers a viewer's appsrcs. It gets the cached GOP as soon as its media starts
    /// (its first `need-data`), or with the next live frame, whichever comes first.
    pub fn add_consumer(
        self: &Arc<Self>,
        video: &gst_app::AppSrc,
        audio: Option<&gst_app::AppSrc>,
    ) -> ConsumerLink {
        self.add_consumer_with_queue(video, audio, MAX_QUEUE)
    }

    /// [`Hub::add_consumer`] for a consumer that may queue `max_queue` of video before it
    /// drops: one that decodes the cached GOP before it catches up with live.
    pub fn add_consumer_with_queue(
        self: &Arc<Self>,
        video: &gst_app::AppSrc,
        audio: Option<&gst_app::AppSrc>,
        max_queue: gst::ClockTime,
    ) -> ConsumerLink {
        let link = self.link();
        let id = link.id;
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
            video: SinkRef::Src(video.downgrade()),
            audio: audio.map(|a| SinkRef::Src(a.downgrade())),
            start: Start::Burst,
            audio_after: None,
            max_queue,
        });
        link
    }

    /// Registers a consumer that takes its frames from `queue` (with audio when `audio`): it
    /// gets the cached GOP at once, then live frames.
    pub fn add_queue_consumer(
        self: &Arc<Self>,
        queue: &Arc<FrameQueue>,
        audio: bool,
    ) -> ConsumerLink {
        let link = self.link();
        let id = link.id;
        self.lock().consumers.push(Consumer {
            id,
            video: SinkRef::Queue(Arc::downgrade(queue), Track::Video),
            audio: audio.then(|| SinkRef::Queue(Arc::downgrade(queue), Track::Audio)),
            start: Start::Burst,
            audio_after: None,
            max_queue: MAX_QUEUE,
        });
        self.prime(id);
        link
    }

    /// Registers an audio-only consumer: it gets every audio frame in `form` from now on,
    /// across reconnects, and drops frames (counted) if it falls [`MAX_QUEUE`] behind.
    pub fn add_audio_tap(self: &Arc<Self>, src: &gst_app::AppSrc, form: AudioForm) -> ConsumerLink {
        let link = self.link();
        prepare_consumer_src(src);
        self.lock()
            .audio_taps
            .push((link.id, src.downgrade(), form));
        link
    }

    /// Gives a joining consumer the cached GOP now, without waiting for the next live frame.
    /// The burst is pushed under the lock: live frames must not overtake it.
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

    /// Ends every consumer's stream (MQTT OFF); returns how many there were. Their links stay
    /// valid: dropping one later finds nothing left to remove.
    ///
    /// Ending the media reaches viewers that are still negotiating and have no RTSP session yet.
    pub fn end_all_consumers(&self) -> usize {
        let consumers = std::mem::take(&mut self.lock().consumers);
        for consumer in &consumers {
            let sinks = std::iter::once(&consumer.video).chain(consumer.audio.as_ref());
            for sink in sinks.filter_map(SinkRef::upgrade) {
                sink.end();
            }
        }
        consumers.len()
    }
}

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
    pub(super) fn join(&mut self, gop: &[gst::Sample], audio_start: Option<&gst::Sample>) {
        let (Some(video), Some((newest, cached))) = (self.video.upgrade(), gop.split_last()) else {
            return;
        };
        let Some(live_pts) = newest.buffer().and_then(|b| b.pts()) else {
            return;
        };
        let count = cached.len() as u64;
        for (i, sample) in cached.iter().enumerate() {
            let pts = live_pts.saturating_sub(BURST_SPACING * (count - i as u64));
            if !video.push(&restamp(sample, pts)) {
                return;
            }
        }
        if !video.push(newest) {
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
            audio.push(&first);
        }
    }
}

/// Where a consumer's frames of one track go, held weakly: a consumer whose sink is gone is
/// forgotten.
pub(super) enum SinkRef {
    Src(glib::WeakRef<gst_app::AppSrc>),
    Queue(Weak<FrameQueue>, Track),
}

impl SinkRef {
    pub(super) fn upgrade(&self) -> Option<Sink> {
        match self {
            SinkRef::Src(weak) => weak.upgrade().map(Sink::Src),
            SinkRef::Queue(weak, track) => weak.upgrade().map(|q| Sink::Queue(q, *track)),
        }
    }
}

/// A consumer's sink for one track, while it is being fed.
pub(super) enum Sink {
    Src(gst_app::AppSrc),
    Queue(Arc<FrameQueue>, Track),
}

impl Sink {
    /// False when the sink takes nothing now (its media not running yet, or ended).
    fn push(&self, sample: &gst::Sample) -> bool {
        match self {
            Sink::Src(src) => src.push_sample(sample).is_ok(),
            Sink::Queue(queue, track) => queue.push(*track, sample),
        }
    }

    fn end(&self) {
        match self {
            Sink::Src(src) => {
                let _ = src.end_of_stream();
            }
            Sink::Queue(queue, _) => queue.end(),
        }
    }

    /// More than `max_queue` of media waits in the consumer's queue.
    pub(super) fn behind(&self, max_queue: gst::ClockTime) -> bool {
        match self {
            Sink::Src(src) => src.current_level_time() > max_queue,
            Sink::Queue(queue, _) => queue.queued_video() > max_queue,
        }
    }
}

/// The sinks a frame goes to, gathered under the hub's lock and fed after it is released.
#[derive(Default)]
pub(super) struct Delivery {
    to: Vec<Sink>,
    /// Consumers that were too far behind to take it.
    pub(super) dropped: u64,
}

impl Delivery {
    pub(super) fn add(&mut self, sink: Sink) {
        self.to.push(sink);
    }

    /// Adds a consumer whose queue decides on its own whether it takes the frame (audio).
    pub(super) fn add_unless_behind(&mut self, sink: Sink) {
        if sink.behind(MAX_QUEUE) {
            self.dropped += 1;
        } else {
            self.to.push(sink);
        }
    }

    /// Whether any consumer takes the frame.
    pub(super) fn has_takers(&self) -> bool {
        !self.to.is_empty()
    }

    /// Hands the frame over; returns how many consumers dropped it.
    pub(super) fn send(self, sample: &gst::Sample) -> u64 {
        for sink in &self.to {
            sink.push(sample);
        }
        self.dropped
    }
}

pub(super) fn restamp(sample: &gst::Sample, pts: gst::ClockTime) -> gst::Sample {
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
