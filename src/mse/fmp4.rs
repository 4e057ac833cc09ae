//! Fragmented MP4 (ISO BMFF) as Media Source Extensions take it: an init segment (`ftyp` +
//! `moov` with empty sample tables and `mvex`), then one fragment (`moof` + `mdat`) per video
//! frame with the audio that came since. Pure: bytes in, bytes out.

/// What a track carries, from the hub's caps.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    /// `avcC` record.
    H264 { avcc: Vec<u8> },
    /// `hvcC` record.
    H265 { hvcc: Vec<u8> },
    /// AAC's AudioSpecificConfig.
    Aac { config: Vec<u8>, channels: u16 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    pub codec: Codec,
    /// Ticks per second: 90 kHz for video, the sample rate for audio.
    pub timescale: u32,
    /// The picture size (video only).
    pub width: u16,
    pub height: u16,
}

impl TrackInfo {
    /// The RFC 6381 codec string a browser's `isTypeSupported` takes.
    pub fn codec_string(&self) -> Option<String> {
        match &self.codec {
            Codec::H264 { avcc } => {
                let [_, profile, compat, level, ..] = avcc[..] else {
                    return None;
                };
                Some(format!("avc1.{profile:02X}{compat:02X}{level:02X}"))
            }
            Codec::H265 { hvcc } => hevc_codec_string(hvcc),
            Codec::Aac { config, .. } => {
                let object_type = config.first()? >> 3;
                Some(format!("mp4a.40.{object_type}"))
            }
        }
    }
}

/// `hvc1.<profile>.<compatibility>.<tier><level>.<constraints>` (ISO/IEC 14496-15 annex E).
fn hevc_codec_string(hvcc: &[u8]) -> Option<String> {
    let record = hvcc.get(1..13)?;
    let space = ["", "A", "B", "C"][(record[0] >> 6) as usize];
    let tier = if record[0] & 0x20 != 0 { 'H' } else { 'L' };
    let profile = record[0] & 0x1f;
    let compatibility = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
    let constraints = &record[5..11];
    let kept = constraints
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |i| i + 1);
    let mut codec = format!(
        "hvc1.{space}{profile}.{:X}.{tier}{}",
        compatibility.reverse_bits(),
        record[11]
    );
    for byte in &constraints[..kept] {
        codec.push_str(&format!(".{byte:X}"));
    }
    Some(codec)
}

/// One sample of a fragment.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub data: &'a [u8],
    /// In the track's timescale.
    pub duration: u32,
    /// Video: a keyframe. Audio frames are all sync samples.
    pub sync: bool,
}

/// A track's part of one fragment: its samples in decode order, from `decode_time` on.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    /// 1-based, in the order of the init segment's tracks.
    pub track_id: u32,
    pub decode_time: u64,
    pub samples: Vec<Sample<'a>>,
}

/// Builds box after box into one buffer.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    open: Vec<usize>,
}

impl Writer {
    fn begin(&mut self, kind: &[u8; 4]) {
        self.open.push(self.out.len());
        self.out.extend_from_slice(&[0, 0, 0, 0]);
        self.out.extend_from_slice(kind);
    }

    fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) {
        self.begin(kind);
        self.u32((u32::from(version) << 24) | flags);
    }

    fn end(&mut self) {
        let start = self.open.pop().expect("every box that ends was begun");
        let size = (self.out.len() - start) as u32;
        self.out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }

    fn u8(&mut self, value: u8) {
        self.out.push(value);
    }
    fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_be_bytes());
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
    fn zeros(&mut self, count: usize) {
        self.out.resize(self.out.len() + count, 0);
    }

    /// The unity matrix of `mvhd` and `tkhd`.
    fn matrix(&mut self) {
        for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
            self.u32(value);
        }
    }
}

/// `ftyp` and `moov` for `tracks` (track ids 1, 2, … in this order).
pub fn init_segment(tracks: &[TrackInfo]) -> Vec<u8> {
    let mut w = Writer::default();
    w.begin(b"ftyp");
    w.bytes(b"iso5");
    w.u32(512);
    for brand in [b"iso5", b"iso6", b"mp41"] {
        w.bytes(brand);
    }
    w.end();
    w.begin(b"moov");
    w.begin_full(b"mvhd", 0, 0);
    w.zeros(8); // creation and modification times
    w.u32(1000);
    w.u32(0); // duration: unknown, live
    w.u32(0x0001_0000); // rate 1.0
    w.u16(0x0100); // volume 1.0
    w.zeros(10);
    w.matrix();
    w.zeros(24);
    w.u32(tracks.len() as u32 + 1);
    w.end();
    for (index, track) in tracks.iter().enumerate() {
        trak(&mut w, index as u32 + 1, track);
    }
    w.begin(b"mvex");
    for index in 0..tracks.len() {
        w.begin_full(b"trex", 0, 0);
        w.u32(index as u32 + 1);
        w.u32(1); // sample description index
        w.zeros(12); // default duration, size and flags: every fragment says its own
        w.end();
    }
    w.end();
    w.end();
    w.out
}

