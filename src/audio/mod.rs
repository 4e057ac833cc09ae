//! Cry detection on camera audio: 16 kHz mono windows, YAMNet through ONNX Runtime, and a pure
//! voting detector.
//!
//! - [`decode`] turns any audio (the hub's AAC, a file, an RTSP URL) into 16 kHz mono f32.
//! - [`Windows`] cuts it into YAMNet patches.
//! - [`yamnet`] scores a patch; [`detector`] decides.
//! - [`task`] runs it per camera; [`classify`] prints it for one file or URL.

pub mod classify;
pub mod decode;
pub mod detector;
mod onnx;
pub mod task;
pub mod yamnet;

use std::time::Duration;

pub const SAMPLE_RATE: u32 = 16_000;
/// YAMNet's fixed input: 0.975 s at 16 kHz.
pub const PATCH_SAMPLES: usize = 15_600;
/// YAMNet's own hop, 0.48 s: each moment of audio is heard in two patches, so a short cry is
/// never split across two patches that each hold only half of it.
pub const HOP_SAMPLES: usize = 7_680;

/// Cuts a stream of samples into overlapping patches.
#[derive(Debug, Default)]
pub struct Windows {
    buffer: Vec<f32>,
    /// Samples consumed before `buffer[0]`.
    consumed: u64,
}

impl Windows {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, samples: &[f32]) {
        self.buffer.extend_from_slice(samples);
    }

    /// The next full patch and where it ends on the audio clock, if one is ready.
    pub fn next_patch(&mut self) -> Option<(Vec<f32>, Duration)> {
        if self.buffer.len() < PATCH_SAMPLES {
            return None;
        }
        let patch = self.buffer[..PATCH_SAMPLES].to_vec();
        let end = samples_to_duration(self.consumed + PATCH_SAMPLES as u64);
        self.buffer.drain(..HOP_SAMPLES);
        self.consumed += HOP_SAMPLES as u64;
        Some((patch, end))
    }

    /// Drops buffered audio after a gap in the stream; the clock runs on, so patch times stay
    /// in step with the audio decoded so far.
    pub fn clear(&mut self) {
        self.consumed += self.buffer.len() as u64;
        self.buffer.clear();
    }

    /// The unfinished tail, zero-padded to a patch (YAMNet's framing for the end of a file).
    pub fn finish(&mut self) -> Option<(Vec<f32>, Duration)> {
        let tail = self.buffer.len();
        // Only a tail the last full patch did not already cover.
        if self.consumed > 0 && tail <= PATCH_SAMPLES - HOP_SAMPLES {
            return None;
        }
        if tail == 0 {
            return None;
        }
        let mut patch = std::mem::take(&mut self.buffer);
        patch.resize(PATCH_SAMPLES, 0.0);
        let end = samples_to_duration(self.consumed + tail as u64);
        self.consumed += tail as u64;
        Some((patch, end))
    }
}

fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
}

/// RMS level in dBFS (full scale = 1.0); digital silence is −200.
pub fn rms_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -200.0;
    }
    let mean_square = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
    (10.0 * mean_square.log10()).max(-200.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_overlap_by_the_hop_and_end_on_the_audio_clock() {
        let mut w = Windows::new();
        let samples: Vec<f32> = (0..40_000).map(|i| i as f32).collect();
        w.push(&samples);
        let mut patches = Vec::new();
        while let Some(p) = w.next_patch() {
            patches.push(p);
        }
        // 1 + floor((40000 − 15600) / 7680) = 4 full patches.
        assert_eq!(patches.len(), 4);
        assert_eq!(patches[1].0[0], HOP_SAMPLES as f32);
        assert_eq!(patches[0].1, Duration::from_millis(975));
        assert_eq!(patches[1].1, Duration::from_millis(975 + 480));
        let (tail, end) = w.finish().expect("a tail past the last patch");
        assert_eq!(tail.len(), PATCH_SAMPLES);
        assert_eq!(tail[40_000 - 4 * HOP_SAMPLES], 0.0, "zero-padded");
        assert_eq!(end, Duration::from_millis(2500));
        assert!(w.finish().is_none());
    }

    #[test]
    fn a_short_file_still_gets_one_padded_patch() {
        let mut w = Windows::new();
        w.push(&[0.5; 8000]);
        assert!(w.next_patch().is_none());
        let (patch, end) = w.finish().unwrap();
        assert_eq!(patch.len(), PATCH_SAMPLES);
        assert_eq!(end, Duration::from_millis(500));
    }

    #[test]
    fn rms_of_full_scale_square_is_zero_dbfs_and_silence_is_floor() {
        assert!((rms_dbfs(&[1.0, -1.0, 1.0, -1.0])).abs() < 1e-6);
        assert!((rms_dbfs(&[0.1; 100]) + 20.0).abs() < 1e-4);
        assert_eq!(rms_dbfs(&[0.0; 100]), -200.0);
    }
}
