//! A WebRTC peer that is not a browser: webrtcbin receiving the codecs it offers (H.264 + Opus
//! by default) and decoding them, signalled over WHEP or go2rtc's WebSocket API.

use super::wait_until;
use std::net::TcpStream;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

/// What a peer offers to receive, as webrtcbin transceiver caps.
pub const H264: &str = "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f";
pub const H265: &str =
    "application/x-rtp,media=video,encoding-name=H265,payload=98,clock-rate=90000";
pub const OPUS: &str =
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000";
pub const PCMA: &str = "application/x-rtp,media=audio,encoding-name=PCMA,payload=8,clock-rate=8000";

/// A WHEP peer that is not a browser: webrtcbin receiving what it offers and decoding it.
pub struct WhepClient {
    pipeline: gstreamer::Pipeline,
    frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    audio_frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub location: String,
    /// The server's answer SDP.
    pub answer: String,
}

impl WhepClient {
    /// WHEP, offering H.264 and Opus as a browser would.
    pub fn connect(url: &str) -> Result<WhepClient, String> {
        Self::connect_offering(url, &[H264, OPUS])
    }

    /// WHEP: the offer (of `receive`) is POSTed as SDP; the answer comes back with a `Location`.
    pub fn connect_offering(url: &str, receive: &[&str]) -> Result<WhepClient, String> {
        Self::signal(receive, |offer| {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-D",
                    "-",
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/sdp",
                ])
                .args(["--data-binary", offer, url])
                .output()
                .unwrap();
            let reply = String::from_utf8_lossy(&out.stdout).to_string();
            let (head, answer) = reply.split_once("\r\n\r\n").ok_or("no HTTP reply")?;
            if !head.starts_with("HTTP/1.1 201") {
                return Err(reply);
            }
            let location = head
                .lines()
                .find_map(|l| l.strip_prefix("location: "))
                .ok_or("no Location")?
                .to_string();
            Ok((answer.to_string(), location))
        })
    }

    /// go2rtc's WebSocket API; the socket closes when the returned guard drops.
    pub fn connect_ws(url: &str) -> Result<(WhepClient, impl Drop), String> {
        let (socket, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
        let socket = std::cell::RefCell::new(socket);
        let client = Self::signal(&[H264, OPUS], |offer| {
            let mut socket = socket.borrow_mut();
            let message = serde_json::json!({"type": "webrtc/offer", "value": offer});
            socket
                .send(tungstenite::Message::Text(message.to_string()))
                .map_err(|e| e.to_string())?;
            let reply = socket.read().map_err(|e| e.to_string())?;
            let reply: serde_json::Value =
                serde_json::from_str(reply.to_text().unwrap_or_default()).unwrap_or_default();
            if reply["type"] != "webrtc/answer" {
                return Err(reply.to_string());
            }
            Ok((
                reply["value"].as_str().unwrap_or_default().to_string(),
                String::new(),
            ))
        })?;
        struct Socket(tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>);
        impl Drop for Socket {
            fn drop(&mut self) {
                let _ = self.0.close(None);
                let _ = self.0.flush();
            }
        }
        Ok((client, Socket(socket.into_inner())))
    }

    fn signal(
        receive: &[&str],
        exchange: impl FnOnce(&str) -> Result<(String, String), String>,
    ) -> Result<WhepClient, String> {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        use gstreamer_webrtc as gst_webrtc;
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .unwrap();
        pipeline.add(&webrtc).unwrap();
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let audio_frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = frames.clone();
        let audio_counted = audio_frames.clone();
        let weak = pipeline.downgrade();
        webrtc.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let decode = gst::ElementFactory::make("decodebin").build().unwrap();
            pipeline.add(&decode).unwrap();
            decode.sync_state_with_parent().unwrap();
            pad.link(&decode.static_pad("sink").unwrap()).unwrap();
            let counted = counted.clone();
            let audio_counted = audio_counted.clone();
            let weak = pipeline.downgrade();
            decode.connect_pad_added(move |_, pad| {
                let Some(pipeline) = weak.upgrade() else {
                    return;
                };
                let video = pad.current_caps().is_some_and(|c| {
                    c.structure(0)
                        .is_some_and(|s| s.name().starts_with("video/"))
                });
                let sink = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build()
                    .unwrap();
                pipeline.add(&sink).unwrap();
                sink.sync_state_with_parent().unwrap();
                pad.link(&sink.static_pad("sink").unwrap()).unwrap();
                let counted = if video { &counted } else { &audio_counted }.clone();
                pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    gst::PadProbeReturn::Ok
                });
            });
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        for caps in receive {
            let caps = gst::Caps::from_str(caps).unwrap();
            let _: gst_webrtc::WebRTCRTPTransceiver = webrtc.emit_by_name(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = reply.ok().flatten().and_then(|s| {
                s.value("offer")
                    .ok()?
                    .get::<gst_webrtc::WebRTCSessionDescription>()
                    .ok()
            });
            let _ = tx.send(offer);
        });
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        let offer = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        webrtc.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        wait_until("ICE gathering", Duration::from_secs(5), || {
            webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                == gst_webrtc::WebRTCICEGatheringState::Complete
        });
        let offer = webrtc
            .property::<gst_webrtc::WebRTCSessionDescription>("local-description")
            .sdp()
            .as_text()
            .unwrap();
        let (answer_text, location) = exchange(&offer)?;
        let answer = gstreamer_sdp::SDPMessage::parse_buffer(answer_text.as_bytes()).unwrap();
        let answer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, answer);
        webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
        Ok(WhepClient {
            pipeline,
            frames,
            audio_frames,
            location,
            answer: answer_text,
        })
    }

    /// Decoded video frames.
    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Decoded audio buffers.
    pub fn audio_frames(&self) -> u64 {
        self.audio_frames.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for WhepClient {
    fn drop(&mut self) {
        use gstreamer::prelude::*;
        let _ = self.pipeline.set_state(gstreamer::State::Null);
    }
}
