//! Presentation times for a camera's RTP packets, from their RTP timestamps and when they arrived.
//!
//! A packet's RTP timestamp says exactly how far apart frames were captured; its arrival says
//! when that was on our clock, plus a network delay that varies. The offset between the two aims
//! at the smallest delay seen lately (the packets that were least delayed), so it follows the
//! camera's clock drifting from ours.
//!
//! The offset never jumps: it moves at most [`SLEW`] of the media time that passed. Frames then
//! keep the camera's spacing to within 1 %, times never go back (muxers refuse a stream whose
//! timestamps decrease), and a clip that starts with a late first packet or a burst is not
//! squeezed to catch up. A real camera's clock drifts by well under 0.01 %, so this follows it.

use std::time::Duration;

/// The smallest delay is taken over two windows of this length, so an old minimum is forgotten
/// within 4 s: that is how drift is followed.
const WINDOW: Duration = Duration::from_secs(2);
/// RTP time that jumps this far from what the arrivals allow means the camera restarted its
/// clock. A stall (packets late, RTP time steady) is not one.
const RESYNC: Duration = Duration::from_secs(1);
/// The offset moves by at most 1/SLEW of the media time that passed.
const SLEW: i64 = 100;
/// Extended timestamps start here, so B-frames before the first packet stay positive (as
/// GStreamer's `gst_rtp_buffer_ext_timestamp` does).
const EXTENDED_BASE: u64 = 1 << 32;

#[derive(Debug, Clone)]
pub struct Timeline {
    clock_rate: u32,
    /// The last RTP timestamp, extended past 32-bit wrap-arounds.
    extended: Option<u64>,
    /// The latest media time seen (ns) and when the last packet arrived.
    newest_media: i64,
    last_arrival: u64,
    /// Arrival minus media time, in ns: the least seen in the current and the previous window.
    current_min: i64,
    previous_min: i64,
    window_start: u64,
    /// Media time plus this is a packet's time on our clock.
    offset: i64,
    /// The lip-sync delay rtpbin asks for (its `ts-offset`), and the part of it applied so far:
    /// more delay is applied at once (a gap), less is slewed like the offset.
    sync_wanted: i64,
    sync_applied: i64,
}

