//! Fragmented MP4 to clients: go2rtc's MSE over `/api/ws` (`{"type":"mse","value":"<codecs>"}`
//! in, `{"type":"mse","value":"video/mp4; codecs=…"}` out, then binary segments) and
//! `GET /api/stream.mp4?src=<camera>` (chunked, until the client leaves). Both pass through the
//! same authentication, Origin check and rate limit as WebRTC offers.

use super::{Api, plain};
use crate::error::Error;
use crate::mse::{Accepts, MseCamera, MseViewer};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Why a stream is not opened before the camera is asked.
enum Refused {
    NoCamera,
    TooMany(std::time::Duration),
}

impl Refused {
    fn response(&self, src: &str) -> Response {
        match self {
            Refused::NoCamera => plain(StatusCode::NOT_FOUND, format!("no camera \"{src}\"")),
            Refused::TooMany(wait) => super::too_many(*wait),
        }
    }
}

/// The camera `src` names, if the peer may open another stream of it now.
fn camera_for(api: &Api, src: &str, peer: IpAddr) -> Result<Arc<MseCamera>, Refused> {
    let camera = api
        .mse
        .iter()
        .find(|c| c.camera == src)
        .cloned()
        .ok_or(Refused::NoCamera)?;
    api.offer_limit
        .check(peer, src, Instant::now())
        .map_err(Refused::TooMany)?;
    Ok(camera)
}

async fn join(camera: &Arc<MseCamera>, codecs: &str, how: &str) -> Result<MseViewer, Error> {
    let joined = camera.join(Accepts::from_codecs(codecs)).await;
    match &joined {
        Ok(viewer) => {
            tracing::info!(camera = %camera.camera, "{how} viewer joined ({} now): {}", camera.viewers(), viewer.mime);
        }
        Err(e) => tracing::warn!(camera = %camera.camera, "{how} viewer refused: {e}"),
    }
    joined
}

/// `GET /api/stream.mp4?src=<camera>[&codecs=<list>]`: without `codecs`, H.264 and AAC, which
/// every player takes.
pub async fn stream_mp4(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Another site's `<video src>` sends no Origin, but the browser says where it comes from.
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return plain(
            StatusCode::FORBIDDEN,
            "another site may not embed this stream: open it from this server's own address",
        );
    }
    let Some(src) = query.get("src") else {
        return plain(StatusCode::BAD_REQUEST, "missing src=<camera>");
    };
    let camera = match camera_for(&api, src, peer.ip()) {
        Ok(camera) => camera,
        Err(refused) => return refused.response(src),
    };
    let codecs = query.get("codecs").map_or("", String::as_str);
    let viewer = match join(&camera, codecs, "stream.mp4").await {
        Ok(viewer) => viewer,
        Err(e) => return super::error_response(&e),
    };
    let content_type = viewer.mime.clone();
    let body = futures_util::stream::unfold(viewer, |viewer| async move {
        let fragment = viewer.fragments.next().await?;
        Some((Ok::<_, std::convert::Infallible>(fragment), viewer))
    });
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// The `mse` request on `/api/ws` (the socket is `webrtc.rs`'s): the viewer, or why not, as the
/// client is told.
pub async fn open(api: &Api, src: &str, codecs: &str, peer: IpAddr) -> Result<MseViewer, String> {
    let camera = match camera_for(api, src, peer) {
        Ok(camera) => camera,
        Err(Refused::NoCamera) => return Err(format!("no camera \"{src}\"")),
        Err(Refused::TooMany(wait)) => return Err(super::too_many_message(wait)),
    };
    join(&camera, codecs, "MSE")
        .await
        .map_err(|e| e.to_string())
}

/// An MSE viewer on `/api/ws` left.
pub fn left(camera: &str, viewer: MseViewer) {
    let dropped = viewer.fragments.dropped();
    drop(viewer);
    tracing::info!(
        camera = %camera,
        "MSE viewer left ({dropped} fragments dropped while it lagged)"
    );
}
