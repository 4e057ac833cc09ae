//! A G.711 camera's audio to the one AAC track every viewer gets, in the task that read its
//! packets: decoded (`g711`), brought to 16 kHz (`upsample`), cut into frames and encoded
//! (`aac_lc`). No GStreamer element and no thread: the whole way costs a quarter of what the
//! GStreamer branch with voaacenc did, and the AAC is 34 ms nearer live (the encoder holds 1024
//! samples and the filter 2 ms, where voaacenc held 1600 samples; BENCHMARKS.md, "Our own AAC
//! encoder").

use super::aac_lc::{AacLcEncoder, FRAME, RATE};
use super::g711::Law;
use super::upsample::Upsampler;

/// What every G.711 camera's AAC is coded at (16 kHz mono).
const BITRATE: u32 = 32_000;
/// How far a packet's time may sit from where the last ended and still follow it: the
/// session's timeline moves packet times by a millisecond or so as it follows the network.
const CONTINUES_WITHIN_NS: u64 = 5_000_000;
/// The longest run of lost packets filled with silence; past it the frames move to the new
/// packet's time.
const LONGEST_FILL_NS: u64 = 1_000_000_000;
const FRAME_NS: u64 = FRAME as u64 * 1_000_000_000 / RATE as u64;

/// One encoded frame and the time of the audio it decodes to.
#[derive(Debug)]
pub struct AacFrame {
    pub pts: u64,
    pub duration: u64,
    /// The audio before it is not the audio it follows (time started over).
    pub discont: bool,
    pub data: Vec<u8>,
}

pub struct G711ToAac {
    law: Law,
    /// None for a camera that sends 16 kHz already.
    upsampler: Option<Upsampler>,
    /// The camera's rate.
    rate: u64,
    encoder: AacLcEncoder,
    /// The next frame's samples so far, at 16 kHz, ±1.0.
    frame: Vec<f32>,
    /// The time of `frame[0]`.
    frame_pts: u64,
    frame_discont: bool,
    /// Where the last packet ended, once there was one.
    expected: Option<u64>,
    /// The time of the frame the encoder holds, which its next output decodes to.
    held: Option<(u64, bool)>,
    /// The packet's samples, and the same at 16 kHz: kept to be written again.
    decoded: Vec<f32>,
    resampled: Vec<f32>,
}

impl G711ToAac {
    /// Whether G.711 at `rate` Hz can be transcoded here: 8 kHz (upsampled) or 16 kHz.
    pub fn takes(rate: u32) -> bool {
        rate == 8_000 || rate == RATE
    }

    /// For G.711 at 8 or 16 kHz; None at other rates.
    pub fn new(law: Law, rate: u32) -> Option<G711ToAac> {
        if !Self::takes(rate) {
            return None;
        }
        let upsampler = (rate != RATE).then(Upsampler::new);
        Some(G711ToAac {
            law,
            upsampler,
            rate: u64::from(rate),
            // Sampled at `rate`, G.711 holds nothing above half of it.
            encoder: AacLcEncoder::new(BITRATE, rate / 2),
            frame: Vec::with_capacity(FRAME),
            frame_pts: 0,
            frame_discont: true,
            expected: None,
            held: None,
            decoded: Vec::new(),
            resampled: Vec::new(),
        })
    }

