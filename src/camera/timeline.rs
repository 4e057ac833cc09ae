//! Presentation times for a camera's RTP packets, from their RTP timestamps and when they arrived.
//!
//! A packet's RTP timestamp says exactly how far apart frames were captured; its arrival says
//! when that was on our clock, plus a network delay that varies. The offset between the two is
//! taken as the smallest delay seen lately (the packets that were least delayed), so frames keep
//! the camera's exact spacing, and the offset follows the camera's clock drifting from ours.
//! When a quicker packet lowers the offset, it moves down gradually, so times never go back:
//! muxers (event clips) refuse a stream whose timestamps decrease.

use std::time::Duration;

/// The smallest delay is taken over two windows of this length, so an old minimum is forgotten
/// within 4 s: that is how drift is followed.
const WINDOW: Duration = Duration::from_secs(2);
/// RTP time that jumps this far from what the arrivals allow means the camera restarted its
/// clock. A stall (packets late, RTP time steady) is not one.
const RESYNC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: u32,
    /// The last RTP timestamp, extended past 32-bit wrap-arounds.
    extended: Option<i64>,
    /// The latest media time seen (ns) and when the last packet arrived.
    newest_media: i64,
    last_arrival: u64,
    /// Arrival minus media time, in ns: the least seen in the current and the previous window.
    current_min: i64,
    previous_min: i64,
    window_start: u64,
    /// The offset in use: it rises at once, and falls at most half as fast as media time runs.
    offset: i64,
}

impl Timeline {
    pub fn new(clock_rate: u32) -> Timeline {
        Timeline {
            clock_rate: clock_rate.max(1),
            extended: None,
            newest_media: 0,
            last_arrival: 0,
            current_min: 0,
            previous_min: 0,
            window_start: 0,
            offset: 0,
        }
    }

