//! WebRTC signalling, as go2rtc has it: `POST /api/webrtc?src=<camera>` with the browser's offer
//! (raw SDP as in WHEP, answered `201` with `application/sdp` and a `Location` to `DELETE`; or
//! go2rtc's JSON `{"type":"offer","sdp":…}`, answered with `{"type":"answer","sdp":…}`).

use super::{Api, plain};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Offers are a few kB; this bounds a hostile body.
pub const MAX_OFFER: usize = 64 * 1024;

pub async fn offer(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(src) = query.get("src") else {
        return plain(StatusCode::BAD_REQUEST, "missing src=<camera>");
    };
    let Some(camera) = api.webrtc.iter().find(|c| &c.camera == src).cloned() else {
        return plain(StatusCode::NOT_FOUND, format!("no camera \"{src}\""));
    };
    if body.len() > MAX_OFFER {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "the offer is too large");
    }
    if let Err(wait) = api.offer_limit.check(peer.ip(), src, Instant::now()) {
        return super::too_many(wait);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sdp = if json {
        match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(value) if value["type"] == "offer" && value["sdp"].is_string() => {
                value["sdp"].as_str().unwrap_or_default().to_string()
            }
            _ => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "expected {\"type\":\"offer\",\"sdp\":\"…\"}",
                );
            }
        }
    } else {
        body
    };
    let answered = tokio::task::spawn_blocking(move || camera.answer(&sdp)).await;
    match answered {
        Ok(Ok((answer, _))) if json => {
            axum::Json(serde_json::json!({"type": "answer", "sdp": answer})).into_response()
        }
        Ok(Ok((answer, id))) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_string()),
                (header::LOCATION, format!("webrtc/{id}")),
            ],
            answer,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(camera = %src, "WebRTC offer not answered: {e}");
            super::error_response(&e)
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// WHEP's `DELETE` on the session URL.
pub async fn close(State(api): State<Arc<Api>>, Path(id): Path<u64>) -> Response {
    let closed = tokio::task::spawn_blocking(move || api.webrtc.iter().any(|c| c.close(id)))
        .await
        .unwrap_or(false);
    if closed {
        StatusCode::OK.into_response()
    } else {
        plain(StatusCode::NOT_FOUND, format!("no WebRTC session {id}"))
    }
}

/// go2rtc's WebSocket API at `/api/ws?src=<camera>`, as the WebRTC Camera card and HA's go2rtc
/// client use it: `{"type":"webrtc/offer","value":sdp}` in, `{"type":"webrtc/answer",…}` out,
/// `webrtc/candidate` accepted; or `{"type":"mse"}` (see `mse.rs`), on the same socket. Closing
/// the socket ends both.
pub async fn socket(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let Some(camera) = query
        .get("src")
        .and_then(|src| api.webrtc.iter().find(|c| &c.camera == src).cloned())
    else {
        return plain(
            StatusCode::NOT_FOUND,
            "no such camera: use /api/ws?src=<camera>",
        );
    };
    upgrade
        .max_message_size(MAX_OFFER)
        .on_upgrade(move |socket| serve_socket(socket, camera, api, peer.ip()))
}

async fn serve_socket(
    mut socket: axum::extract::ws::WebSocket,
    camera: Arc<crate::webrtc::session::WebrtcCamera>,
    api: Arc<Api>,
    peer: std::net::IpAddr,
) {
    use axum::extract::ws::Message;
    let mut session = None;
    // go2rtc's clients (the WebRTC Camera card) ask for MSE and WebRTC on one socket at once and
    // keep whichever plays first: the socket carries both.
    let mut mse: Option<crate::mse::MseViewer> = None;
    loop {
        let next_fragment = async {
            match &mse {
                Some(viewer) => viewer.fragments.next().await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            fragment = next_fragment => {
                let Some(fragment) = fragment else {
                    tracing::info!(camera = %camera.camera, "MSE stream ended");
                    break;
                };
                if socket.send(Message::Binary(fragment)).await.is_err() {
                    break;
                }
                continue;
            }
            message = socket.recv() => message,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let request: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let value = request["value"].as_str().unwrap_or_default().to_string();
        let reply = match request["type"].as_str() {
            Some("webrtc/offer")
                if api
                    .offer_limit
                    .check(peer, &camera.camera, Instant::now())
                    .is_err() =>
            {
                serde_json::json!({"type": "error", "value": "too many offers; try again in a second"})
            }
            Some("webrtc/offer") => {
                let camera = camera.clone();
                match tokio::task::spawn_blocking(move || camera.answer(&value)).await {
                    Ok(Ok((answer, id))) => {
                        session = Some(id);
                        serde_json::json!({"type": "webrtc/answer", "value": answer})
                    }
                    Ok(Err(e)) => serde_json::json!({"type": "error", "value": e.to_string()}),
                    Err(e) => serde_json::json!({"type": "error", "value": e.to_string()}),
                }
            }
            Some("webrtc/candidate") => {
                if let Some(id) = session {
                    camera.add_candidate(id, &value);
                }
                continue;
            }
            Some("mse") if mse.is_none() => {
                match super::mse::open(&api, &camera.camera, &value, peer).await {
                    Ok(viewer) => {
                        let reply = serde_json::json!({"type": "mse", "value": viewer.mime});
                        mse = Some(viewer);
                        reply
                    }
                    Err(message) => serde_json::json!({"type": "error", "value": message}),
                }
            }
            other => serde_json::json!({
                "type": "error",
                "value": format!("unsupported message type {other:?}; this server speaks webrtc/offer, webrtc/candidate and mse"),
            }),
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    if let Some(viewer) = mse {
        super::mse::left(&camera.camera, viewer);
    }
    if let Some(id) = session {
        let _ = tokio::task::spawn_blocking(move || camera.close(id)).await;
    }
}