    /// Takes one packet's payload at `pts` ns (`after_loss` when packets went missing before
    /// it); returns the frames it completes.
    pub fn push(&mut self, payload: &[u8], pts: u64, after_loss: bool) -> Vec<AacFrame> {
        let mut done = Vec::new();
        if payload.is_empty() {
            return done;
        }
        match self.expected {
            Some(end) if pts.abs_diff(end) <= CONTINUES_WITHIN_NS => {}
            // Lost packets: silence in their place keeps the audio's time whole.
            Some(end) if after_loss && pts > end && pts - end <= LONGEST_FILL_NS => {
                let missing = ((pts - end) * self.rate / 1_000_000_000) as usize;
                self.decoded.clear();
                self.decoded.resize(missing, 0.0);
                self.take_decoded(&mut done);
            }
            // The start, or a jump: the frame so far is moved to where this packet says it is.
            _ => {
                let delay = self.delay_ns();
                let before = self.frame.len() as u64 * 1_000_000_000 / u64::from(RATE);
                self.frame_pts = pts.saturating_sub(delay + before);
                self.frame_discont = true;
            }
        }
        self.expected = Some(pts + payload.len() as u64 * 1_000_000_000 / self.rate);
        self.decoded.clear();
        self.decoded.extend(
            payload
                .iter()
                .map(|&code| f32::from(self.law.decode(code)) / 32768.0),
        );
        self.take_decoded(&mut done);
        done
    }

    /// How far the upsampler's output runs behind its input.
    fn delay_ns(&self) -> u64 {
        match self.upsampler {
            Some(_) => Upsampler::DELAY as u64 * 1_000_000_000 / self.rate,
            None => 0,
        }
    }