fn trak(w: &mut Writer, id: u32, track: &TrackInfo) {
    let audio = matches!(track.codec, Codec::Aac { .. });
    w.begin(b"trak");
    w.begin_full(b"tkhd", 0, 0x3); // enabled, in the movie
    w.zeros(8);
    w.u32(id);
    w.zeros(4);
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate group
    w.u16(if audio { 0x0100 } else { 0 });
    w.zeros(2);
    w.matrix();
    w.u32(u32::from(track.width) << 16);
    w.u32(u32::from(track.height) << 16);
    w.end();
    w.begin(b"mdia");
    w.begin_full(b"mdhd", 0, 0);
    w.zeros(8);
    w.u32(track.timescale);
    w.u32(0);
    w.u16(0x55c4); // "und"
    w.u16(0);
    w.end();
    w.begin_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if audio { b"soun" } else { b"vide" });
    w.zeros(12);
    w.bytes(if audio {
        b"SoundHandler\0"
    } else {
        b"VideoHandler\0"
    });
    w.end();
    w.begin(b"minf");
    if audio {
        w.begin_full(b"smhd", 0, 0);
        w.zeros(4);
    } else {
        w.begin_full(b"vmhd", 0, 1);
        w.zeros(8);
    }
    w.end();
    w.begin(b"dinf");
    w.begin_full(b"dref", 0, 0);
    w.u32(1);
    w.begin_full(b"url ", 0, 1); // the media is in this file
    w.end();
    w.end();
    w.end();
    w.begin(b"stbl");
    w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    sample_entry(w, track);
    w.end();
    for kind in [b"stts", b"stsc", b"stco"] {
        w.begin_full(kind, 0, 0);
        w.u32(0);
        w.end();
    }
    w.begin_full(b"stsz", 0, 0);
    w.zeros(8);
    w.end();
    w.end(); // stbl
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
}

fn sample_entry(w: &mut Writer, track: &TrackInfo) {
    match &track.codec {
        Codec::H264 { avcc: record } | Codec::H265 { hvcc: record } => {
            let (entry, config) = match track.codec {
                Codec::H264 { .. } => (b"avc1", b"avcC"),
                _ => (b"hvc1", b"hvcC"),
            };
            w.begin(entry);
            w.zeros(6);
            w.u16(1); // data reference index
            w.zeros(16);
            w.u16(track.width);
            w.u16(track.height);
            w.u32(0x0048_0000); // 72 dpi
            w.u32(0x0048_0000);
            w.zeros(4);
            w.u16(1); // frames per sample
            w.zeros(32); // compressor name
            w.u16(0x0018); // depth
            w.u16(0xffff);
            w.begin(config);
            w.bytes(record);
            w.end();
            w.end();
        }
        Codec::Aac { config, channels } => {
            w.begin(b"mp4a");
            w.zeros(6);
            w.u16(1);
            w.zeros(8);
            w.u16(*channels);
            w.u16(16);
            w.zeros(4);
            w.u32(track.timescale << 16);
            esds(w, config);
            w.end();
        }
    }
}

/// The MPEG-4 elementary stream descriptor around AAC's AudioSpecificConfig.
fn esds(w: &mut Writer, config: &[u8]) {
    fn descriptor(w: &mut Writer, tag: u8, body: &[u8]) {
        w.u8(tag);
        // Four length bytes, seven bits each: any size, and what most muxers write.
        let len = body.len() as u32;
        for shift in [21, 14, 7] {
            w.u8(0x80 | ((len >> shift) & 0x7f) as u8);
        }
        w.u8((len & 0x7f) as u8);
        w.bytes(body);
    }
    let mut specific = Writer::default();
    descriptor(&mut specific, 0x05, config);
    let mut decoder = vec![0x40, 0x15, 0, 0, 0]; // AAC, audio stream, buffer size
    decoder.extend_from_slice(&[0; 8]); // max and average bit rates: unknown
    decoder.extend_from_slice(&specific.out);
    let mut es = Writer::default();
    es.u16(0); // ES id
    es.u8(0); // flags
    descriptor(&mut es, 0x04, &decoder);
    descriptor(&mut es, 0x06, &[0x02]);
    w.begin_full(b"esds", 0, 0);
    descriptor(w, 0x03, &es.out);
    w.end();
}

/// `trun` flags: a data offset, and each sample's duration, size and flags.
const TRUN_FLAGS: u32 = 0x000001 | 0x000100 | 0x000200 | 0x000400;
/// A sample that depends on no other (a keyframe, or any audio frame).
const SYNC_SAMPLE: u32 = 0x0200_0000;
/// A sample that depends on others and is not a sync sample.
const DEPENDENT_SAMPLE: u32 = 0x0101_0000;

