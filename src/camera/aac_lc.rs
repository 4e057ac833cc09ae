//! An AAC-LC encoder for the narrow band a G.711 camera sends: mono, 16 kHz, long blocks only,
//! one scale factor for every band. It codes only the bands under `bandwidth` (4 kHz for G.711,
//! which holds nothing above) and spends the frame's budget on the finest step that fits. That
//! is a third of voaacenc's work per frame, with a shorter delay (1024 samples against 1600)
//! and a higher signal-to-noise ratio on camera audio (BENCHMARKS.md, "Our own AAC encoder").
//! `rusty_aac` gives the MDCT and the ISO codebooks; the rate loop and the bitstream are here.

use rusty_aac::encode::{BitWriter, analyze_long, spectral_bits, spectral_emit};

/// Samples in, and out of, one AAC frame.
pub(super) const FRAME: usize = 1024;

/// The long window's scale factor bands at 16 kHz (ISO/IEC 14496-3, `swb_offset_long_window`
/// for 16 kHz): where each band starts, and the end.
const BAND_STARTS: [u16; 44] = [
    0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 100, 112, 124, 136, 148, 160, 172, 184, 196, 212,
    228, 244, 260, 280, 300, 320, 344, 368, 396, 424, 456, 492, 532, 572, 616, 664, 716, 772, 832,
    896, 960, 1024,
];
/// The rate those bands are for.
pub(super) const RATE: u32 = 16_000;
/// A scale factor of 100 is a quantizer step of 1.
const SCALE_FACTOR_OFFSET: i32 = 100;
/// The quantizer's rounding (ISO/IEC 14496-3, 4.6.1.3's informative encoder).
const ROUNDING: f32 = 0.4054;
/// The largest quantized value the escape codebook carries.
const MAX_QUANTIZED: f32 = 8191.0;
/// The finest step used: a step of 1 on 16-bit samples is below anything a camera sends.
const GAIN_MIN: i32 = SCALE_FACTOR_OFFSET;
/// The largest gain the 8-bit `global_gain` holds: every coefficient quantizes to 0.
const GAIN_MAX: i32 = 255;
/// A single channel element's fixed fields (id, tag, global gain, ics_info, the pulse, TNS
/// and gain control flags) and the end element.
const HEADER_BITS: usize = 3 + 4 + 8 + (1 + 2 + 1 + 6 + 1) + 3 + 3;
/// A section's codebook (4 bits) and length (5 bits, lengths up to 30).
const SECTION_BITS: usize = 9;
/// The most bits a channel may take in one frame (the decoder's input buffer).
const MAX_FRAME_BITS: usize = 6144;
const ZERO_BOOK: u8 = 0;
const ESCAPE_BOOK: u8 = 11;

pub(super) struct AacLcEncoder {
    window: Vec<f32>,
    /// The last frame's samples: each MDCT covers two frames.
    previous: [f32; FRAME],
    /// Bands coded (`max_sfb`); the ones above are empty.
    bands: usize,
    budget: usize,
    /// The last frame's gain, where the next search starts: levels move little frame to frame.
    gain: i32,
    /// `|x|^(3/4)` of each coded coefficient, and its sign.
    magnitudes: Vec<f32>,
    negative: Vec<bool>,
    quantized: Vec<i32>,
    books: Vec<u8>,
}

