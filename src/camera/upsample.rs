//! 8 kHz to 16 kHz for the AAC encoder: each sample is kept, and one is made between each two
//! by a half-band filter (a Blackman-windowed sinc, 32 taps), which keeps what lies under
//! 3.5 kHz, where G.711's speech is, and leaves no image above 4 kHz to code.

/// Input samples on each side of the point made between two: the filter's delay, in input
/// samples.
const SIDE: usize = 16;

pub(super) struct Upsampler {
    /// `taps[k]` weighs the two input samples `k + 1/2` away from the point made.
    taps: [f32; SIDE],
    /// The last `2 * SIDE - 1` input samples.
    tail: Vec<f32>,
    scratch: Vec<f32>,
}

impl Upsampler {
    /// How far behind its input the output runs, in input samples.
    pub const DELAY: usize = SIDE;

    pub fn new() -> Upsampler {
        let mut taps = [0.0f32; SIDE];
        for (k, tap) in taps.iter_mut().enumerate() {
            let t = k as f64 + 0.5;
            let sinc = (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t);
            let x = std::f64::consts::PI * t / SIDE as f64;
            let blackman = 0.42 + 0.5 * x.cos() + 0.08 * (2.0 * x).cos();
            *tap = (sinc * blackman) as f32;
        }
        // Unity gain for a constant.
        let sum: f32 = taps.iter().sum::<f32>() * 2.0;
        taps.iter_mut().for_each(|tap| *tap /= sum);
        Upsampler {
            taps,
            tail: vec![0.0; 2 * SIDE - 1],
            scratch: Vec::new(),
        }
    }

    /// Appends two output samples for each of `input` to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.tail);
        self.scratch.extend_from_slice(input);
        let s = &self.scratch;
        out.reserve(2 * input.len());
        for n in 0..input.len() {
            let centre = n + SIDE - 1;
            let between: f32 = self
                .taps
                .iter()
                .enumerate()
                .map(|(k, tap)| tap * (s[centre - k] + s[centre + 1 + k]))
                .sum();
            out.push(s[centre]);
            out.push(between);
        }
        let keep = self.scratch.len() - self.tail.len();
        self.tail.copy_from_slice(&self.scratch[keep..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frequency: f32, rate: f32, samples: usize, delay: usize) -> Vec<f32> {
        (0..samples)
            .map(|i| {
                let t = (i as f32 - delay as f32) / rate;
                if i < delay {
                    0.0
                } else {
                    0.5 * (std::f32::consts::TAU * frequency * t).sin()
                }
            })
            .collect()
    }

    /// Error against the ideal 16 kHz tone, in dB under the tone, past the start.
    fn error_db(frequency: f32, chunk: usize) -> f64 {
        let input = tone(frequency, 8000.0, 8000, 0);
        let mut upsampler = Upsampler::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            upsampler.push(piece, &mut out);
        }
        let ideal = tone(frequency, 16_000.0, 16_000, 2 * Upsampler::DELAY);
        let range = 1000..15_000;
        let signal: f64 = ideal[range.clone()]
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum();
        let noise: f64 = range.map(|i| f64::from(out[i] - ideal[i]).powi(2)).sum();
        10.0 * (noise / signal).log10()
    }

    #[test]
    fn speech_frequencies_come_out_as_they_would_have_been_sampled_at_16_khz() {
        for frequency in [100.0, 440.0, 1000.0, 2500.0] {
            let error = error_db(frequency, 160);
            assert!(error < -40.0, "{frequency} Hz: {error:.1} dB");
        }
        // The top of G.711's telephone band loses a little more.
        assert!(error_db(3400.0, 160) < -20.0);
    }

    #[test]
    fn the_output_does_not_depend_on_how_the_input_is_cut() {
        let input = tone(1000.0, 8000.0, 2000, 0);
        let whole = {
            let mut out = Vec::new();
            Upsampler::new().push(&input, &mut out);
            out
        };
        let mut pieces = Vec::new();
        let mut upsampler = Upsampler::new();
        for piece in input.chunks(7) {
            upsampler.push(piece, &mut pieces);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn a_constant_keeps_its_level() {
        let mut out = Vec::new();
        Upsampler::new().push(&[0.25; 200], &mut out);
        assert!(out[100..].iter().all(|s| (s - 0.25).abs() < 1e-4));
    }
}
