//! G.711, the audio most IP cameras send: one byte per sample, decoded through a 256-entry table.
//! Decoding it here, from the RTP payload retina hands us, spares the camera's audio branch a
//! depayloader, a decoder, a tee and an appsink per packet (BENCHMARKS.md, "G.711 in Rust").

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Law {
    /// A-law (`PCMA`), Europe's and most cameras'.
    A,
    /// μ-law (`PCMU`).
    Mu,
}

impl Law {
    /// The caps GStreamer gives the untouched samples (what `rtppcmadepay` would have made).
    pub fn media_type(self) -> &'static str {
        match self {
            Law::A => "audio/x-alaw",
            Law::Mu => "audio/x-mulaw",
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        let table = match self {
            Law::A => &A_LAW,
            Law::Mu => &MU_LAW,
        };
        table[code as usize]
    }

    /// `payload` decoded onto `out`, as 16-bit little-endian samples (`S16LE`).
    pub fn extend_s16le(self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend(
            payload
                .iter()
                .flat_map(|&code| self.decode(code).to_le_bytes()),
        );
    }
}

/// Decoded samples that play back to back, from the packets that carried them.
#[derive(Debug, PartialEq)]
pub(super) struct Run {
    /// The first sample's time, in ns.
    pub pts: u64,
    pub duration: u64,
    /// Packets were lost before it: the encoder must not bridge the gap.
    pub after_loss: bool,
    /// `S16LE`.
    pub samples: Vec<u8>,
}

/// Packets decoded and gathered into runs that each complete an encoder frame. The encoder makes
/// nothing before it has a frame's samples, so a run that ends with the packet completing one
/// costs no latency, and each buffer through the branch costs its elements' per-buffer work: a
/// 64 ms frame is three or four 20 ms packets.
pub(super) struct Gather {
    law: Law,
    rate: u64,
    frame: usize,
    /// Samples the encoder holds toward its next frame, from the runs before.
    held: usize,
    run: Run,
}

/// How far a packet's time may sit from where the run ends and still continue it: the
/// session's timeline moves packet times by a millisecond or so as it follows the network.
const CONTINUES_WITHIN_NS: u64 = 5_000_000;

impl Gather {
    /// Runs for an encoder of `frame` samples at `rate` Hz.
    pub fn new(law: Law, rate: u32, frame: usize) -> Gather {
        Gather {
            law,
            rate: u64::from(rate.max(1)),
            frame,
            held: 0,
            run: Run {
                pts: 0,
                duration: 0,
                after_loss: false,
                samples: Vec::new(),
            },
        }
    }

    /// Takes one packet's payload at `pts` ns (`after_loss` when packets went missing before
    /// it); returns the runs it completes, oldest first. A packet that does not follow the run
    /// on ends the run short.
    pub fn push(&mut self, payload: &[u8], pts: u64, after_loss: bool) -> Vec<Run> {
        let mut done = Vec::new();
        if payload.is_empty() {
            return done;
        }
        let started = !self.run.samples.is_empty();
        let end = self.run.pts + self.duration_of(self.run.samples.len());
        if started && (after_loss || pts.abs_diff(end) > CONTINUES_WITHIN_NS) {
            done.push(self.take());
        }
        if self.run.samples.is_empty() {
            self.run.pts = pts;
            self.run.after_loss = after_loss;
            self.run.samples.reserve(self.frame * 2);
        }
        self.law.extend_s16le(payload, &mut self.run.samples);
        if self.held + self.run.samples.len() / 2 >= self.frame {
            done.push(self.take());
        }
        done
    }

    /// The length in ns of `bytes` of decoded samples.
    fn duration_of(&self, bytes: usize) -> u64 {
        (bytes / 2) as u64 * 1_000_000_000 / self.rate
    }

    fn take(&mut self) -> Run {
        self.held = (self.held + self.run.samples.len() / 2) % self.frame.max(1);
        let duration = self.duration_of(self.run.samples.len());
        let mut run = std::mem::replace(
            &mut self.run,
            Run {
                pts: 0,
                duration: 0,
                after_loss: false,
                samples: Vec::new(),
            },
        );
        run.duration = duration;
        run
    }
}

static A_LAW: [i16; 256] = table(Law::A);
static MU_LAW: [i16; 256] = table(Law::Mu);

const fn table(law: Law) -> [i16; 256] {
    let mut out = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        out[code] = match law {
            Law::A => a_law(code as u8),
            Law::Mu => mu_law(code as u8),
        };
        code += 1;
    }
    out
}

/// ITU-T G.711 A-law expansion (as in Sun's reference `alaw2linear`).
const fn a_law(code: u8) -> i16 {
    let code = code ^ 0x55;
    let mantissa = ((code & 0x0f) as i16) << 4;
    let segment = (code & 0x70) >> 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        _ => (mantissa + 0x108) << (segment - 1),
    };
    if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// ITU-T G.711 μ-law expansion (as in Sun's reference `ulaw2linear`).
