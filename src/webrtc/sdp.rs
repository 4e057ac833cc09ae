//! What the browser's offer allows: the payload types we send on. Pure, tested directly.

use crate::config::H265ToH264;
use crate::error::{Error, ErrorKind};
use gstreamer_sdp as gst_sdp;

/// Reads a viewer's offer and what it allows. Empty text is refused before GStreamer sees it:
/// that is the only text its parser fails on, and gstreamer-sdp 0.25 then leaks the message
/// (found by fuzzing).
pub fn parse_offer(text: &str) -> Result<(gst_sdp::SDPMessage, OfferChoice), Error> {
    if text.trim().is_empty() {
        return Err(Error::new(ErrorKind::Invalid, "the offer is empty"));
    }
    let offer = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| Error::new(ErrorKind::Invalid, "the offer is not SDP"))?;
    let choice = OfferChoice::from_offer(&offer)?;
    Ok((offer, choice))
}

/// A codec the browser offered: its payload type and the m-line it was offered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offered {
    pub payload: u32,
    pub mline: u32,
}

/// The codecs of a browser's offer that we can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfferChoice {
    pub h264: Option<Offered>,
    pub h265: Option<Offered>,
    pub opus: Option<Offered>,
    pub pcma: Option<Offered>,
    pub pcmu: Option<Offered>,
}

impl OfferChoice {
    /// H.264 with packetization mode 1 (what cameras send), Constrained Baseline first since
    /// every browser decodes it; H.265, Opus and G.711 if offered.
    pub fn from_offer(offer: &gst_sdp::SDPMessageRef) -> Result<Self, Error> {
        let mut h264: Vec<(Offered, u8)> = Vec::new();
        let mut choice = Self::default();
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
                // RTP payload types are 7 bits; anything else would wrap in the packets we send.
                let Some(payload) = pt.parse::<u32>().ok().filter(|pt| *pt <= 127) else {
                    continue;
                };
                let offered = Offered { payload, mline };
                let codec = codec.to_ascii_uppercase();
                let first = |slot: &mut Option<Offered>| {
                    slot.get_or_insert(offered);
                };
                match (media.media(), codec.as_str()) {
                    (Some("video"), c) if c.starts_with("H264/") => {
                        let params = fmtp(payload);
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
                        h264.push((offered, rank));
                    }
                    (Some("video"), c) if c.starts_with("H265/") => first(&mut choice.h265),
                    (Some("audio"), c) if c.starts_with("OPUS/") => first(&mut choice.opus),
                    (Some("audio"), "PCMA/8000" | "PCMA/8000/1") => first(&mut choice.pcma),
                    (Some("audio"), "PCMU/8000" | "PCMU/8000/1") => first(&mut choice.pcmu),
                    _ => {}
                }
            }
        }
        choice.h264 = h264
            .iter()
            .min_by_key(|(_, rank)| *rank)
            .map(|(offered, _)| *offered);
        if choice.h264.is_none() && choice.h265.is_none() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "the offer has no H.264 (packetization-mode=1) or H.265 video",
            ));
        }
        Ok(choice)
    }
}

/// How a viewer's video is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoSend {
    /// The camera's H.264, passed through.
    H264,
    /// The camera's H.265, passed through (Safari, recent Chrome with a hardware decoder).
    H265,
    /// The camera's H.265 transcoded to H.264, shared by the viewers that need it.
    H264FromH265,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioSend {
    /// The camera's audio, transcoded once per camera.
    Opus,
    /// The camera's own G.711, passed through.
    Pcma,
    Pcmu,
}

/// What one viewer is sent, on which of its offer's payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub video: (VideoSend, Offered),
    pub audio: Option<(AudioSend, Offered)>,
}

/// What the camera delivers, as far as a plan needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraMedia {
    pub h265: bool,
    pub has_audio: bool,
    /// `"PCMA"` or `"PCMU"` when the camera's G.711 is kept as it came.
    pub g711: Option<&'static str>,
}

