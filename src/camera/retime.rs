//! Times for transcoded audio, taken from the audio it was made from.
//!
//! A decoder, resampler and encoder time their output by counting samples from their first
//! input, and only resync when upstream times stray past a tolerance (40 ms for an audio
//! encoder). The camera's timeline moves the times of every track together when it follows the
//! network (see `timeline`); video follows it packet by packet, so counted audio fell up to
//! 20 ms behind or ahead of the picture before jumping back. Here each encoded frame gets the
//! time its first sample had on the way in: its place in the stream (how much audio came out
//! before it, less the encoder's priming) looked up among the decoded buffers' places and times.
//!
//! An AAC encoder starts with a frame of priming silence that players do not remove from RTP:
//! counted, every sound came that much after its picture (100 ms for voaacenc at 16 kHz). Taking
//! the priming off puts sound with the picture.

use std::collections::VecDeque;
use std::time::Duration;

/// Decoded buffers kept for the lookup: over 10 s of 20 ms packets, far more than an encoder
/// holds back.
const KEPT: usize = 512;

/// Maps encoded frames to the times of the decoded audio they came from.
#[derive(Debug)]
pub struct AudioRetimer {
    /// The encoder's priming, in ns: its output starts this much before its input.
    priming: u64,
    /// (where a decoded buffer starts in the stream, its time), in ns, oldest first.
    decoded: VecDeque<(u64, u64)>,
    decoded_total: u64,
    encoded_total: u64,
}

impl AudioRetimer {
    pub fn new(priming: Duration) -> AudioRetimer {
        AudioRetimer {
            priming: priming.as_nanos() as u64,
            decoded: VecDeque::new(),
            decoded_total: 0,
            encoded_total: 0,
        }
    }

    /// A decoded buffer of `duration` ns went in; `pts` is its time, if it has one.
    pub fn decoded(&mut self, pts: Option<u64>, duration: u64) {
        if let Some(pts) = pts {
            if self.decoded.len() == KEPT {
                self.decoded.pop_front();
            }
            self.decoded.push_back((self.decoded_total, pts));
        }
        self.decoded_total = self.decoded_total.saturating_add(duration);
    }

    /// The time of the next encoded frame, which holds `duration` ns of audio; `None` until a
    /// decoded buffer with a time went in.
    pub fn encoded(&mut self, duration: u64) -> Option<u64> {
        // The priming frame comes before the first decoded sample.
        let early = self.priming.saturating_sub(self.encoded_total);
        let at = self.encoded_total.saturating_sub(self.priming);
        self.encoded_total = self.encoded_total.saturating_add(duration);
        // The last decoded buffer that starts at or before this frame; older ones are done with.
        while self.decoded.len() > 1 && self.decoded[1].0 <= at {
            self.decoded.pop_front();
        }
        let &(start, pts) = self.decoded.front()?;
        Some(
            pts.saturating_add(at.saturating_sub(start))
                .saturating_sub(early),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn steady_input_gives_the_counted_times_less_the_priming() {
        let mut retimer = AudioRetimer::new(Duration::from_millis(64));
        for i in 0..20 {
            retimer.decoded(Some(1_000 * MS + i * 20 * MS), 20 * MS);
        }
        let times: Vec<u64> = (0..5).map(|_| retimer.encoded(64 * MS).unwrap()).collect();
        // The priming frame, then the frame that starts with the first sample at 1000 ms.
        assert_eq!(
            times,
            [936, 1_000, 1_064, 1_128, 1_192].map(|t| t * MS).to_vec()
        );
    }

    #[test]
    fn frames_follow_input_times_that_move_and_jump() {
        let mut retimer = AudioRetimer::new(Duration::ZERO);
        // 20 ms packets whose times drift 1 ms later each (the timeline following a busy
        // machine), then a 500 ms gap in the packets.
        for i in 0..10 {
            retimer.decoded(Some(i * 21 * MS), 20 * MS);
        }
        retimer.decoded(Some(10 * 21 * MS + 500 * MS), 20 * MS);
        assert_eq!(retimer.encoded(30 * MS), Some(0));
        // The frame starting 30 ms into the stream: 10 ms into the second packet (at 21 ms).
        assert_eq!(retimer.encoded(170 * MS), Some(31 * MS));
        // 200 ms in: the packet after the gap.
        assert_eq!(retimer.encoded(20 * MS), Some(710 * MS));
    }

    #[test]
    fn nothing_to_go_by_until_a_timed_buffer_and_old_ones_are_let_go() {
        let mut retimer = AudioRetimer::new(Duration::ZERO);
        retimer.decoded(None, 20 * MS);
        assert_eq!(retimer.encoded(20 * MS), None);
        for i in 0..10_000 {
            retimer.decoded(Some(i * 20 * MS), 20 * MS);
        }
        assert!(retimer.decoded.len() <= KEPT);
    }
}