const fn mu_law(code: u8) -> i16 {
    const BIAS: i16 = 0x84;
    let code = !code;
    let magnitude = ((((code & 0x0f) as i16) << 3) + BIAS) << ((code & 0x70) >> 4);
    if code & 0x80 != 0 {
        BIAS - magnitude
    } else {
        magnitude - BIAS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer as gst;
    use gstreamer::prelude::*;

    /// Every one of the 256 codes, decoded by GStreamer's own decoder.
    fn decoded_by_gstreamer(law: Law) -> Vec<u8> {
        gst::init().unwrap();
        let decoder = match law {
            Law::A => "alawdec",
            Law::Mu => "mulawdec",
        };
        let (pipeline, src, sink) = crate::media::pipeline::app_pipeline(
            &format!(
                "appsrc name=src format=time caps={},rate=8000,channels=1 ! {decoder} \
                 ! audio/x-raw,format=S16LE ! appsink name=sink sync=false",
                law.media_type()
            ),
            "G.711 decoder",
        )
        .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let codes: Vec<u8> = (0..=255).collect();
        src.push_buffer(gst::Buffer::from_slice(codes)).unwrap();
        src.end_of_stream().unwrap();
        let mut samples = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            samples.extend_from_slice(&sample.buffer().unwrap().map_readable().unwrap());
        }
        pipeline.set_state(gst::State::Null).unwrap();
        samples
    }

    #[test]
    fn every_code_decodes_as_gstreamer_decodes_it() {
        let codes: Vec<u8> = (0..=255).collect();
        for law in [Law::A, Law::Mu] {
            let mut ours = Vec::new();
            law.extend_s16le(&codes, &mut ours);
            assert_eq!(ours, decoded_by_gstreamer(law), "{law:?}");
        }
    }

    const MS: u64 = 1_000_000;

    /// 20 ms packets at 8 kHz from `first` ms on.
    fn packets(gather: &mut Gather, first: u64, count: u64) -> Vec<Run> {
        (0..count)
            .flat_map(|i| gather.push(&[0xd5; 160], (first + i * 20) * MS, false))
            .collect()
    }

    #[test]
    fn each_run_ends_with_the_packet_that_completes_an_encoder_frame() {
        // A frame of 512 samples at 8 kHz (64 ms), in packets of 160.
        let mut gather = Gather::new(Law::A, 8000, 512);
        let runs = packets(&mut gather, 1000, 13);
        let lengths: Vec<usize> = runs.iter().map(|r| r.samples.len() / 2).collect();
        // 640 samples complete the first frame and leave 128 toward the next; then 480 complete
        // each frame (608, 576, 544), and the 13 packets are all sent.
        assert_eq!(lengths, [640, 480, 480, 480]);
        assert_eq!((runs[0].pts, runs[0].duration), (1000 * MS, 80 * MS));
        assert_eq!(
            runs[1..].iter().map(|r| r.pts).collect::<Vec<_>>(),
            [1080, 1140, 1200].map(|t| t * MS)
        );
        assert!(runs[0].samples.chunks(2).all(|s| s == 8i16.to_le_bytes()));
        // 32 held: the third packet from here completes the next frame.
        assert!(packets(&mut gather, 1260, 2).is_empty());
        let runs = packets(&mut gather, 1300, 1);
        assert_eq!((runs[0].pts, runs[0].samples.len() / 2), (1260 * MS, 480));
        // A payload of nothing is nothing.
        assert!(gather.push(&[], 1320 * MS, true).is_empty());
    }

    #[test]
    fn a_loss_or_a_jump_ends_the_run_short() {
        let mut gather = Gather::new(Law::Mu, 8000, 1024);
        assert!(packets(&mut gather, 0, 3).is_empty());
        // A millisecond off is the timeline following the network: the run goes on.
        assert!(gather.push(&[0xff; 160], 61 * MS, false).is_empty());
        let runs = gather.push(&[0xff; 160], 500 * MS, false);
        assert_eq!(
            runs.iter().map(|r| (r.pts, r.duration)).collect::<Vec<_>>(),
            [(0, 80 * MS)]
        );
        let runs = gather.push(&[0xff; 160], 520 * MS, true);
        assert_eq!(
            runs.iter()
                .map(|r| (r.pts, r.duration, r.after_loss))
                .collect::<Vec<_>>(),
            [(500 * MS, 20 * MS, false)]
        );
        let runs = packets(&mut gather, 540, 6);
        assert_eq!((runs[0].pts, runs[0].after_loss), (520 * MS, true));
    }

    #[test]
    fn the_laws_reach_their_full_range() {
        let decoded = |law: Law, codes: [u8; 3]| codes.map(|code| law.decode(code));
        assert_eq!(decoded(Law::A, [0x2a, 0xaa, 0xd5]), [-32256, 32256, 8]);
        assert_eq!(decoded(Law::Mu, [0x00, 0x80, 0xff]), [-32124, 32124, 0]);
    }
}
