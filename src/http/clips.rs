//! `GET /api/clips/<camera>/<event_id>.mp4`: downloads an event clip (the Event select's
//! `recording_url`), streamed from its file with Range requests (players seek; a download
//! resumes), never read into memory. At most [`MAX_DOWNLOADS`] stream at once.

use super::{Api, plain};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// Clip downloads streaming at once: a few for a household; more would fill the uplink and the
/// disk's queue while cameras record.
pub const MAX_DOWNLOADS: usize = 4;

/// `/api/clips/<camera>/`: the prefix of a camera's clip URLs.
pub fn clips_path(camera: &str) -> String {
    format!("/api/clips/{camera}/")
}

pub fn downloads() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_DOWNLOADS))
}

pub async fn handler(
    State(api): State<Arc<Api>>,
    Path((camera, file)): Path<(String, String)>,
    request: Request,
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
    let Ok(permit) = api.downloads.clone().try_acquire_owned() else {
        let mut response = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_DOWNLOADS} clips are downloading already; try again in a moment"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    // Pinned until the file is open: a clip retention deletes afterwards still reads to the end.
    let _pin = store.pin(event_id);
    let served = tower_http::services::ServeFile::new_with_mime(
        store.path(event_id),
        &"video/mp4".parse().expect("a valid MIME type"),
    )
    .oneshot(request)
    .await;
    let Ok(response) = served;
    if response.status().is_server_error() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the clip cannot be read");
    }
    let (mut parts, body) = response.into_parts();
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{camera}-{event_id}.mp4\""))
    {
        parts
            .headers
            .insert(header::CONTENT_DISPOSITION, disposition);
    }
    let body = Body::new(Permitted {
        body: Body::new(body),
        _permit: permit,
    });
    Response::from_parts(parts, body).into_response()
}

/// A response body that holds a download's place until it is sent or dropped.
struct Permitted {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Permitted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
