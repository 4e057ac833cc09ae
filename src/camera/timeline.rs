//! Presentation times for a camera's RTP packets, from their RTP timestamps and when they arrived.
//!
//! A packet's RTP timestamp says exactly how far apart frames were captured; its arrival says
//! when that was on our clock, plus a network delay that varies. The offset between the two aims
//! at the smallest delay seen lately (the packets that were least delayed), so it follows the
//! camera's clock drifting from ours.
//!
//! The tracks of one camera session share that offset ([`SessionTimeline`]): the PLAY reply's
//! RTP-Info gives each track the RTP time of the same instant (`clock-base`), so media times
//! agree across tracks and audio stays on its video from the first packet. A track whose
//! clock-base disagrees with the session's by over a second starts at its arrival.
//!
//! The offset never jumps: it moves at most 1/[`SLEW`] of the time that passed, and later only
//! by 1/[`RISE`], since a busy machine delays packets far more than a camera clock drifts.
//! Frames then keep the camera's spacing to within 1 %, times never go back (muxers refuse a
//! stream whose timestamps decrease), and a clip that starts with a late first packet or a
//! burst is not squeezed to catch up. A real camera's clock drifts by well under 0.01 %, so
//! this follows it.

use std::time::Duration;

/// The smallest delay is taken over two windows of this length, so an old minimum is forgotten
/// within 4 s: that is how drift is followed.
const WINDOW: Duration = Duration::from_secs(2);
/// RTP time that jumps this far from what the arrivals allow means the camera restarted its
/// clock. A stall (packets late, RTP time steady) is not one.
const RESYNC: Duration = Duration::from_secs(1);
/// Offsets move by at most 1/SLEW of the time that passed.
const SLEW: i64 = 100;
/// A session offset that would rise (packets arriving later than the least delayed did) moves
/// by at most 1/RISE of the time that passed. Rising delays are far more often the machine
/// being busy than the camera's clock running slow, which real cameras do by well under 0.01 %.
/// At 0.1 % a busy spell moves times by at most a millisecond a second.
const RISE: i64 = 1000;
/// Extended timestamps start here, so B-frames before the first packet stay positive (as
/// GStreamer's `gst_rtp_buffer_ext_timestamp` does).
const EXTENDED_BASE: u64 = 1 << 32;

fn nanos(duration: Duration) -> i64 {
    duration.as_nanos() as i64
}

/// Moves `value` toward `target` by at most `step` (none when `step` is negative).
fn slew(value: i64, target: i64, step: i64) -> i64 {
    let step = step.max(0);
    target.clamp(value.saturating_sub(step), value.saturating_add(step))
}

/// The ns from `earlier` to `later` (0 when `later` is not later), as a signed number.
fn elapsed(later: u64, earlier: u64) -> i64 {
    i64::try_from(later.saturating_sub(earlier)).unwrap_or(i64::MAX)
}

/// The offset from media time to our clock, shared by the tracks of one camera session.
#[derive(Debug, Clone, Default)]
pub struct SessionTimeline {
    /// `None` until the first packet of any track.
    offset: Option<i64>,
    /// Arrival minus media time, in ns: the least seen in the current and the previous window.
    current_min: i64,
    previous_min: i64,
    window_start: u64,
    last_arrival: u64,
}

impl SessionTimeline {
    /// Takes a packet's delay into account; returns the offset to use for it.
    fn observe(&mut self, delay: i64, arrival: u64) -> i64 {
        let Some(offset) = self.offset else {
            return self.restart(delay, arrival);
        };
        if arrival.saturating_sub(self.window_start) >= WINDOW.as_nanos() as u64 {
            self.previous_min = self.current_min;
            self.current_min = delay;
            self.window_start = arrival;
        }
        self.current_min = self.current_min.min(delay);
        let since = elapsed(arrival, self.last_arrival);
        self.last_arrival = self.last_arrival.max(arrival);
        let target = self.current_min.min(self.previous_min);
        let step = since / if target > offset { RISE } else { SLEW };
        let offset = slew(offset, target, step);
        self.offset = Some(offset);
        offset
    }

