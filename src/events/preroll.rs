//! The last seconds of a camera's media, kept as the hub's own encoded frames (no decoding), so
//! a clip can start before the event that made it.
//!
//! The buffer always starts at a video keyframe: after each video frame it keeps the newest
//! keyframe that is at least `span` old and everything after it, so a clip gets at least `span`
//! of decodable pre-roll and memory stays between bitrate × span and bitrate × (span + a GOP).
//! A camera whose keyframes stop empties it after [`KEYFRAME_WAIT`] instead of growing it.

pub use crate::media::hub::{Frame, Track};
use gstreamer as gst;
use std::collections::VecDeque;
use std::time::Duration;

/// How long past its span the buffer waits for a keyframe before it lets go of everything: a
/// camera that stops sending keyframes (or sends ones we cannot see) must not grow it without
/// end. Longer than any camera's GOP we know of.
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct PreRoll {
    span: Duration,
    frames: VecDeque<Frame>,
    /// The buffered keyframes: their position in the stream (frames pushed before them) and time.
    keyframes: VecDeque<(u64, gst::ClockTime)>,
    /// The stream position of `frames[0]`.
    first: u64,
    bytes: usize,
}

impl PreRoll {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            frames: VecDeque::new(),
            keyframes: VecDeque::new(),
            first: 0,
            bytes: 0,
        }
    }

    /// Takes the camera's next frame. Returns true when no keyframe came for the span and
    /// [`KEYFRAME_WAIT`] more, and the buffer was emptied: clips start at the next keyframe.
    #[must_use]
    pub fn push(&mut self, frame: Frame) -> bool {
        let keyframe = frame.track == Track::Video && frame.keyframe;
        if self.frames.is_empty() && !keyframe {
            return false;
        }
        let video_pts = (frame.track == Track::Video).then(|| frame.pts()).flatten();
        if keyframe {
            if let Some(pts) = video_pts {
                let position = self.first + self.frames.len() as u64;
                self.keyframes.push_back((position, pts));
            }
        }
        self.bytes += size(&frame);
        self.frames.push_back(frame);
        let Some(now) = video_pts else {
            return false;
        };
        self.trim(now);
        let oldest = self.keyframes.front().map(|&(_, pts)| pts);
        let limit = gst::ClockTime::from_nseconds((self.span + KEYFRAME_WAIT).as_nanos() as u64);
        if oldest.is_some_and(|oldest| oldest + limit < now) {
            self.clear();
            return true;
        }
        false
    }
    pub fn span(&self) -> Duration {
        self.span
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The oldest buffered frame of `track`.
    pub fn first(&self, track: Track) -> Option<Frame> {
        self.frames.iter().find(|f| f.track == track).cloned()
    }

    /// Drops what is older than the newest keyframe that is at least `span` old at `now`: one
    /// look at the second keyframe per video frame.
    fn trim(&mut self, now: gst::ClockTime) {
        let span = gst::ClockTime::from_nseconds(self.span.as_nanos() as u64);
        while let Some(&(position, pts)) = self.keyframes.get(1) {
            if pts + span > now {
                break;
            }
            self.keyframes.pop_front();
            for frame in self.frames.drain(..(position - self.first) as usize) {
                self.bytes -= size(&frame);
            }
            self.first = position;
        }
    }

    /// The buffered frames, oldest first; the first is a video keyframe.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.iter().cloned().collect()
    }

    /// The camera session changed: the old frames cannot be joined to the new ones.
    pub fn clear(&mut self) {
        self.first += self.frames.len() as u64;
        self.frames.clear();
        self.keyframes.clear();
        self.bytes = 0;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn size(frame: &Frame) -> usize {
    frame.sample.buffer().map_or(0, |b| b.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(track: Track, keyframe: bool, ms: u64) -> Frame {
        let mut buffer = gst::Buffer::with_size(1000).unwrap();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(ms));
        Frame {
            track,
            keyframe,
            sample: gst::Sample::builder().buffer(&buffer).build(),
        }
    }

    fn pts_ms(preroll: &PreRoll) -> Vec<u64> {
        preroll
            .frames()
            .iter()
            .map(|f| f.pts().unwrap().mseconds())
            .collect()
    }

    #[test]
    fn keeps_at_least_the_span_from_a_keyframe() {
        gst::init().unwrap();
        let mut preroll = PreRoll::new(Duration::from_secs(2));
        // 1 s GOP at 4 fps, audio in between.
        for i in 0..24u64 {
            assert!(!preroll.push(frame(Track::Video, i % 4 == 0, i * 250)));
            assert!(!preroll.push(frame(Track::Audio, false, i * 250 + 100)));
        }
        // Last keyframe 5000 ms: the newest keyframe at least 2 s older is 3000 ms.
        let kept = pts_ms(&preroll);
        assert_eq!(kept[0], 3000, "{kept:?}");
        assert!(preroll.frames()[0].keyframe);
        assert_eq!(preroll.bytes(), kept.len() * 1000);
    }

    #[test]
    fn trims_between_keyframes_as_soon_as_a_later_keyframe_is_span_old() {
        gst::init().unwrap();
        let mut preroll = PreRoll::new(Duration::from_millis(2500));
        // 1 s GOP at 4 fps; the last frame is at 5500 ms.
        for i in 0..23u64 {
            assert!(!preroll.push(frame(Track::Video, i % 4 == 0, i * 250)));
        }
        // At 5500 ms the keyframe at 3000 ms is 2.5 s old: nothing before it is needed.
        let kept = pts_ms(&preroll);
        assert_eq!(kept[0], 3000, "{kept:?}");
        assert_eq!(preroll.bytes(), kept.len() * 1000);
        // After a new session the same holds; its keyframes are at 10250 + n s, its last frame
        // at 15500 ms.
        preroll.clear();
        for i in 0..23u64 {
            assert!(!preroll.push(frame(Track::Video, i % 4 == 1, 10_000 + i * 250)));
        }
        assert_eq!(pts_ms(&preroll)[0], 12_250);
    }

    #[test]
    fn starts_only_at_a_keyframe_and_clears_on_a_new_session() {
        gst::init().unwrap();
        let mut preroll = PreRoll::new(Duration::from_secs(5));
        assert!(!preroll.push(frame(Track::Audio, false, 0)));
        assert!(!preroll.push(frame(Track::Video, false, 40)));
        assert!(preroll.frames().is_empty());
        assert!(!preroll.push(frame(Track::Video, true, 80)));
        assert!(!preroll.push(frame(Track::Audio, false, 90)));
        assert_eq!(pts_ms(&preroll), [80, 90]);
        preroll.clear();
        assert!(preroll.frames().is_empty());
        assert_eq!(preroll.bytes(), 0);
    }

    #[test]
    fn a_zero_span_keeps_the_current_gop() {
        gst::init().unwrap();
        let mut preroll = PreRoll::new(Duration::ZERO);
        for i in 0..10u64 {
            assert!(!preroll.push(frame(Track::Video, i % 4 == 0, i * 100)));
        }
        assert_eq!(pts_ms(&preroll), [800, 900]);
        assert_eq!(preroll.first(Track::Video).map(|f| f.keyframe), Some(true));
        assert!(preroll.first(Track::Audio).is_none());
    }

    #[test]
    fn a_camera_without_keyframes_does_not_grow_it_without_end() {
        gst::init().unwrap();
        let mut preroll = PreRoll::new(Duration::from_secs(5));
        assert!(!preroll.push(frame(Track::Video, true, 0)));
        let limit = (Duration::from_secs(5) + KEYFRAME_WAIT).as_millis() as u64;
        // Delta frames only, 25 a second, up to the limit: all kept, since a clip needs the
        // keyframe they hang on.
        let mut ms = 40;
        while ms <= limit {
            assert!(!preroll.push(frame(Track::Video, false, ms)), "at {ms} ms");
            ms += 40;
        }
        assert_eq!(pts_ms(&preroll)[0], 0);
        // Past it: emptied, said once, and nothing kept until the next keyframe.
        assert!(preroll.push(frame(Track::Video, false, ms)));
        assert!(preroll.frames().is_empty());
        assert_eq!(preroll.bytes(), 0);
        assert!(!preroll.push(frame(Track::Video, false, ms + 40)));
        assert!(preroll.frames().is_empty());
        assert!(!preroll.push(frame(Track::Video, true, ms + 80)));
        assert_eq!(pts_ms(&preroll), [ms + 80]);
    }
}