impl AacLcEncoder {
    /// An encoder of `bitrate` bits a second that codes what lies under `bandwidth` Hz.
    pub fn new(bitrate: u32, bandwidth: u32) -> AacLcEncoder {
        let top_bin = (bandwidth as usize * 2 * FRAME / RATE as usize).min(FRAME);
        let bands = BAND_STARTS[1..]
            .iter()
            .position(|&end| usize::from(end) >= top_bin)
            .map_or(BAND_STARTS.len() - 1, |band| band + 1);
        let coded = usize::from(BAND_STARTS[bands]);
        // The sine window, which TDAC needs the decoder to share (window_shape 0).
        let window = (0..2 * FRAME)
            .map(|n| ((n as f32 + 0.5) * std::f32::consts::PI / (2 * FRAME) as f32).sin())
            .collect();
        AacLcEncoder {
            window,
            previous: [0.0; FRAME],
            bands,
            budget: (bitrate as usize * FRAME / RATE as usize).min(MAX_FRAME_BITS),
            gain: (GAIN_MIN + GAIN_MAX) / 2,
            magnitudes: vec![0.0; coded],
            negative: vec![false; coded],
            quantized: vec![0; coded],
            books: vec![ZERO_BOOK; bands],
        }
    }

    /// Takes the next frame of samples (±1.0 full scale) and returns the raw AAC frame (a
    /// `raw_data_block`) whose decoding is the frame before it: the MDCT's delay.
    pub fn encode(&mut self, samples: &[f32; FRAME]) -> Vec<u8> {
        let spectrum = analyze_long(&self.previous, samples, &self.window);
        self.previous = *samples;
        for ((magnitude, negative), x) in self
            .magnitudes
            .iter_mut()
            .zip(self.negative.iter_mut())
            .zip(&spectrum)
        {
            let a = x.abs();
            *magnitude = (a * a.sqrt()).sqrt();
            *negative = *x < 0.0;
        }
        self.gain = self.finest_gain_within_budget();
        self.count_bits(self.gain);
        self.write()
    }

    /// The smallest gain (the finest step) whose frame fits the budget. Bits fall as the gain
    /// rises; the search gallops from the last frame's gain, then halves.
    fn finest_gain_within_budget(&mut self) -> i32 {
        let start = self.gain.clamp(GAIN_MIN, GAIN_MAX);
        // `low` fails (or is the floor), `high` fits.
        let (mut low, mut high) = if self.fits(start) {
            let mut high = start;
            let mut step = 1;
            loop {
                let probe = (high - step).max(GAIN_MIN);
                if probe == high {
                    return high;
                }
                if !self.fits(probe) {
                    break (probe, high);
                }
                high = probe;
                step *= 2;
            }
        } else {
            let mut low = start;
            let mut step = 1;
            loop {
                let probe = (low + step).min(GAIN_MAX);
                if probe == GAIN_MAX || self.fits(probe) {
                    break (low, probe);
                }
                low = probe;
                step *= 2;
            }
        };
        while high - low > 1 {
            let middle = (low + high) / 2;
            if self.fits(middle) {
                high = middle;
            } else {
                low = middle;
            }
        }
        high
    }

    fn fits(&mut self, gain: i32) -> bool {
        self.count_bits(gain) <= self.budget
    }

    /// Quantizes at `gain`, picks each band's cheapest codebook, and counts the frame's bits.
    fn count_bits(&mut self, gain: i32) -> usize {
        let scale = (-0.1875 * (gain - SCALE_FACTOR_OFFSET) as f32).exp2();
        for ((q, magnitude), negative) in self
            .quantized
            .iter_mut()
            .zip(&self.magnitudes)
            .zip(&self.negative)
        {
            let value = (magnitude * scale + ROUNDING).min(MAX_QUANTIZED) as i32;
            *q = if *negative { -value } else { value };
        }
        let mut bits = HEADER_BITS;
        let mut section_book = None;
        for band in 0..self.bands {
            let values = &self.quantized[band_range(band)];
            let peak = values.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
            let (book, cost) = books_for(peak)
                .iter()
                .map(|&book| (book, spectral_cost(book, values)))
                .min_by_key(|&(_, cost)| cost)
                .unwrap_or((ZERO_BOOK, 0));
            self.books[band] = book;
            if book != ZERO_BOOK {
                // The band's scale factor: the same as the last, one bit.
                bits += cost + 1;
            }
            if section_book != Some(book) {
                bits += SECTION_BITS;
                section_book = Some(book);
            }
        }
        bits
    }