    fn restart(&mut self, delay: i64, arrival: u64) -> i64 {
        *self = SessionTimeline {
            offset: Some(delay),
            current_min: delay,
            previous_min: delay,
            window_start: arrival,
            last_arrival: arrival,
        };
        delay
    }
}

/// One track's times: its RTP clock, and where it sits on the session's timeline.
#[derive(Debug, Clone)]
pub struct TrackTimeline {
    clock_rate: u32,
    /// The RTP time of the session's start (RTP-Info), if the camera said.
    clock_base: Option<u32>,
    /// The extended RTP time media time counts from, set at the first packet.
    origin: Option<u64>,
    /// The last RTP timestamp, extended past 32-bit wrap-arounds.
    extended: u64,
    /// Added to this track's media time: non-zero when it could not be placed by its
    /// clock-base, or its camera restarted its RTP clock.
    correction: i64,
    /// The latest media time seen (ns) and when the last packet arrived.
    newest_media: i64,
    last_arrival: u64,
}

impl TrackTimeline {
    pub fn new(clock_rate: u32, clock_base: Option<u32>) -> TrackTimeline {
        TrackTimeline {
            clock_rate: clock_rate.max(1),
            clock_base,
            origin: None,
            extended: 0,
            correction: 0,
            newest_media: 0,
            last_arrival: 0,
        }
    }

    /// The presentation time of a packet or frame the RTSP client timestamped, on the track
    /// `track` (started by its first packet, with the client's idea of the track's clock-base).
    pub fn pts_of(
        track: &mut Option<TrackTimeline>,
        session: &mut SessionTimeline,
        timestamp: retina::Timestamp,
        arrival: u64,
    ) -> u64 {
        track
            .get_or_insert_with(|| {
                TrackTimeline::new(timestamp.clock_rate().get(), Some(timestamp.start()))
            })
            .pts(session, timestamp.timestamp() as u32, arrival)
    }

    /// The signed difference to the last one carries the timestamp across wrap-arounds, and
    /// backwards for B-frames, which come before frames they precede in time.
    fn extend(&self, rtp_timestamp: u32) -> u64 {
        self.extended.wrapping_add_signed(i64::from(
            rtp_timestamp.wrapping_sub(self.extended as u32) as i32,
        ))
    }

    /// Media time in ns since the origin, corrected. The timestamps, clock rate and reports are
    /// the camera's to choose: every sum here saturates rather than overflow.
    fn media(&self, extended: u64, origin: u64) -> i64 {
        let ticks = extended as i128 - origin as i128;
        let ns = ticks * 1_000_000_000 / i128::from(self.clock_rate);
        i64::try_from(ns)
            .unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
            .saturating_add(self.correction)
    }

    /// The presentation time (ns on our running time) of a packet with `rtp_timestamp` that
    /// arrived at `arrival` (ns on our running time).
    pub fn pts(&mut self, session: &mut SessionTimeline, rtp_timestamp: u32, arrival: u64) -> u64 {
        let origin = match self.origin {
            Some(origin) => {
                self.extended = self.extend(rtp_timestamp);
                origin
            }
            None => self.start(session, rtp_timestamp, arrival),
        };
        let mut media = self.media(self.extended, origin);
        let advanced = media.saturating_sub(self.newest_media);
        let waited = elapsed(arrival, self.last_arrival);
        if advanced < -nanos(RESYNC) || advanced > waited.saturating_add(nanos(RESYNC)) {
            // The camera restarted its RTP clock: go on from this arrival.
            let offset = session.offset.unwrap_or(0);
            let placed = (arrival as i64).saturating_sub(offset);
            self.correction = self.correction.saturating_add(placed.saturating_sub(media));
            media = placed;
            self.newest_media = media;
        }
        self.newest_media = self.newest_media.max(media);
        self.last_arrival = arrival;
        let offset = session.observe((arrival as i64).saturating_sub(media), arrival);
        media.saturating_add(offset).max(0) as u64
    }

