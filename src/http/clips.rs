//! `GET /api/clips/<camera>/<event_id>.mp4`: downloads an event clip (the Event select's
//! `recording_url`). The clip is pinned while it is read, so retention cannot cut it off.

use super::{Api, plain};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// `/api/clips/<camera>/`: the prefix of a camera's clip URLs.
pub fn clips_path(camera: &str) -> String {
    format!("/api/clips/{camera}/")
}

pub async fn handler(
    State(api): State<Arc<Api>>,
    Path((camera, file)): Path<(String, String)>,
) -> Response {
    let Some(store) = api.clips.iter().find(|s| s.camera() == camera) else {
        return plain(StatusCode::NOT_FOUND, format!("no camera \"{camera}\""));
    };
    let Some(event_id) = file.strip_suffix(".mp4") else {
        return plain(StatusCode::NOT_FOUND, "clips are <event_id>.mp4");
    };
    if store.clip(event_id).is_none() {
        return plain(
            StatusCode::NOT_FOUND,
            format!("no clip \"{event_id}\" for {camera}"),
        );
    }
    let _pin = store.pin(event_id);
    match tokio::fs::read(store.path(event_id)).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "video/mp4".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{camera}-{event_id}.mp4\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the clip cannot be read: {e}"),
        ),
    }
}
