//! What a live stream holds, read once from the hub's caps, and the SDP that tells a viewer.
//! Pure: caps and `avcC`/`hvcC` records in, text out.

use crate::media::hub::Layout;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use gstreamer as gst;
use std::fmt::Write;

/// RTP payload types of the two tracks, as gst-rtsp-server gave them.
pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 97;
pub const VIDEO_CLOCK: u32 = 90_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub codec: Codec,
    /// Bytes in front of each NAL unit of a frame (`avc`/`hvc1` stream format).
    pub nal_length: usize,
    /// H.264: SPS then PPS; H.265: VPS, SPS, PPS. Each with the NAL type it has.
    parameter_sets: Vec<(u8, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub rate: u32,
    channels: u32,
    /// The AudioSpecificConfig.
    config: Vec<u8>,
}

/// The tracks of one live stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    pub video: Video,
    pub audio: Option<Audio>,
}

impl Description {
    pub fn from_layout(layout: &Layout) -> Result<Self, String> {
        let video = layout.video.structure(0).ok_or("video without caps")?;
        let codec_data = video
            .get::<gst::Buffer>("codec_data")
            .map_err(|_| "video caps without codec_data")?;
        let codec_data = codec_data.map_readable().map_err(|e| e.to_string())?;
        let video = match video.name().as_str() {
            "video/x-h264" => avc_record(&codec_data),
            "video/x-h265" => hevc_record(&codec_data),
            other => return Err(format!("{other} cannot be sent over RTSP")),
        }
        .ok_or("a malformed avcC/hvcC record")?;
        let audio = match &layout.audio {
            Some(caps) => {
                let s = caps.structure(0).ok_or("audio without caps")?;
                let config = s
                    .get::<gst::Buffer>("codec_data")
                    .map_err(|_| "AAC caps without codec_data")?;
                let config = config.map_readable().map_err(|e| e.to_string())?.to_vec();
                Some(Audio {
                    rate: s.get::<i32>("rate").map_err(|_| "AAC caps without rate")? as u32,
                    channels: s.get::<i32>("channels").unwrap_or(1) as u32,
                    config,
                })
            }
            None => None,
        };
        Ok(Description { video, audio })
    }

    /// The session description; track `i` is controlled at `<stream URL>/stream=<i>`.
    pub fn sdp(&self, server: std::net::IpAddr, session_id: u64) -> String {
        let family = if server.is_ipv6() { "IP6" } else { "IP4" };
        let mut sdp = format!(
            "v=0\r\no=- {session_id} 1 IN {family} {server}\r\ns=ipcam-mqtt live\r\nc=IN {family} {server}\r\nt=0 0\r\na=tool:ipcam-mqtt\r\na=type:broadcast\r\na=control:*\r\na=range:npt=now-\r\n"
        );
        let video = &self.video;
        let (name, fmtp) = match video.codec {
            Codec::H264 => {
                let sets = |kind: u8| {
                    video
                        .parameter_sets
                        .iter()
                        .filter(move |(t, _)| *t == kind)
                        .map(|(_, set)| BASE64.encode(set))
                };
                let profile = video
                    .parameter_sets
                    .iter()
                    .find(|(t, set)| *t == 7 && set.len() >= 4)
                    .map(|(_, sps)| {
                        format!(
                            ";profile-level-id={:02X}{:02X}{:02X}",
                            sps[1], sps[2], sps[3]
                        )
                    })
                    .unwrap_or_default();
                let sprop: Vec<String> = sets(7).chain(sets(8)).collect();
                (
                    "H264",
                    format!(
                        "packetization-mode=1{profile};sprop-parameter-sets={}",
                        sprop.join(",")
                    ),
                )
            }
            Codec::H265 => {
                let sprop = |kind: u8, name: &str| {
                    let sets: Vec<String> = video
                        .parameter_sets
                        .iter()
                        .filter(|(t, _)| *t == kind)
                        .map(|(_, set)| BASE64.encode(set))
                        .collect();
                    format!("{name}={}", sets.join(","))
                };
                (
                    "H265",
                    [
                        sprop(32, "sprop-vps"),
                        sprop(33, "sprop-sps"),
                        sprop(34, "sprop-pps"),
                    ]
                    .join(";"),
                )
            }
        };
        let _ = write!(
            sdp,
            "m=video 0 RTP/AVP {VIDEO_PT}\r\na=rtpmap:{VIDEO_PT} {name}/{VIDEO_CLOCK}\r\na=fmtp:{VIDEO_PT} {fmtp}\r\na=control:stream=0\r\n"
        );
        if let Some(audio) = &self.audio {
            let config: String = audio.config.iter().map(|b| format!("{b:02x}")).collect();
            let _ = write!(
                sdp,
                "m=audio 0 RTP/AVP {AUDIO_PT}\r\na=rtpmap:{AUDIO_PT} MPEG4-GENERIC/{}/{}\r\na=fmtp:{AUDIO_PT} streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config={config}\r\na=control:stream=1\r\n",
                audio.rate, audio.channels
            );
        }
        sdp
    }
}

