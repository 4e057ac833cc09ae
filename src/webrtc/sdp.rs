//! What the browser's offer allows: the payload types we send on. Pure, tested directly.

use gstreamer_sdp as gst_sdp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferChoice {
    pub h264_payload: u32,
    pub video_mline: u32,
    pub opus_payload: Option<u32>,
    pub audio_mline: Option<u32>,
}

impl OfferChoice {
    /// H.264 with packetization mode 1 (what cameras send), Constrained Baseline first since
    /// every browser decodes it; Opus if offered.
    pub fn from_offer(offer: &gst_sdp::SDPMessageRef) -> Result<Self, String> {
        let mut h264: Vec<(u32, u8, u32)> = Vec::new();
        let mut opus = None;
        for (mline, media) in (0u32..).zip(offer.medias()) {
            let fmtp = |pt: u32| {
                media
                    .attributes()
                    .filter(|a| a.key() == "fmtp")
                    .filter_map(|a| a.value())
                    .find(|v| v.split_whitespace().next() == Some(&pt.to_string()))
                    .unwrap_or("")
                    .to_ascii_lowercase()
            };
            for rtpmap in media.attributes().filter(|a| a.key() == "rtpmap") {
                let Some((pt, codec)) = rtpmap.value().and_then(|v| v.split_once(' ')) else {
                    continue;
                };
                let Ok(pt) = pt.parse::<u32>() else {
                    continue;
                };
                let codec = codec.to_ascii_uppercase();
                match media.media() {
                    Some("video") if codec.starts_with("H264/") => {
                        let params = fmtp(pt);
                        if !params.contains("packetization-mode=1") {
                            continue;
                        }
                        let rank = if params.contains("profile-level-id=42e0") {
                            0
                        } else if params.contains("profile-level-id=42") {
                            1
                        } else {
                            2
                        };
                        h264.push((pt, rank, mline));
                    }
                    Some("audio") if codec.starts_with("OPUS/") => {
                        opus.get_or_insert((pt, mline));
                    }
                    _ => {}
                }
            }
        }
        let (h264_payload, _, video_mline) = h264
            .iter()
            .min_by_key(|(_, rank, _)| *rank)
            .copied()
            .ok_or("the offer has no H.264 (packetization-mode=1) video")?;
        Ok(Self {
            h264_payload,
            video_mline,
            opus_payload: opus.map(|(pt, _)| pt),
            audio_mline: opus.map(|(_, mline)| mline),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a Chromium offer.
    const CHROMIUM: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 108\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n\
a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 8\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\n";

    fn parse(text: &str) -> gst_sdp::SDPMessage {
        gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).unwrap()
    }

    #[test]
    fn picks_constrained_baseline_h264_in_mode_1_and_opus() {
        let _ = gstreamer::init();
        let choice = OfferChoice::from_offer(&parse(CHROMIUM)).unwrap();
        assert_eq!(
            choice,
            OfferChoice {
                h264_payload: 106,
                video_mline: 0,
                opus_payload: Some(111),
                audio_mline: Some(1),
            }
        );
    }

    #[test]
    fn an_offer_without_h264_is_refused_clearly() {
        let _ = gstreamer::init();
        let vp8_only = CHROMIUM
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("fmtp"))
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        let error = OfferChoice::from_offer(&parse(&vp8_only)).unwrap_err();
        assert!(error.contains("no H.264"), "{error}");
    }
}
