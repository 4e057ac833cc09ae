//! WebRTC live view: a `webrtcbin` pipeline per viewer fed by the hub (H.264 or H.265 passed
//! through, G.711 passed through), by one shared Opus encoder per camera, and for H.265 cameras
//! by one shared H.264 transcoder; signalling over HTTP (WHEP / go2rtc's `/api/webrtc`) in
//! [`crate::http::webrtc`].

pub mod opus;
pub mod sdp;
pub mod session;
pub mod transcode;
