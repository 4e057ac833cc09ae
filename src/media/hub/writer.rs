//! The ingest's face of the hub: one [`SessionWriter`] per camera session.

use super::link::{Delivery, Sink, SinkRef, Start};
use super::{AudioForm, Frame, Hub, Keyframe, State, Track};
use gstreamer as gst;
use std::sync::Arc;
use std::time::Instant;

/// A GOP longer than this is not cached (a new consumer then waits for a keyframe).
const MAX_GOP_FRAMES: usize = 600;

/// Writes one camera session into the hub. Beginning it forgets what the last session
/// delivered (consumers stay); dropping it ends the session, and no cached frame survives.
/// A writer whose session was replaced writes nothing.
pub struct SessionWriter {
    hub: Arc<Hub>,
    generation: u64,
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        if state.generation != self.generation {
            return;
        }
        state.gop.clear();
        state.gop_complete = false;
        state.last_audio = None;
        state.session.got_keyframe = false;
        self.hub.keyframe.send_replace(None);
    }
}

impl Hub {
    /// A new camera session starts.
    pub fn begin_session(self: &Arc<Self>) -> SessionWriter {
        let mut state = self.lock();
        state.generation += 1;
        state.session = Default::default();
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
        SessionWriter {
            hub: self.clone(),
            generation: state.generation,
        }
    }
}

impl SessionWriter {
    /// Tells this session's reports from an older one's.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The hub's state, while this is still its session.
    fn current(&self) -> Option<std::sync::MutexGuard<'_, State>> {
        let state = self.hub.lock();
        (state.generation == self.generation).then_some(state)
    }

    /// Counts media bytes as they arrive from the camera.
    pub fn received(&self, bytes: usize) {
        crate::metrics::count(&self.hub.counters.received_bytes, bytes as u64);
    }

    fn count_dropped(&self, dropped: u64) {
        if dropped > 0 {
            crate::metrics::count(&self.hub.counters.dropped_frames, dropped);
        }
    }

    /// The tracks chosen so far from the camera's SDP (called once per offered stream).
    pub fn set_tracks(&self, has_audio: bool, audio_in: Option<String>) {
        let Some(mut state) = self.current() else {
            return;
        };
        state.session.has_audio = Some(has_audio);
        state.session.audio_in = audio_in;
        self.hub.announce_if_ready(&mut state);
    }

    /// The camera sends G.711 at 8 kHz (`"PCMA"` or `"PCMU"`), which is also kept as it came.
    pub fn set_g711(&self, encoding: Option<&'static str>) {
        if let Some(mut state) = self.current() {
            state.session.g711 = encoding;
        }
    }

    /// The audio track's caps are known (before its first frame). `filler` is a silent frame in
    /// that format, for viewers that join before the first real one.
    pub fn set_audio_caps(&self, caps: gst::Caps, filler: Option<gst::Buffer>) {
        let Some(mut state) = self.current() else {
            return;
        };
        state.session.audio_filler =
            filler.map(|buffer| gst::Sample::builder().buffer(&buffer).caps(&caps).build());
        state.session.audio_caps = Some(caps);
        self.hub.announce_if_ready(&mut state);
    }

    /// Called on the ingest's audio thread with the camera's untouched G.711 frames. The frame
    /// is made only when a consumer takes G.711 (a WebRTC viewer whose browser does).
    pub fn push_g711(&self, make: impl FnOnce() -> gst::Sample) {
        let Some(mut state) = self.current() else {
            return;
        };
        let mut delivery = Delivery::default();
        gather_audio_taps(&mut state, AudioForm::G711, &mut delivery);
        drop(state);
        let dropped = if delivery.has_takers() {
            delivery.send(&make())
        } else {
            delivery.dropped
        };
        self.count_dropped(dropped);
    }

    /// Called on the ingest's video streaming thread for every frame.
    pub fn push_video(&self, sample: gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let is_keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let Some(mut state) = self.current() else {
            return;
        };
        state.last_video_at = Some(Instant::now());
        if is_keyframe {
            self.keyframe_arrived(&mut state, &sample);
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
        let delivery = video_delivery(&mut state, is_keyframe);
        drop(state);
        self.count_dropped(delivery.send(&sample));
    }

    /// A keyframe starts a new GOP in the cache and is what snapshots see.
    fn keyframe_arrived(&self, state: &mut State, sample: &gst::Sample) {
        if state.gop_complete && !state.gop.is_empty() {
            state.gop_frames = Some(state.gop.len());
        }
        state.gop.clear();
        state.gop_complete = true;
        if !state.session.got_keyframe {
            tracing::debug!(
                "first keyframe of camera session {}, pts {:?}",
                self.generation,
                sample.buffer().and_then(|b| b.pts())
            );
            state.session.got_keyframe = true;
            state.session.video_caps = sample.caps_owned();
            self.hub.announce_if_ready(state);
        } else if let Some(caps) = sample.caps_owned() {
            state.session.video_caps = Some(caps);
        }
        state.keyframes_seen += 1;
        self.hub.keyframe.send_replace(Some(Keyframe {
            seq: state.keyframes_seen,
            sample: sample.clone(),
        }));
    }

    /// Called on the ingest's audio streaming thread; audio follows video into each consumer.
    pub fn push_audio(&self, sample: gst::Sample) {
        let Some(mut state) = self.current() else {
            return;
        };
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
        let mut delivery = Delivery::default();
        for viewer in viewers.filter_map(SinkRef::upgrade) {
            delivery.add_unless_behind(viewer);
        }
        gather_audio_taps(&mut state, AudioForm::Aac, &mut delivery);
        drop(state);
        self.count_dropped(delivery.send(&sample));
    }
}

/// Decides, for each viewer, what a video frame does: start its burst, wait for a keyframe,
/// drop, or go to it live. Bursts are pushed here, under the lock, so no live frame overtakes
/// them; live frames are gathered for after it.
fn video_delivery(state: &mut State, is_keyframe: bool) -> Delivery {
    let State {
        consumers,
        gop,
        gop_complete,
        last_audio,
        session,
        ..
    } = state;
    let audio_start = last_audio.as_ref().or(session.audio_filler.as_ref());
    let mut delivery = Delivery::default();
    consumers.retain_mut(|consumer| {
        let Some(sink) = consumer.video.upgrade() else {
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
            Start::Live if sink.behind(consumer.max_queue) => {
                consumer.start = Start::Dropping;
                delivery.dropped += 1;
                return true;
            }
            Start::Dropping if !is_keyframe || sink.behind(consumer.max_queue) => {
                delivery.dropped += 1;
                return true;
            }
            _ => {}
        }
        consumer.start = Start::Live;
        delivery.add(sink);
        true
    });
    delivery
}

/// Adds the audio taps that take `form`, and forgets those whose appsrc is gone (its pipeline
/// was freed before its link was dropped): one pass, one upgrade per tap.
fn gather_audio_taps(state: &mut State, form: AudioForm, delivery: &mut Delivery) {
    state.audio_taps.retain(|(_, weak, tap_form)| {
        let Some(src) = weak.upgrade() else {
            return false;
        };
        if *tap_form == form {
            delivery.add_unless_behind(Sink::Src(src));
        }
        true
    });
}