    /// Places the first packet: by the clock-base when it agrees with the session within
    /// [`RESYNC`], else at its arrival.
    fn start(&mut self, session: &mut SessionTimeline, rtp_timestamp: u32, arrival: u64) -> u64 {
        self.extended = EXTENDED_BASE + u64::from(rtp_timestamp);
        let origin = match self.clock_base {
            Some(base) => self.extend(base),
            None => self.extended,
        };
        self.origin = Some(origin);
        let media = self.media(self.extended, origin);
        let placed = match session.offset {
            // The first track of the session defines it.
            None => true,
            Some(offset) => {
                (arrival as i64)
                    .saturating_sub(offset)
                    .saturating_sub(media)
                    .saturating_abs()
                    <= nanos(RESYNC)
            }
        };
        if !placed || self.clock_base.is_none() {
            let offset = session
                .offset
                .unwrap_or((arrival as i64).saturating_sub(media));
            self.correction = (arrival as i64)
                .saturating_sub(offset)
                .saturating_sub(media);
        }
        self.newest_media = self.media(self.extended, origin);
        self.last_arrival = arrival;
        origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: an arrival beyond i64 made a negative slew step, and `clamp` panicked;
    /// a clock-base after the first packet underflowed the origin the other branch computed.
    #[test]
    fn arrivals_beyond_i64_and_a_late_clock_base_do_not_panic() {
        let mut session = SessionTimeline::default();
        let mut late_base = TrackTimeline::new(90_000, Some(u32::MAX));
        late_base.pts(&mut session, 10, 1);

        let mut session = SessionTimeline::default();
        let mut track = TrackTimeline::new(90_000, None);
        track.pts(&mut session, 0, 1);
        track.pts(&mut session, 3600, u64::MAX);
        track.pts(&mut session, 7200, u64::MAX);
        assert_eq!(slew(10, 0, -5), 10);
    }

    const MS: u64 = 1_000_000;

    /// A session with one track and no clock-base.
    struct Solo {
        session: SessionTimeline,
        track: TrackTimeline,
    }

    impl Solo {
        fn new(clock_rate: u32) -> Solo {
            Solo {
                session: SessionTimeline::default(),
                track: TrackTimeline::new(clock_rate, None),
            }
        }

        fn pts(&mut self, rtp_timestamp: u32, arrival: u64) -> u64 {
            self.track.pts(&mut self.session, rtp_timestamp, arrival)
        }
    }
    /// 90 kHz video: 3600 ticks per 40 ms frame.
    const FRAME: u32 = 3600;

    #[test]
    fn frames_keep_the_cameras_spacing_despite_arrival_jitter() {
        let mut timeline = Solo::new(90_000);
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
        let mut timeline = Solo::new(90_000);
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
        let mut timeline = Solo::new(90_000);
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
        let mut timeline = Solo::new(90_000);
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
        let mut timeline = Solo::new(90_000);
        let before = u32::MAX - FRAME / 2;
        let first = timeline.pts(before, 10_000 * MS);
        let second = timeline.pts(before.wrapping_add(FRAME), 10_040 * MS);
        assert_eq!(second - first, 40 * MS);
    }

    #[test]
    fn b_frames_go_back_in_time() {
        let mut timeline = Solo::new(90_000);
        let first = timeline.pts(3 * FRAME, 1_000 * MS);
        let earlier = timeline.pts(FRAME, 1_040 * MS);
        assert_eq!(first - earlier, 80 * MS);
    }

    #[test]
    fn follows_a_camera_clock_that_runs_slow() {
        // The camera's clock runs 0.05 % slow (a cheap crystal): its timestamps fall behind
        // ours by 0.5 ms a second.
        let mut timeline = Solo::new(90_000);
        let mut last_lag = 0;
        for tenth in 0..6000u64 {
            let rtp = (tenth * 9_000 * 9995 / 10000) as u32;
            let arrival = 1_000 * MS + tenth * 100 * MS;
            last_lag = arrival - timeline.pts(rtp, arrival);
        }
        // Without following, 600 s × 0.5 ms = 300 ms behind; the windows keep it to a few
        // seconds' drift.
        assert!(last_lag <= 5 * MS, "lag {} ms", last_lag / MS);
    }

    #[test]
    fn a_busy_spell_moves_times_by_at_most_a_millisecond_a_second() {
        // Every packet of a 3 s spell arrives 30 ms late (the machine was busy), then on time.
        let mut timeline = Solo::new(90_000);
        let start = 1_000 * MS;
        let mut worst = 0i64;
        for i in 0..300u64 {
            let late = if (50..125).contains(&i) { 30 * MS } else { 0 };
            let arrival = start + i * 40 * MS + late;
            let pts = timeline.pts((i as u32) * FRAME, arrival);
            worst = worst.max((pts as i64) - (start + i * 40 * MS) as i64);
        }
        assert!(
            worst <= (4 * MS) as i64,
            "times moved {} ms",
            worst / MS as i64
        );
    }

    #[test]
    fn a_restarted_camera_clock_is_taken_as_a_new_start() {
        let mut timeline = Solo::new(8_000);
        timeline.pts(400_000, 1_000 * MS);
        timeline.pts(400_160, 1_020 * MS);
        // The camera's timestamps jump back by 50 s.
        assert_eq!(timeline.pts(160, 1_040 * MS), 1_040 * MS);
        assert_eq!(timeline.pts(320, 1_060 * MS), 1_060 * MS);
    }

    #[test]
    fn tracks_placed_by_their_clock_base_keep_in_step_from_the_first_packet() {
        let mut session = SessionTimeline::default();
        // RTP-Info: video's clock started at 1000, audio's at 50 at the same instant.
        let mut video = TrackTimeline::new(90_000, Some(1000));
        let mut audio = TrackTimeline::new(8_000, Some(50));
        let start = 4_000 * MS;
        let first_video = video.pts(&mut session, 1000, start);
        // Audio is sent in 128 ms blocks: its first packet, for time 0, comes 130 ms late.
        let first_audio = audio.pts(&mut session, 50, start + 130 * MS);
        assert_eq!(first_audio, first_video, "the same instant, the same time");
        let later_video = video.pts(&mut session, 1000 + 90_000, start + 1_000 * MS);
        let later_audio = audio.pts(&mut session, 50 + 8_000, start + 1_130 * MS);
        assert_eq!(later_video, later_audio);
        assert_eq!(later_video - first_video, 1_000 * MS);
    }

    #[test]
    fn a_track_whose_clock_base_disagrees_starts_at_its_arrival() {
        let mut session = SessionTimeline::default();
        let mut video = TrackTimeline::new(90_000, Some(0));
        // This camera's RTP-Info for audio is 10 s off.
        let mut audio = TrackTimeline::new(8_000, Some(80_000));
        let start = 4_000 * MS;
        video.pts(&mut session, 0, start);
        assert_eq!(audio.pts(&mut session, 0, start + 20 * MS), start + 20 * MS);
        assert_eq!(
            audio.pts(&mut session, 160, start + 40 * MS),
            start + 40 * MS
        );
    }

    /// Timestamps and clock rate come from the camera: extreme ones give extreme times, never
    /// an overflow (a panic in the reading task would end the session).
    #[test]
    fn hostile_timestamps_never_overflow() {
        for clock_rate in [1, 90_000, u32::MAX] {
            let mut timeline = Solo::new(clock_rate);
            let mut arrival = u64::MAX / 4;
            for rtp in [0, u32::MAX, 1, u32::MAX / 2, 0, u32::MAX] {
                let _ = timeline.pts(rtp, arrival);
                arrival = arrival.saturating_add(u64::MAX / 8);
            }
            let _ = timeline.pts(7, 0);
        }
    }
}
