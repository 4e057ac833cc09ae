//! G.711, the audio most IP cameras send: one byte per sample, decoded through a 256-entry table.
//! Decoding it here, from the RTP payload retina hands us, spares the camera's audio branch a
//! depayloader, a decoder, a tee and an appsink per packet (BENCHMARKS.md, "G.711 in Rust").

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
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
            let ours: Vec<u8> = codes
                .iter()
                .flat_map(|&code| law.decode(code).to_le_bytes())
                .collect();
            assert_eq!(ours, decoded_by_gstreamer(law), "{law:?}");
        }
    }

    #[test]
    fn the_laws_reach_their_full_range() {
        let decoded = |law: Law, codes: [u8; 3]| codes.map(|code| law.decode(code));
        assert_eq!(decoded(Law::A, [0x2a, 0xaa, 0xd5]), [-32256, 32256, 8]);
        assert_eq!(decoded(Law::Mu, [0x00, 0x80, 0xff]), [-32124, 32124, 0]);
    }
}