/// One `moof` + `mdat` holding `runs`, numbered `sequence`.
pub fn fragment(sequence: u32, runs: &[Run]) -> Vec<u8> {
    let mut w = Writer::default();
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0);
    w.u32(sequence);
    w.end();
    // Each trun's data offset is patched in once the moof's size is known.
    let mut offsets = Vec::new();
    for run in runs.iter().filter(|r| !r.samples.is_empty()) {
        w.begin(b"traf");
        w.begin_full(b"tfhd", 0, 0x02_0000); // offsets count from this moof
        w.u32(run.track_id);
        w.end();
        w.begin_full(b"tfdt", 1, 0);
        w.u64(run.decode_time);
        w.end();
        w.begin_full(b"trun", 0, TRUN_FLAGS);
        w.u32(run.samples.len() as u32);
        offsets.push(w.out.len());
        w.u32(0);
        for sample in &run.samples {
            w.u32(sample.duration);
            w.u32(sample.data.len() as u32);
            w.u32(if sample.sync {
                SYNC_SAMPLE
            } else {
                DEPENDENT_SAMPLE
            });
        }
        w.end();
        w.end();
    }
    w.end();
    let mut data_at = w.out.len() + 8;
    for (offset, run) in offsets
        .iter()
        .zip(runs.iter().filter(|r| !r.samples.is_empty()))
    {
        w.out[*offset..offset + 4].copy_from_slice(&(data_at as u32).to_be_bytes());
        data_at += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    w.begin(b"mdat");
    for run in runs {
        for sample in &run.samples {
            w.bytes(sample.data);
        }
    }
    w.end();
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boxes at the top of `bytes`: (kind, size).
    fn boxes(bytes: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push((String::from_utf8_lossy(&bytes[at + 4..at + 8]).into(), size));
            assert!(size >= 8, "a box of {size} bytes");
            at += size;
        }
        assert_eq!(at, bytes.len(), "the boxes do not end with the buffer");
        out
    }

    fn video() -> TrackInfo {
        TrackInfo {
            codec: Codec::H264 {
                avcc: vec![1, 0x64, 0x00, 0x29, 0xff, 0xe0, 0x00],
            },
            timescale: 90_000,
            width: 1920,
            height: 1080,
        }
    }

    fn aac() -> TrackInfo {
        TrackInfo {
            codec: Codec::Aac {
                config: vec![0x14, 0x08],
                channels: 1,
            },
            timescale: 16_000,
            width: 0,
            height: 0,
        }
    }

    #[test]
    fn codec_strings_are_what_browsers_ask_about() {
        assert_eq!(video().codec_string().unwrap(), "avc1.640029");
        assert_eq!(aac().codec_string().unwrap(), "mp4a.40.2");
        // x265's Main profile at level 3.1 (hvcC's first 13 bytes, as x265 writes them).
        let hevc = TrackInfo {
            codec: Codec::H265 {
                hvcc: vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93],
            },
            ..video()
        };
        assert_eq!(hevc.codec_string().unwrap(), "hvc1.1.6.L93.90");
        let short = TrackInfo {
            codec: Codec::H264 { avcc: vec![1, 2] },
            ..video()
        };
        assert_eq!(short.codec_string(), None);
    }

    #[test]
    fn the_init_segment_is_ftyp_then_moov_with_a_trex_per_track() {
        let init = init_segment(&[video(), aac()]);
        let top: Vec<String> = boxes(&init).into_iter().map(|(k, _)| k).collect();
        assert_eq!(top, ["ftyp", "moov"]);
        let count = |needle: &[u8]| init.windows(4).filter(|w| *w == needle).count();
        assert_eq!(count(b"trak"), 2);
        assert_eq!(count(b"trex"), 2);
        assert_eq!(count(b"avcC"), 1);
        assert_eq!(count(b"esds"), 1);
    }

    #[test]
    fn each_runs_data_offset_points_at_its_samples_in_the_mdat() {
        let runs = [
            Run {
                track_id: 1,
                decode_time: 90_000,
                samples: vec![Sample {
                    data: b"VIDEO",
                    duration: 3600,
                    sync: true,
                }],
            },
            Run {
                track_id: 2,
                decode_time: 16_000,
                samples: vec![
                    Sample {
                        data: b"AU1",
                        duration: 1024,
                        sync: true,
                    },
                    Sample {
                        data: b"AU2",
                        duration: 1024,
                        sync: true,
                    },
                ],
            },
        ];
        let bytes = fragment(7, &runs);
        let top = boxes(&bytes);
        assert_eq!(top[0].0, "moof");
        assert_eq!(top[1], ("mdat".to_string(), 8 + 11));
        // The data offsets: each trun's first field after its sample count.
        let truns: Vec<usize> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"trun")
            .map(|(i, _)| i)
            .collect();
        let offset_of = |trun: usize| {
            u32::from_be_bytes(bytes[trun + 12..trun + 16].try_into().unwrap()) as usize
        };
        assert_eq!(&bytes[offset_of(truns[0])..][..5], b"VIDEO");
        assert_eq!(&bytes[offset_of(truns[1])..][..6], b"AU1AU2");
    }
}