    /// The frame as the last `count_bits` left it: one single channel element, then the end.
    fn write(&self) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.write(0, 3); // ID_SCE
        w.write(0, 4); // element_instance_tag
        w.write(self.gain as u32, 8); // global_gain
        w.write(0, 1); // ics_reserved_bit
        w.write(0, 2); // ONLY_LONG_SEQUENCE
        w.write(0, 1); // window_shape: sine
        w.write(self.bands as u32, 6); // max_sfb
        w.write(0, 1); // predictor_data_present
        let mut band = 0;
        while band < self.bands {
            let book = self.books[band];
            let end = (band..self.bands)
                .find(|&b| self.books[b] != book)
                .unwrap_or(self.bands);
            w.write(u32::from(book), 4);
            let mut length = end - band;
            while length >= 31 {
                w.write(31, 5);
                length -= 31;
            }
            w.write(length as u32, 5);
            band = end;
        }
        // Every coded band's scale factor is the global gain: a difference of 0, coded "0".
        for &book in &self.books {
            if book != ZERO_BOOK {
                w.write(0, 1);
            }
        }
        w.write(0, 3); // pulse_data_present, tns_data_present, gain_control_data_present
        for (band, &book) in self.books.iter().enumerate() {
            if book == ZERO_BOOK {
                continue;
            }
            for tuple in self.quantized[band_range(band)].chunks(tuple_size(book)) {
                spectral_emit(usize::from(book), tuple, &mut w);
            }
        }
        w.write(7, 3); // ID_END
        w.into_bytes()
    }
}

fn band_range(band: usize) -> std::ops::Range<usize> {
    usize::from(BAND_STARTS[band])..usize::from(BAND_STARTS[band + 1])
}

/// Codebooks 1-4 take four values at a time, the rest two.
fn tuple_size(book: u8) -> usize {
    if book <= 4 { 4 } else { 2 }
}

/// The codebooks that can carry a band whose largest value is `peak`: the pair made for it
/// (signed and unsigned), or the escape book.
fn books_for(peak: u32) -> &'static [u8] {
    match peak {
        0 => &[],
        1 => &[1, 2],
        2 => &[3, 4],
        3..=4 => &[5, 6],
        5..=7 => &[7, 8],
        8..=12 => &[9, 10],
        _ => &[ESCAPE_BOOK],
    }
}

