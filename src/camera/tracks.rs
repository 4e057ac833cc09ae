//! The tracks a camera offers in its SDP, and which of them we take: the first H.264 or H.265
//! video, and the first audio we can make AAC of. Streams we cannot use are never set up.

use super::audio_track::{AudioBranch, audio_branch, media_and_encoding};
use crate::error::{Error, ErrorKind};
use gstreamer as gst;
use gstreamer_sdp as gst_sdp;

/// One `m=` section of the camera's SDP, as RTP caps (what rtspsrc makes of it).
#[derive(Debug, Clone)]
pub(super) struct Offered {
    /// Its place in the SDP, which is the RTSP client's stream index.
    pub index: usize,
    pub caps: gst::Caps,
    pub media: String,
    /// Upper case, as in caps: `H264`, `PCMU`, `MPEG4-GENERIC`.
    pub encoding: String,
    pub clock_rate: u32,
    /// The `a=fmtp` parameters, without the payload type in front.
    pub fmtp: Option<String>,
}

/// The tracks chosen, before any media flows.
#[derive(Debug)]
pub(super) struct Chosen {
    pub video: Offered,
    pub audio: Option<(Offered, AudioBranch)>,
}

const VIDEO_CODECS: [&str; 2] = ["H264", "H265"];

/// Reads every `m=` section of `sdp`.
pub(super) fn offered(sdp: &[u8]) -> Result<Vec<Offered>, Error> {
    let message = gst_sdp::SDPMessage::parse_buffer(sdp).map_err(|_| {
        Error::new(
            ErrorKind::Transient,
            "the camera's stream description (SDP) cannot be read",
        )
    })?;
    Ok(message
        .medias()
        .enumerate()
        .filter_map(|(index, media)| {
            let pt: i32 = media.format(0)?.parse().ok()?;
            let mut caps = media.caps_from_media(pt)?;
            {
                let caps = caps.make_mut();
                // Session-wide attributes first, as rtspsrc does; the section's own win.
                let _ = message.attributes_to_caps(caps);
                let _ = media.attributes_to_caps(caps);
                caps.structure_mut(0)?.set_name("application/x-rtp");
            }
            let (kind, encoding) = media_and_encoding(&caps);
            let clock_rate = caps
                .structure(0)
                .and_then(|s| s.get::<i32>("clock-rate").ok())
                .and_then(|rate| u32::try_from(rate).ok())?;
            let fmtp = media.attribute_val("fmtp").map(|value| {
                // `a=fmtp:96 packetization-mode=1;…`: the parameters follow the payload type.
                value
                    .split_once(' ')
                    .map_or(value, |(_, params)| params)
                    .trim()
                    .to_string()
            });
            Some(Offered {
                index,
                caps,
                media: kind,
                encoding,
                clock_rate,
                fmtp,
            })
        })
        .collect())
}

/// Takes the first video we can pass through and the first audio we can make AAC of.
pub(super) fn choose(offered: Vec<Offered>) -> Result<Chosen, Error> {
    let mut video = None;
    let mut unsupported_video = None;
    let mut audio = None;
    for track in offered {
        let take = match track.media.as_str() {
            "video" if video.is_none() => {
                if VIDEO_CODECS.contains(&track.encoding.as_str()) {
                    true
                } else {
                    unsupported_video.get_or_insert(track.encoding.clone());
                    false
                }
            }
            "audio" if audio.is_none() => match audio_branch(&track.encoding, track.clock_rate) {
                Some(branch) => {
                    tracing::debug!("camera offers {} audio: using it", track.encoding);
                    audio = Some((track.clone(), branch));
                    false
                }
                None => {
                    tracing::warn!(
                        "the camera sends {} audio, which is not supported; continuing with video only",
                        track.encoding
                    );
                    false
                }
            },
            _ => false,
        };
        if take {
            tracing::debug!("camera offers {} video: using it", track.encoding);
            video = Some(track);
        }
    }
    let video = video.ok_or_else(|| {
        Error::new(
            ErrorKind::Unsupported,
            match unsupported_video {
                Some(codec) => format!(
                    "the camera sends {codec} video; only H.264 and H.265 can be passed through"
                ),
                None => "the camera offers no video track".to_string(),
            },
        )
    })?;
    Ok(Chosen { video, audio })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdp(medias: &str) -> Vec<u8> {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n{medias}")
            .into_bytes()
    }

    const H264: &str = "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==\r\na=control:stream=0\r\n";
    const PCMU: &str = "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:stream=1\r\n";
    const AAC: &str = "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\na=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1408\r\na=control:stream=1\r\n";

    #[test]
    fn video_and_audio_are_read_from_the_sdp_with_their_parameters() {
        gst::init().unwrap();
        let chosen = choose(offered(&sdp(&format!("{H264}{AAC}"))).unwrap()).unwrap();
        assert_eq!(chosen.video.index, 0);
        assert_eq!(chosen.video.encoding, "H264");
        assert_eq!(chosen.video.clock_rate, 90000);
        assert_eq!(
            chosen.video.fmtp.as_deref(),
            Some("packetization-mode=1;sprop-parameter-sets=Z0IAH5WoFAFuQA==,aM48gA==")
        );
        let (audio, branch) = chosen.audio.expect("AAC is taken");
        assert_eq!((audio.index, branch.name), (1, "AAC"));
        let s = audio.caps.structure(0).unwrap();
        assert_eq!(s.name(), "application/x-rtp");
        assert_eq!(
            s.get::<&str>("config").unwrap(),
            "1408",
            "the depayloader needs it"
        );
    }

    #[test]
    fn audio_we_cannot_use_leaves_the_camera_video_only() {
        gst::init().unwrap();
        let g722 = "m=audio 0 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
        let chosen = choose(offered(&sdp(&format!("{g722}{H264}"))).unwrap()).unwrap();
        assert_eq!(chosen.video.index, 1);
        assert!(chosen.audio.is_none());
        let chosen = choose(offered(&sdp(&format!("{H264}{PCMU}"))).unwrap()).unwrap();
        assert_eq!(chosen.audio.unwrap().1.name, "PCMU");
    }

    #[test]
    fn a_camera_without_usable_video_is_told_plainly() {
        gst::init().unwrap();
        let mjpeg = "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\n";
        let error = choose(offered(&sdp(&format!("{mjpeg}{PCMU}"))).unwrap()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        assert!(error.to_string().contains("JPEG video"), "{error}");
        let error = choose(offered(&sdp(PCMU)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("no video track"), "{error}");
        assert!(offered(b"not an sdp \xff").map_or(true, |t| t.is_empty()));
    }
}
