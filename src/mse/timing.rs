//! Where each frame goes on a fragment's timeline: the hub's times (ns) in each track's
//! timescale, with durations MP4 needs and a live stream does not know yet.

/// Samples per AAC frame.
pub const AAC_FRAME: u32 = 1024;

/// A video frame lasts until the next, which has not come yet: each frame gets the interval
/// before it (the camera's frame rate, as the hub keeps its spacing), and the first a 25 fps
/// frame's. A frame is placed at its own time, so a gap or a jitter never shifts the rest.
#[derive(Debug)]
pub struct VideoTiming {
    timescale: u64,
    last: Option<u64>,
    interval: u32,
}

impl VideoTiming {
    pub fn new(timescale: u32) -> Self {
        Self {
            timescale: u64::from(timescale),
            last: None,
            interval: timescale / 25,
        }
    }

    /// The decode time and duration of the frame at `pts_ns`.
    pub fn place(&mut self, pts_ns: u64) -> (u64, u32) {
        let mut time = ticks(pts_ns, self.timescale);
        if let Some(last) = self.last {
            // Times only go forward in a track; an interval over 2 s is a gap, not a rate.
            time = time.max(last + 1);
            let interval = time - last;
            if interval <= 2 * self.timescale {
                self.interval = interval as u32;
            }
        }
        self.last = Some(time);
        (time, self.interval)
    }
}

/// AAC frames are all [`AAC_FRAME`] samples long: each follows the last exactly, unless the
/// hub's time for it is more than two frames away (a gap or a restart), where the track starts
/// over at that time. So rounding never opens gaps a browser would stall at.
#[derive(Debug)]
pub struct AudioTiming {
    timescale: u64,
    next: Option<u64>,
}

impl AudioTiming {
    pub fn new(timescale: u32) -> Self {
        Self {
            timescale: u64::from(timescale),
            next: None,
        }
    }

    /// The decode time of the frame at `pts_ns`.
    pub fn place(&mut self, pts_ns: u64) -> u64 {
        let time = ticks(pts_ns, self.timescale);
        let frame = u64::from(AAC_FRAME);
        let placed = match self.next {
            Some(next) if next.abs_diff(time) <= 2 * frame => next,
            _ => time,
        };
        self.next = Some(placed + frame);
        placed
    }
}

fn ticks(ns: u64, timescale: u64) -> u64 {
    (u128::from(ns) * u128::from(timescale) / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn video_frames_keep_their_times_and_last_the_interval_before_them() {
        let mut timing = VideoTiming::new(90_000);
        assert_eq!(timing.place(1000 * MS), (90_000, 3600));
        assert_eq!(timing.place(1066 * MS), (95_940, 5940));
        assert_eq!(timing.place(1132 * MS), (101_880, 5940));
        // A 5 s gap keeps the last interval, and the frame its own time.
        assert_eq!(timing.place(6132 * MS), (551_880, 5940));
        // A time that goes back is moved just after the last.
        assert_eq!(timing.place(6000 * MS), (551_881, 1));
    }

    #[test]
    fn audio_frames_follow_each_other_exactly_until_a_gap() {
        let mut timing = AudioTiming::new(16_000);
        assert_eq!(timing.place(1000 * MS), 16_000);
        // 64 ms later, give or take a millisecond of rounding: exactly one frame later.
        assert_eq!(timing.place(1065 * MS), 17_024);
        assert_eq!(timing.place(1127 * MS), 18_048);
        // Half a second missing: the track starts over at the new time.
        assert_eq!(timing.place(1700 * MS), 27_200);
        assert_eq!(timing.place(1764 * MS), 28_224);
    }
}