    /// The presentation time (ns on our running time) of a packet with `rtp_timestamp` that
    /// arrived at `arrival` (ns on our running time).
    pub fn pts(&mut self, rtp_timestamp: u32, arrival: u64) -> u64 {
        let first = self.extended.is_none();
        let extended = match self.extended {
            // The signed difference to the last one carries the timestamp across wrap-arounds,
            // and backwards for B-frames, which come before frames they precede in time.
            Some(last) => last + i64::from(rtp_timestamp.wrapping_sub(last as u32) as i32),
            None => i64::from(rtp_timestamp),
        };
        self.extended = Some(extended);
        let media = (i128::from(extended) * 1_000_000_000 / i128::from(self.clock_rate)) as i64;
        let delay = arrival as i64 - media;
        let advanced = media - self.newest_media;
        let waited = arrival.saturating_sub(self.last_arrival) as i64;
        let resync = RESYNC.as_nanos() as i64;
        self.last_arrival = arrival;
        if first || advanced < -resync || advanced > waited + resync {
            self.current_min = delay;
            self.previous_min = delay;
            self.window_start = arrival;
            self.offset = delay;
            self.newest_media = media;
        } else {
            if arrival.saturating_sub(self.window_start) >= WINDOW.as_nanos() as u64 {
                self.previous_min = self.current_min;
                self.current_min = delay;
                self.window_start = arrival;
            }
            self.current_min = self.current_min.min(delay);
            let target = self.current_min.min(self.previous_min);
            self.offset = target.max(self.offset - advanced.max(0) / 2);
            self.newest_media = self.newest_media.max(media);
        }
        (media + self.offset).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// 90 kHz video: 3600 ticks per 40 ms frame.
    const FRAME: u32 = 3600;

    #[test]
    fn frames_keep_the_cameras_spacing_despite_arrival_jitter() {
        let mut timeline = Timeline::new(90_000);
        let jitter = [0, 7, 2, 15, 1, 9, 0, 4];
        let start = 5_000 * MS;
        let pts: Vec<u64> = (0..8u32)
            .map(|i| {
                timeline.pts(
                    1000 + i * FRAME,
                    start + u64::from(i) * 40 * MS + jitter[i as usize] * MS,
                )
            })
            .collect();
        for pair in pts.windows(2) {
            assert_eq!(pair[1] - pair[0], 40 * MS, "{pts:?}");
        }
        // Anchored on the least delayed packet: never later than any arrival.
        assert_eq!(pts[0], start);
    }

    #[test]
    fn follows_a_packet_that_arrives_with_less_delay() {
        let mut timeline = Timeline::new(90_000);
        let start = 1_000 * MS;
        assert_eq!(timeline.pts(0, start + 20 * MS), start + 20 * MS);
        // The next frame came 15 ms quicker: the earlier one was held up, not this one.
        assert_eq!(timeline.pts(FRAME, start + 45 * MS), start + 45 * MS);
        assert_eq!(timeline.pts(2 * FRAME, start + 90 * MS), start + 85 * MS);
    }

    #[test]
    fn a_late_first_packet_is_caught_up_without_going_back_in_time() {
        let mut timeline = Timeline::new(90_000);
        let start = 2_000 * MS;
        // The first packet waited 100 ms; every later one arrives on time.
        let mut last = timeline.pts(0, start + 100 * MS);
        let mut pts = 0;
        for i in 1..12u32 {
            let arrival = start + u64::from(i) * 40 * MS;
            pts = timeline.pts(i * FRAME, arrival);
            assert!(pts > last, "frame {i}: {pts} after {last}");
            last = pts;
        }
        assert_eq!(pts, start + 11 * 40 * MS, "caught up with the arrivals");
    }

    #[test]
    fn a_stall_is_not_a_restart() {
        let mut timeline = Timeline::new(90_000);
        let start = 3_000 * MS;
        let mut pts: Vec<u64> = (0..5u32)
            .map(|i| timeline.pts(i * FRAME, start + u64::from(i) * 40 * MS))
            .collect();
        // Nothing for 1.5 s, then the held-up frames all at once, then frames on time again.
        let burst = start + 1_660 * MS;
        pts.extend((5..42u32).map(|i| timeline.pts(i * FRAME, burst + u64::from(i))));
        pts.extend((42..50u32).map(|i| timeline.pts(i * FRAME, start + u64::from(i) * 40 * MS)));
        for pair in pts.windows(2) {
            assert_eq!(pair[1] - pair[0], 40 * MS, "{pts:?}");
        }
    }

    #[test]
    fn crosses_the_32_bit_wrap_around() {
        let mut timeline = Timeline::new(90_000);
        let before = u32::MAX - FRAME / 2;
        let first = timeline.pts(before, 10_000 * MS);
        let second = timeline.pts(before.wrapping_add(FRAME), 10_040 * MS);
        assert_eq!(second - first, 40 * MS);
    }

    #[test]
    fn b_frames_go_back_in_time() {
        let mut timeline = Timeline::new(90_000);
        let first = timeline.pts(3 * FRAME, 1_000 * MS);
        let earlier = timeline.pts(FRAME, 1_040 * MS);
        assert_eq!(first - earlier, 80 * MS);
    }

    #[test]
    fn follows_a_camera_clock_that_runs_slow() {
        // The camera's clock runs 1 % slow: its timestamps fall behind our clock by 10 ms a second.
        let mut timeline = Timeline::new(90_000);
        let mut last_lag = 0;
        for second in 0..20u64 {
            let rtp = (second * 90_000 * 99 / 100) as u32;
            let arrival = 1_000 * MS + second * 1_000 * MS;
            last_lag = arrival - timeline.pts(rtp, arrival);
        }
        // Without following, 19 s × 10 ms = 190 ms behind; the windows keep it to a few seconds' drift.
        assert!(last_lag <= 40 * MS, "lag {} ms", last_lag / MS);
    }

    #[test]
    fn a_restarted_camera_clock_is_taken_as_a_new_start() {
        let mut timeline = Timeline::new(8_000);
        timeline.pts(400_000, 1_000 * MS);
        timeline.pts(400_160, 1_020 * MS);
        // The camera's timestamps jump back by 50 s.
        assert_eq!(timeline.pts(160, 1_040 * MS), 1_040 * MS);
        assert_eq!(timeline.pts(320, 1_060 * MS), 1_060 * MS);
    }
}
