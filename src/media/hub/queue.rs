//! A consumer that is not a GStreamer element (the RTSP sender): the hub queues its frames and
//! its own task takes them, so a frame costs one lock and one wake-up, not a pipeline's worth.

use super::Track;
use gstreamer as gst;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
struct Queued {
    frames: VecDeque<(Track, gst::Sample)>,
    ended: bool,
}

/// Frames for one consumer, in the order the hub gave them.
#[derive(Default)]
pub struct FrameQueue {
    queued: Mutex<Queued>,
    arrived: Notify,
}

impl FrameQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.queued.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn push(&self, track: Track, sample: &gst::Sample) -> bool {
        let mut queued = self.lock();
        if queued.ended {
            return false;
        }
        queued.frames.push_back((track, sample.clone()));
        drop(queued);
        self.arrived.notify_one();
        true
    }

    /// The hub ends the stream (MQTT OFF): what is queued is dropped, and the taker sees the end.
    pub(super) fn end(&self) {
        let mut queued = self.lock();
        queued.ended = true;
        queued.frames.clear();
        drop(queued);
        self.arrived.notify_one();
    }

    /// The span of video waiting, from the oldest queued frame's time to the newest's.
    pub(super) fn queued_video(&self) -> gst::ClockTime {
        self.pts_span(Track::Video)
            .map_or(gst::ClockTime::ZERO, |(oldest, newest)| {
                newest.saturating_sub(oldest)
            })
    }

    /// Everything queued now, oldest first; empty once the hub has ended the stream.
    pub fn take(&self) -> Vec<(Track, gst::Sample)> {
        self.lock().frames.drain(..).collect()
    }

    /// The times of the oldest and the newest queued frame of `track`, without taking them.
    pub fn pts_span(&self, track: Track) -> Option<(gst::ClockTime, gst::ClockTime)> {
        let queued = self.lock();
        let mut times = queued
            .frames
            .iter()
            .filter(|(t, _)| *t == track)
            .filter_map(|(_, sample)| sample.buffer().and_then(|b| b.pts()));
        let first = times.next()?;
        Some((first, times.next_back().unwrap_or(first)))
    }

    /// Waits until frames are queued, or the stream ended (false).
    pub async fn ready(&self) -> bool {
        loop {
            let notified = self.arrived.notified();
            {
                let queued = self.lock();
                if queued.ended {
                    return false;
                }
                if !queued.frames.is_empty() {
                    return true;
                }
            }
            notified.await;
        }
    }
}