/// Picks the video and audio a viewer gets. Passthrough wins whenever the browser takes the
/// camera's codec, since it costs nothing and adds no delay.
pub fn plan(offer: &OfferChoice, camera: CameraMedia, policy: H265ToH264) -> Result<Plan, Error> {
    // Why a plan cannot be made: the offer lacks a codec (Invalid), or the camera's policy
    // refuses (Unsupported).
    let bad_offer = |message: &str| Error::new(ErrorKind::Invalid, message);
    let video = match (camera.h265, policy) {
        (false, _) => offer
            .h264
            .map(|at| (VideoSend::H264, at))
            .ok_or_else(|| bad_offer("the camera sends H.264, which the offer lacks"))?,
        (true, H265ToH264::Always) => offer
            .h264
            .map(|at| (VideoSend::H264FromH265, at))
            .ok_or_else(|| bad_offer("h265_to_h264 is \"always\", but the offer has no H.264"))?,
        (true, H265ToH264::Auto) => match (offer.h265, offer.h264) {
            (Some(at), _) => (VideoSend::H265, at),
            (None, Some(at)) => (VideoSend::H264FromH265, at),
            (None, None) => return Err(bad_offer("the offer has no video")),
        },
        (true, H265ToH264::Never) => {
            offer.h265.map(|at| (VideoSend::H265, at)).ok_or_else(|| {
                Error::new(
                    ErrorKind::Unsupported,
                    "this camera sends H.265, which this browser cannot play over WebRTC, and \
                 h265_to_h264 is \"never\"; set it to \"auto\" or use the RTSP stream",
                )
            })?
        }
    };
    let audio = if camera.has_audio {
        let g711 = match camera.g711 {
            Some("PCMA") => offer.pcma.map(|at| (AudioSend::Pcma, at)),
            Some("PCMU") => offer.pcmu.map(|at| (AudioSend::Pcmu, at)),
            _ => None,
        };
        g711.or(offer.opus.map(|at| (AudioSend::Opus, at)))
    } else {
        None
    };
    Ok(Plan { video, audio })
}

/// Adds, after each UDP host candidate of `sdp`, the same candidate at each public address of
/// the same family, with a lower priority: the port a router forwards to this host is reachable
/// from outside at the router's address.
pub fn add_public_candidates(sdp: &str, public: &[std::net::IpAddr]) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        let [
            foundation,
            component,
            transport,
            priority,
            address,
            port,
            "typ",
            "host",
            ..,
        ] = fields.as_slice()
        else {
            continue;
        };
        let (Some(foundation), Ok(local), Ok(priority)) = (
            foundation.strip_prefix("a=candidate:"),
            address.parse::<std::net::IpAddr>(),
            priority.parse::<u32>(),
        ) else {
            continue;
        };
        if !transport.eq_ignore_ascii_case("udp") {
            continue;
        }
        for (i, ip) in public.iter().enumerate() {
            if ip.is_ipv4() == local.is_ipv4() && *ip != local {
                out.push_str(&format!(
                    "a=candidate:{foundation}p{i} {component} {transport} {} {ip} {port} typ host\r\n",
                    priority.saturating_sub(1000 * (i as u32 + 1)),
                ));
            }
        }
    }
    out
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

    const SAFARI_H265: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\nc=IN IP4 0.0.0.0\r\na=recvonly\r\n\
