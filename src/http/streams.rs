//! `GET /api/streams` (go2rtc's name): every camera with its state, codecs, viewers and drop
//! counter; `GET /api` says what this server is, for clients that probe.

use super::Api;
use crate::audio::task::CryState;
use crate::camera::CameraState;
use crate::metrics::CameraCounters;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::watch;

/// A camera as the API lists it.
pub struct CameraEntry {
    pub id: String,
    pub name: String,
    pub state: watch::Receiver<CameraState>,
    pub counters: Arc<CameraCounters>,
    /// The cry sensor, once cry detection runs (never, when it is off).
    pub cry: Arc<std::sync::OnceLock<watch::Receiver<CryState>>>,
}

pub async fn streams(State(api): State<Arc<Api>>) -> Response {
    let cameras: serde_json::Map<String, serde_json::Value> = api
        .streams
        .iter()
        .map(|camera| {
            let state = camera.state.borrow().clone();
            #[cfg(feature = "webrtc")]
            let webrtc = api
                .webrtc
                .iter()
                .find(|w| w.camera == camera.id)
                .map_or(0, |w| w.viewers());
            #[cfg(not(feature = "webrtc"))]
            let webrtc = 0;
            let mse = api
                .mse
                .iter()
                .find(|m| m.camera == camera.id)
                .map_or(0, |m| m.viewers());
            // `null` where cry detection is off, so a page shows no sensor rather than "quiet".
            let crying = camera.cry.get().map(|cry| cry.borrow().crying);
            (
                camera.id.clone(),
                json!({
                    "name": camera.name,
                    "status": state.status.as_str(),
                    "video_codec": state.info.video_codec,
                    "width": state.info.width,
                    "height": state.info.height,
                    "audio_codec": state.info.audio_codec_out,
                    "viewers": {"rtsp": state.rtsp_viewers, "webrtc": webrtc, "mse": mse},
                    "crying": crying,
                    "dropped_frames": state.dropped_frames,
                    "error": state.error,
                }),
            )
        })
        .collect();
    axum::Json(serde_json::Value::Object(cameras)).into_response()
}

pub async fn about() -> Response {
    axum::Json(json!({
        "name": crate::mqtt::discovery::ORIGIN_NAME,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}