fn spectral_cost(book: u8, values: &[i32]) -> usize {
    values
        .chunks(tuple_size(book))
        .map(|tuple| {
            spectral_bits(usize::from(book), tuple).expect("books_for picks a book that holds it")
        })
        .sum()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::media::pipeline::{PipelineGuard, app_pipeline};
    use gstreamer as gst;
    use gstreamer::prelude::*;

    /// 32 kbit/s, 4 kHz: what G.711 cameras get.
    fn g711_encoder() -> AacLcEncoder {
        AacLcEncoder::new(32_000, 4_000)
    }

    fn encode_all(encoder: &mut AacLcEncoder, samples: &[f32]) -> Vec<Vec<u8>> {
        samples
            .chunks_exact(FRAME)
            .map(|frame| encoder.encode(frame.try_into().unwrap()))
            .collect()
    }

    /// The frames decoded by libav's AAC decoder (through GStreamer, as every consumer of the
    /// track decodes them), as 16 kHz samples.
    pub(in crate::camera) fn decoded(frames: &[Vec<u8>]) -> Vec<f32> {
        gst::init().unwrap();
        let (pipeline, src, sink) = app_pipeline(
            "appsrc name=src format=time caps=audio/mpeg,mpegversion=4,stream-format=raw,\
             rate=16000,channels=1,codec_data=(buffer)1408 \
             ! avdec_aac ! audioconvert ! audio/x-raw,format=F32LE,channels=1 \
             ! appsink name=sink sync=false",
            "test AAC decoder",
        )
        .unwrap();
        let pipeline = PipelineGuard::new(pipeline);
        pipeline.pipeline().set_state(gst::State::Playing).unwrap();
        for (i, frame) in frames.iter().enumerate() {
            let mut buffer = gst::Buffer::from_slice(frame.clone());
            let pts = gst::ClockTime::from_nseconds(i as u64 * 64_000_000);
            buffer.get_mut().unwrap().set_pts(pts);
            src.push_buffer(buffer).unwrap();
        }
        src.end_of_stream().unwrap();
        let mut out = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let map = sample.buffer().unwrap().map_readable().unwrap();
            out.extend(
                map.chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
            );
        }
        out
    }

    /// What a nursery camera hears, band-limited as G.711 is: a voice-like pair of tones over
    /// a noise machine's hiss.
    fn nursery(seconds: usize) -> Vec<f32> {
        let mut seed = 7u32;
        let mut hiss = 0.0f32;
        (0..seconds * RATE as usize)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let white = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                hiss = 0.7 * hiss + 0.3 * white;
                let tau = std::f32::consts::TAU;
                0.3 * (tau * 440.0 * t).sin() + 0.1 * (tau * 1234.0 * t).sin() + 0.2 * hiss
            })
            .collect()
    }

    fn snr_db(reference: &[f32], decoded: &[f32]) -> f64 {
        let signal: f64 = reference.iter().map(|x| f64::from(*x).powi(2)).sum();
        let noise: f64 = reference
            .iter()
            .zip(decoded)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        10.0 * (signal / noise).log10()
    }

    #[test]
    fn a_decoder_plays_back_what_went_in_one_frame_later() {
        let input = nursery(8);
        let frames = encode_all(&mut g711_encoder(), &input);
        let output = decoded(&frames);
        assert_eq!(output.len(), input.len(), "a frame out for every frame in");
        // Frame n decodes to frame n-1's samples.
        let skip = 2 * FRAME;
        let snr = snr_db(&input[skip - FRAME..input.len() - FRAME], &output[skip..]);
        assert!(snr > 25.0, "{snr:.1} dB");
        // A sample early or late, or no delay, would take the match apart.
        for start in [skip - FRAME + 1, skip - FRAME - 1, skip] {
            let shifted = snr_db(&input[start..start + output.len() - skip], &output[skip..]);
            assert!(shifted < snr - 3.0, "{shifted:.1} dB from sample {start}");
        }
    }

    #[test]
    fn full_scale_noise_stays_within_the_bitrate() {
        let mut seed = 3u32;
        let noise: Vec<f32> = (0..64 * FRAME)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect();
        let mut encoder = g711_encoder();
        let frames = encode_all(&mut encoder, &noise);
        let budget_bytes = encoder.budget.div_ceil(8);
        assert!(frames.iter().all(|f| f.len() <= budget_bytes));
        // The budget is used, not left over: the step is as fine as it allows.
        assert!(frames[2..].iter().all(|f| f.len() > budget_bytes * 9 / 10));
        // And it decodes.
        assert_eq!(decoded(&frames).len(), noise.len());
    }

    #[test]
    fn silence_is_a_few_bytes_and_decodes_to_silence() {
        let frames = encode_all(&mut g711_encoder(), &vec![0.0; 8 * FRAME]);
        assert!(frames.iter().all(|f| f.len() <= 8), "{:?}", frames[0]);
        let output = decoded(&frames);
        assert_eq!(output.len(), 8 * FRAME);
        assert!(output.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn the_coded_bands_end_at_the_first_band_past_the_bandwidth() {
        // 4 kHz is bin 512, inside the band 492..532.
        assert_eq!(g711_encoder().bands, 34);
        assert_eq!(AacLcEncoder::new(32_000, 8_000).bands, 43);
    }
}
