//! WebRTC live view: a `webrtcbin` pipeline per viewer fed by the hub (H.264 passed through)
//! and by one shared Opus encoder per camera; signalling over HTTP (WHEP / go2rtc's
//! `/api/webrtc`) in [`crate::http::webrtc`].

pub mod opus;
pub mod sdp;
pub mod session;