a=rtpmap:98 H265/90000\r\na=fmtp:98 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST\r\n\
a=rtpmap:99 H264/90000\r\na=fmtp:99 packetization-mode=1;profile-level-id=42e01f\r\n";

    fn parse(text: &str) -> gst_sdp::SDPMessage {
        let _ = gstreamer::init();
        gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).unwrap()
    }

    fn at(payload: u32, mline: u32) -> Option<Offered> {
        Some(Offered { payload, mline })
    }

    fn camera(h265: bool, g711: Option<&'static str>) -> CameraMedia {
        CameraMedia {
            h265,
            has_audio: true,
            g711,
        }
    }

    #[test]
    fn an_empty_offer_is_refused_before_the_parser_and_a_real_one_is_read() {
        let _ = gstreamer::init();
        assert_eq!(
            parse_offer(" \r\n").unwrap_err().message(),
            "the offer is empty"
        );
        let (_, choice) = parse_offer(CHROMIUM).unwrap();
        assert_eq!(choice, OfferChoice::from_offer(&parse(CHROMIUM)).unwrap());
    }

    #[test]
    fn picks_constrained_baseline_h264_in_mode_1_opus_and_g711() {
        let choice = OfferChoice::from_offer(&parse(CHROMIUM)).unwrap();
        assert_eq!(
            choice,
            OfferChoice {
                h264: at(106, 0),
                h265: None,
                opus: at(111, 1),
                pcma: at(8, 1),
                pcmu: None,
            }
        );
    }

    #[test]
    fn an_offer_without_h264_or_h265_is_refused_clearly() {
        let vp8_only = CHROMIUM
            .lines()
            .filter(|l| !l.contains("H264") && !l.contains("fmtp"))
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        let error = OfferChoice::from_offer(&parse(&vp8_only)).unwrap_err();
        assert!(error.message().contains("no H.264"), "{error}");
    }

    #[test]
    fn payload_types_beyond_7_bits_are_not_used() {
        // Constrained Baseline (106, preferred) on a payload type that does not fit RTP.
        let offer = CHROMIUM.replace("106", "300");
        let choice = OfferChoice::from_offer(&parse(&offer)).unwrap();
        assert_eq!(choice.h264, at(102, 0), "the next H.264 that fits 7 bits");
        assert_eq!(
            OfferChoice::from_offer(&parse(CHROMIUM)).unwrap().h264,
            at(106, 0)
        );
    }

    #[test]
    fn h264_cameras_pass_through_and_g711_wins_over_opus_when_offered() {
        let offer = OfferChoice::from_offer(&parse(CHROMIUM)).unwrap();
        let pcma = plan(&offer, camera(false, Some("PCMA")), H265ToH264::Auto).unwrap();
        assert_eq!(pcma.video, (VideoSend::H264, at(106, 0).unwrap()));
        assert_eq!(pcma.audio, Some((AudioSend::Pcma, at(8, 1).unwrap())));
        // PCMU is not in this offer: the camera's audio goes out as Opus.
        assert_eq!(
            plan_audio(&offer, camera(false, Some("PCMU"))),
            Some((AudioSend::Opus, at(111, 1).unwrap()))
        );
        let silent = CameraMedia {
            has_audio: false,
            ..camera(false, None)
        };
        assert_eq!(plan_audio(&offer, silent), None);
    }

    fn plan_audio(offer: &OfferChoice, camera: CameraMedia) -> Option<(AudioSend, Offered)> {
        plan(offer, camera, H265ToH264::Auto).unwrap().audio
    }

    #[test]
    fn h265_is_passed_through_when_offered_and_transcoded_only_when_not() {
        let safari = OfferChoice::from_offer(&parse(SAFARI_H265)).unwrap();
        let chromium = OfferChoice::from_offer(&parse(CHROMIUM)).unwrap();
        let video = |offer, policy| plan(offer, camera(true, None), policy).map(|p| p.video.0);
        assert_eq!(video(&safari, H265ToH264::Auto), Ok(VideoSend::H265));
        assert_eq!(
            video(&chromium, H265ToH264::Auto),
            Ok(VideoSend::H264FromH265)
        );
        assert_eq!(
            video(&safari, H265ToH264::Always),
            Ok(VideoSend::H264FromH265)
        );
        assert_eq!(video(&safari, H265ToH264::Never), Ok(VideoSend::H265));
        let refused = video(&chromium, H265ToH264::Never).unwrap_err();
        assert!(
            refused.kind() == ErrorKind::Unsupported && refused.message().contains("\"auto\""),
            "{refused:?}"
        );
    }

    #[test]
    fn an_h265_only_offer_for_an_h264_camera_is_a_bad_offer() {
        let h265_only = OfferChoice {
            h264: None,
            ..OfferChoice::from_offer(&parse(SAFARI_H265)).unwrap()
        };
        let error = plan(&h265_only, camera(false, None), H265ToH264::Auto).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{error:?}");
    }

    #[test]
    fn public_candidates_follow_each_udp_host_candidate_of_the_same_family() {
        let answer = "m=video 9 UDP/TLS/RTP/SAVPF 106\r\n\
a=candidate:1 1 UDP 2015363327 192.168.1.5 50002 typ host\r\n\
a=candidate:2 1 TCP 1015021823 192.168.1.5 9 typ host tcptype active\r\n\
a=candidate:3 1 UDP 2015363583 fe80::1 50004 typ host\r\n\
a=candidate:4 1 UDP 1679819007 198.51.100.9 40000 typ srflx raddr 192.168.1.5 rport 50002\r\n";
        let public = ["203.0.113.7".parse().unwrap()];
        let with = add_public_candidates(answer, &public);
        let added: Vec<&str> = with.lines().filter(|l| !answer.contains(*l)).collect();
        assert_eq!(
            added,
            ["a=candidate:1p0 1 UDP 2015362327 203.0.113.7 50002 typ host"]
        );
        assert_eq!(add_public_candidates(answer, &[]), answer);
    }
}