/// Reads `len`-prefixed (16-bit) NAL units, `count` of them, from the front of `data`.
fn nal_units(data: &mut &[u8], count: usize) -> Option<Vec<Vec<u8>>> {
    (0..count)
        .map(|_| {
            let length = u16::from_be_bytes([*data.first()?, *data.get(1)?]) as usize;
            let unit = data.get(2..2 + length)?.to_vec();
            *data = &data[2 + length..];
            Some(unit)
        })
        .collect()
}

/// ISO 14496-15 `avcC`: SPS and PPS, and the NAL length size.
fn avc_record(record: &[u8]) -> Option<Video> {
    let nal_length = (*record.get(4)? & 0x03) as usize + 1;
    let mut rest = record.get(5..)?;
    let sps_count = (*rest.first()? & 0x1f) as usize;
    rest = &rest[1..];
    let sps = nal_units(&mut rest, sps_count)?;
    let pps_count = *rest.first()? as usize;
    rest = &rest[1..];
    let pps = nal_units(&mut rest, pps_count)?;
    let parameter_sets = sps
        .into_iter()
        .map(|s| (7, s))
        .chain(pps.into_iter().map(|p| (8, p)))
        .collect();
    Some(Video {
        codec: Codec::H264,
        nal_length,
        parameter_sets,
    })
}

/// ISO 14496-15 `hvcC`: its arrays of VPS, SPS and PPS, and the NAL length size.
fn hevc_record(record: &[u8]) -> Option<Video> {
    let nal_length = (*record.get(21)? & 0x03) as usize + 1;
    let arrays = *record.get(22)? as usize;
    let mut rest = record.get(23..)?;
    let mut parameter_sets = Vec::new();
    for _ in 0..arrays {
        let kind = *rest.first()? & 0x3f;
        let count = u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?]) as usize;
        rest = &rest[3..];
        parameter_sets.extend(
            nal_units(&mut rest, count)?
                .into_iter()
                .map(|unit| (kind, unit)),
        );
    }
    Some(Video {
        codec: Codec::H265,
        nal_length,
        parameter_sets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(video: gst::Caps, audio: bool) -> Layout {
        Layout {
            video,
            audio: audio.then(|| {
                gst::Caps::builder("audio/mpeg")
                    .field("rate", 16000i32)
                    .field("channels", 1i32)
                    .field("codec_data", gst::Buffer::from_slice([0x14u8, 0x08]))
                    .build()
            }),
        }
    }

    #[test]
    fn an_h264_stream_is_described_with_its_parameter_sets_and_aac() {
        gst::init().unwrap();
        let sps = [0x67u8, 0x64, 0x00, 0x28, 0xac];
        let pps = [0x68u8, 0xee, 0x3c, 0x80];
        let mut avcc = vec![1, 0x64, 0x00, 0x28, 0xff, 0xe1, 0, sps.len() as u8];
        avcc.extend_from_slice(&sps);
        avcc.extend_from_slice(&[1, 0, pps.len() as u8]);
        avcc.extend_from_slice(&pps);
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("codec_data", gst::Buffer::from_slice(avcc))
            .build();
        let description = Description::from_layout(&layout(caps, true)).unwrap();
        assert_eq!(description.video.nal_length, 4);
        let sdp = description.sdp("10.0.0.2".parse().unwrap(), 1);
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"), "{sdp}");
        assert!(
            sdp.contains(&format!(
                "a=fmtp:96 packetization-mode=1;profile-level-id=640028;sprop-parameter-sets={},{}\r\n",
                BASE64.encode(sps),
                BASE64.encode(pps)
            )),
            "{sdp}"
        );
        assert!(
            sdp.contains("a=rtpmap:97 MPEG4-GENERIC/16000/1\r\n"),
            "{sdp}"
        );
        assert!(
            sdp.contains("config=1408\r\na=control:stream=1\r\n"),
            "{sdp}"
        );
    }

    #[test]
    fn an_h265_stream_is_described_with_vps_sps_and_pps() {
        gst::init().unwrap();
        let mut hvcc = vec![0u8; 21];
        hvcc.push(0xff); // 4-byte NAL lengths
        hvcc.push(3);
        for (kind, unit) in [
            (32u8, [0x40u8, 0x01]),
            (33, [0x42, 0x01]),
            (34, [0x44, 0x01]),
        ] {
            hvcc.extend_from_slice(&[0x80 | kind, 0, 1, 0, 2]);
            hvcc.extend_from_slice(&unit);
        }
        let caps = gst::Caps::builder("video/x-h265")
            .field("codec_data", gst::Buffer::from_slice(hvcc))
            .build();
        let description = Description::from_layout(&layout(caps, false)).unwrap();
        assert_eq!(description.video.codec, Codec::H265);
        let sdp = description.sdp("10.0.0.2".parse().unwrap(), 1);
        assert!(
            sdp.contains("a=fmtp:96 sprop-vps=QAE=;sprop-sps=QgE=;sprop-pps=RAE=\r\n"),
            "{sdp}"
        );
        assert!(!sdp.contains("m=audio"));
    }

    #[test]
    fn a_truncated_record_is_an_error_not_a_panic() {
        gst::init().unwrap();
        let caps = gst::Caps::builder("video/x-h264")
            .field(
                "codec_data",
                gst::Buffer::from_slice([1u8, 0x64, 0, 0x28, 0xff, 0xe1, 0, 9, 0x67]),
            )
            .build();
        assert!(Description::from_layout(&layout(caps, false)).is_err());
    }
}