    /// Moves `decoded` into frames, encoding each that fills.
    fn take_decoded(&mut self, done: &mut Vec<AacFrame>) {
        let mut resampled = std::mem::take(&mut self.resampled);
        resampled.clear();
        let samples = match &mut self.upsampler {
            Some(upsampler) => {
                upsampler.push(&self.decoded, &mut resampled);
                &resampled[..]
            }
            None => &self.decoded[..],
        };
        let mut rest = samples;
        while !rest.is_empty() {
            let room = FRAME - self.frame.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.frame.extend_from_slice(now);
            rest = later;
            if self.frame.len() == FRAME {
                let full: &[f32; FRAME] = self.frame[..].try_into().expect("a full frame");
                let data = self.encoder.encode(full);
                // The encoder's output is the frame it held before this one.
                let this = (self.frame_pts, std::mem::take(&mut self.frame_discont));
                if let Some((pts, discont)) = self.held.replace(this) {
                    done.push(AacFrame {
                        pts,
                        duration: FRAME_NS,
                        discont,
                        data,
                    });
                }
                self.frame.clear();
                self.frame_pts += FRAME_NS;
            }
        }
        self.resampled = resampled;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The G.711 code nearest to a sample: the encoder side, by search.
    fn compress(law: Law, sample: i16) -> u8 {
        (0..=255u8)
            .min_by_key(|&code| (law.decode(code) as i32 - sample as i32).abs())
            .unwrap()
    }

    /// 20 ms packets of a 8 kHz signal, from `start_ns`, as (payload, pts).
    fn packets(signal: &[i16], start_ns: u64) -> Vec<(Vec<u8>, u64)> {
        packets_at(8000, signal, start_ns)
    }

    fn packets_at(rate: usize, signal: &[i16], start_ns: u64) -> Vec<(Vec<u8>, u64)> {
        signal
            .chunks(rate / 50)
            .enumerate()
            .map(|(i, chunk)| {
                let payload = chunk.iter().map(|&s| compress(Law::A, s)).collect();
                (payload, start_ns + i as u64 * 20_000_000)
            })
            .collect()
    }

    #[test]
    fn frames_come_every_64_ms_with_the_time_of_the_audio_they_decode_to() {
        let mut transcoder = G711ToAac::new(Law::A, 8000).unwrap();
        let start = 5_000_000_000;
        let frames: Vec<AacFrame> = packets(&vec![0; 8000], start)
            .into_iter()
            .flat_map(|(payload, pts)| transcoder.push(&payload, pts, false))
            .collect();
        // A second of audio is 15.6 frames; the encoder holds one back.
        assert_eq!(frames.len(), 14);
        // The upsampler's 2 ms come before the first packet's time.
        assert_eq!(frames[0].pts, start - 2_000_000);
        assert!(frames[0].discont && !frames[1].discont);
        for pair in frames.windows(2) {
            assert_eq!(pair[1].pts - pair[0].pts, 64_000_000);
        }
    }

    #[test]
    fn lost_packets_become_silence_and_the_time_runs_on() {
        let mut transcoder = G711ToAac::new(Law::A, 8000).unwrap();
        let all = packets(&vec![1000; 16_000], 0);
        let mut frames = Vec::new();
        for (i, (payload, pts)) in all.iter().enumerate() {
            if (20..30).contains(&i) {
                continue;
            }
            frames.extend(transcoder.push(payload, *pts, i == 30));
        }
        // As many frames as with nothing lost, evenly spaced.
        assert_eq!(frames.len(), 30);
        assert!(frames.windows(2).all(|p| p[1].pts - p[0].pts == 64_000_000));
        assert!(frames[1..].iter().all(|f| !f.discont));
    }

    #[test]
    fn a_jump_in_time_moves_the_frames_with_it() {
        let mut transcoder = G711ToAac::new(Law::A, 8000).unwrap();
        let mut frames = Vec::new();
        for (payload, pts) in packets(&vec![0; 8000], 0) {
            frames.extend(transcoder.push(&payload, pts, false));
        }
        let before = frames.len();
        for (payload, pts) in packets(&vec![0; 8000], 60_000_000_000) {
            frames.extend(transcoder.push(&payload, pts, false));
        }
        let jumped = &frames[before..];
        let moved = jumped
            .iter()
            .position(|f| f.pts > 60_000_000_000 - 64_000_000);
        let moved = moved.expect("frames at the new time");
        assert!(jumped[moved].discont || jumped[moved - 1].discont);
        assert!(
            jumped
                .iter()
                .all(|f| f.pts < 1_000_000_000 || f.pts > 59_000_000_000)
        );
    }

    /// Clicks through the whole way and a player's decoder come out at the time they went in:
    /// what keeps the sound on the picture.
    #[test]
    fn a_click_is_heard_at_its_own_time() {
        clicks_at(8000);
        // A 16 kHz camera's whole band is kept: a click of 2 samples stays a click.
        clicks_at(16_000);
    }

    fn clicks_at(rate: usize) {
        let scale = rate / 8000;
        let mut signal = vec![0i16; 3 * rate];
        let clicks = [rate, 3 * rate / 2, 2 * rate];
        for click in clicks {
            signal[click..click + 4 / scale].fill(20_000);
        }
        let start = 3_000_000_000;
        let mut transcoder = G711ToAac::new(Law::A, rate as u32).unwrap();
        let frames: Vec<AacFrame> = packets_at(rate, &signal, start)
            .into_iter()
            .flat_map(|(payload, pts)| transcoder.push(&payload, pts, false))
            .collect();
        let data: Vec<Vec<u8>> = frames.iter().map(|f| f.data.clone()).collect();
        let output = crate::camera::aac_lc::tests::decoded(&data);
        for click in clicks {
            let at_ns = start + click as u64 * 1_000_000_000 / rate as u64;
            let index = ((at_ns - frames[0].pts) / 62_500) as usize;
            let window = &output[index - 200..index + 200];
            let peak = (0..window.len())
                .max_by(|&a, &b| window[a].abs().total_cmp(&window[b].abs()))
                .unwrap();
            // 4 samples at 8 kHz are 8 at 16: the peak sits within the click.
            assert!(
                (200..210).contains(&peak),
                "{rate} Hz: the click at {click} came out {} samples off",
                peak as i64 - 200
            );
        }
    }

    #[test]
    fn only_8_and_16_khz_are_taken() {
        assert!(G711ToAac::new(Law::Mu, 16_000).is_some());
        assert!(G711ToAac::new(Law::Mu, 11_025).is_none());
        assert!(G711ToAac::takes(8_000) && !G711ToAac::takes(11_025));
    }
}