/// What rtpbin needs to place a sender report on our timeline (its `handle-sync` structure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint {
    /// The report's RTP time, extended like our packets'.
    pub extended_rtp: u64,
    /// When that RTP time plays on our clock, before the lip-sync delay.
    pub time: u64,
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
            sync_wanted: 0,
            sync_applied: 0,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    fn extend(&self, rtp_timestamp: u32) -> u64 {
        match self.extended {
            // The signed difference to the last one carries the timestamp across wrap-arounds,
            // and backwards for B-frames, which come before frames they precede in time.
            Some(last) => {
                last.wrapping_add_signed(i64::from(rtp_timestamp.wrapping_sub(last as u32) as i32))
            }
            None => EXTENDED_BASE + u64::from(rtp_timestamp),
        }
    }

    fn media_ns(&self, extended: u64) -> i64 {
        (i128::from(extended) * 1_000_000_000 / i128::from(self.clock_rate)) as i64
    }

    /// The presentation time (ns on our running time) of a packet with `rtp_timestamp` that
    /// arrived at `arrival` (ns on our running time).
    pub fn pts(&mut self, rtp_timestamp: u32, arrival: u64) -> u64 {
        let first = self.extended.is_none();
        let extended = self.extend(rtp_timestamp);
        self.extended = Some(extended);
        let media = self.media_ns(extended);
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
            let step = advanced.max(0) / SLEW;
            self.offset = target.clamp(self.offset - step, self.offset + step);
            self.sync_applied = if self.sync_wanted >= self.sync_applied {
                self.sync_wanted
            } else {
                self.sync_wanted.max(self.sync_applied - step)
            };
            self.newest_media = self.newest_media.max(media);
        }
        (media + self.offset + self.sync_applied).max(0) as u64
    }

    /// Sets the lip-sync delay rtpbin computed from the camera's sender reports.
    pub fn set_sync_offset(&mut self, ns: i64) {
        self.sync_wanted = ns;
    }

    /// Places a sender report's RTP time on our timeline; `None` before the first packet, or for
    /// a report more than a second from the packets (some servers send bogus ones after a PLAY).
    pub fn sync_point(&self, rtp_timestamp: u32) -> Option<SyncPoint> {
        let last = self.extended?;
        let extended_rtp = self.extend(rtp_timestamp);
        if extended_rtp.abs_diff(last) > u64::from(self.clock_rate) {
            return None;
        }
        let time = (self.media_ns(extended_rtp) + self.offset).max(0) as u64;
        Some(SyncPoint { extended_rtp, time })
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
    fn a_late_first_packet_is_caught_up_slowly_and_never_back_in_time() {
        let mut timeline = Timeline::new(90_000);
        let start = 2_000 * MS;
        // The first packet waited 200 ms; every later one arrives on time.
        let mut last = timeline.pts(0, start + 200 * MS);
        let mut pts = 0;
        for i in 1..1000u32 {
            let arrival = start + u64::from(i) * 40 * MS;
            pts = timeline.pts(i * FRAME, arrival);
            let spacing = pts - last;
            assert!(
                (39_600_000..=40_000_000).contains(&spacing),
                "frame {i}: {spacing} ns after the last"
            );
            last = pts;
        }
        // 40 s of media at 1 %: 400 ms of room, so the 200 ms are caught up.
        assert_eq!(pts, start + 999 * 40 * MS, "caught up with the arrivals");
    }

    #[test]
    fn a_burst_at_the_start_does_not_squeeze_the_first_frames() {
        // A server that replays its last 2 s at once on connect, then goes on live.
        let mut timeline = Timeline::new(90_000);
        let start = 1_000 * MS;
        let pts: Vec<u64> = (0..100u32)
            .map(|i| {
                let arrival = if i < 50 {
                    start + u64::from(i) * MS
                } else {
                    start + u64::from(i - 50) * 40 * MS + 50 * MS
                };
                timeline.pts(i * FRAME, arrival)
            })
            .collect();
        for pair in pts.windows(2) {
            let spacing = pair[1] - pair[0];
            assert!((39_600_000..=40_000_000).contains(&spacing), "{spacing}");
        }
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
        // The camera's clock runs 0.5 % slow: its timestamps fall behind ours by 5 ms a second.
        let mut timeline = Timeline::new(90_000);
        let mut last_lag = 0;
        for tenth in 0..600u64 {
            let rtp = (tenth * 9_000 * 995 / 1000) as u32;
            let arrival = 1_000 * MS + tenth * 100 * MS;
            last_lag = arrival - timeline.pts(rtp, arrival);
        }
        // Without following, 60 s × 5 ms = 300 ms behind; the windows keep it to a few seconds' drift.
        assert!(last_lag <= 30 * MS, "lag {} ms", last_lag / MS);
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

    #[test]
    fn a_lip_sync_delay_applies_at_once_and_leaves_slowly() {
        let mut timeline = Timeline::new(8_000);
        let start = 1_000 * MS;
        // 20 ms audio packets, 160 samples each.
        let at =
            |i: u32, timeline: &mut Timeline| timeline.pts(i * 160, start + u64::from(i) * 20 * MS);
        assert_eq!(at(0, &mut timeline), start);
        timeline.set_sync_offset((40 * MS) as i64);
        assert_eq!(at(1, &mut timeline), start + 60 * MS, "delayed at once");
        timeline.set_sync_offset(0);
        let mut last = at(2, &mut timeline);
        for i in 3..300 {
            let pts = at(i, &mut timeline);
            assert!(
                pts > last && pts - last >= 19_800_000,
                "{i}: {}",
                pts - last
            );
            last = pts;
        }
        assert_eq!(last, start + 299 * 20 * MS, "the delay is gone");
    }

    #[test]
    fn a_sender_report_is_placed_on_the_same_timeline() {
        let mut timeline = Timeline::new(90_000);
        assert_eq!(timeline.sync_point(0), None, "no packets yet");
        let start = 7_000 * MS;
        let first = timeline.pts(u32::MAX - FRAME, start);
        timeline.pts(FRAME / 2 - 1, start + 60 * MS);
        // A report 20 ms after the first packet, across the wrap-around.
        let point = timeline.sync_point(u32::MAX - FRAME + 1_800).unwrap();
        assert_eq!(point.time, first + 20 * MS);
        assert_eq!(
            point.extended_rtp,
            EXTENDED_BASE + u64::from(u32::MAX - FRAME) + 1_800
        );
        assert_eq!(timeline.sync_point(FRAME * 100), None, "4 s away: bogus");
    }
}
