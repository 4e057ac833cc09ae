//! `GET /api/frame.jpeg?src=<camera>`: go2rtc's still-image endpoint, with its parameter names
//! (`width`/`w`, `height`/`h`) so tools built for go2rtc work, plus `cache=<duration>`.
//!
//! `GET /api/still.jpeg?src=<camera>`: what a dashboard polls (the camera entity's
//! `still_image_url`). It never holds an idle camera open; see [`policy::still`].

use super::{Api, plain};
use crate::snapshot::encode::Size;
use crate::snapshot::policy::{self, Still};
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// The largest side we scale to: 8K.
const MAX_SIDE: u32 = 7680;
const MAX_CACHE: Duration = Duration::from_secs(3600);
/// Dashboards that poll a streaming camera together share one encode.
const STILL_FRESHNESS: Duration = Duration::from_secs(2);
/// Shown before an idle camera has ever given a picture, instead of an error each poll.
const NO_PICTURE_YET: &[u8] = include_bytes!("../snapshot/assets/no-picture-yet.jpg");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRequest {
    pub camera: String,
    pub size: Size,
    /// Serve a snapshot made this recently instead of making a new one.
    pub max_age: Option<Duration>,
}

/// Parses the query string; unknown parameters are ignored, as go2rtc does.
pub fn parse_query(query: &str) -> Result<FrameRequest, String> {
    let mut camera = None;
    let mut size = Size::default();
    let mut max_age = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "src" => camera = Some(value.into_owned()),
            "width" | "w" => size.width = Some(side("width", &value)?),
            "height" | "h" => size.height = Some(side("height", &value)?),
            "cache" => {
                let age = humantime::parse_duration(&value)
                    .ok()
                    .filter(|age| *age <= MAX_CACHE)
                    .ok_or_else(|| {
                        format!(
                            "cache={} is not a duration such as 10s (at most 1h)",
                            crate::mqtt::command::shorten(&value, 20)
                        )
                    })?;
                max_age = Some(age);
            }
            _ => {}
        }
    }
    let camera = camera
        .filter(|c| !c.is_empty())
        .ok_or("the src parameter (a camera id) is missing")?;
    Ok(FrameRequest {
        camera,
        size,
        max_age,
    })
}

fn side(name: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|v| (16..=MAX_SIDE).contains(v))
        .ok_or_else(|| {
            format!(
                "{name}={} is not a whole number from 16 to {MAX_SIDE}",
                crate::mqtt::command::shorten(value, 20)
            )
        })
}

pub async fn handler(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let (request, snapshotter) = match admit(&api, peer, query) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let result = match request.max_age {
        Some(max_age) => snapshotter.capture_cached(request.size, max_age).await,
        None => snapshotter.capture(request.size).await,
    };
    answer(&request.camera, result.map(|s| s.jpeg))
}

pub async fn still_handler(
    State(api): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    let (request, snapshotter) = match admit(&api, peer, query) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let settings = api.settings.camera(&request.camera);
    let newest = snapshotter.newest();
    let age = newest.as_ref().and_then(|s| s.taken_at.elapsed().ok());
    let source = policy::still(
        settings.snapshot_mode,
        snapshotter.is_streaming(),
        age,
        settings.snapshot_interval_s,
    );
    let result = match (source, newest) {
        (Still::Fresh, _) => snapshotter
            .capture_cached(request.size, STILL_FRESHNESS)
            .await
            .map(|s| s.jpeg),
        (Still::Connect, _) => snapshotter.capture(request.size).await.map(|s| s.jpeg),
        (Still::Newest, Some(snapshot)) => Ok(snapshot.jpeg),
        (Still::Newest, None) => Ok(bytes::Bytes::from_static(NO_PICTURE_YET)),
    };
    answer(&request.camera, result)
}

/// The parsed request and its camera, within the client's rate limit.
#[allow(clippy::result_large_err)]
fn admit(
    api: &Api,
    peer: std::net::SocketAddr,
    query: Option<String>,
) -> Result<(FrameRequest, Arc<crate::snapshot::Snapshotter>), Response> {
    let request = parse_query(query.as_deref().unwrap_or(""))
        .map_err(|message| plain(StatusCode::BAD_REQUEST, message))?;
    let snapshotter = api
        .cameras
        .iter()
        .find(|s| s.camera == request.camera)
        .cloned()
        .ok_or_else(|| {
            plain(
                StatusCode::NOT_FOUND,
                format!(
                    "no camera with id \"{}\"",
                    crate::mqtt::command::shorten(&request.camera, 40)
                ),
            )
        })?;
    api.snapshot_limit
        .check(peer.ip(), &request.camera, std::time::Instant::now())
        .map_err(super::too_many)?;
    Ok((request, snapshotter))
}

fn answer(camera: &str, result: Result<bytes::Bytes, crate::error::Error>) -> Response {
    match result {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            jpeg,
        )
            .into_response(),
        Err(error) => super::error_response(&error.context(format_args!("camera {camera}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go2rtc_parameter_names_work() {
        let request = parse_query("src=nursery&w=320&cache=10s&hardware=vaapi").unwrap();
        assert_eq!(request.camera, "nursery");
        assert_eq!(
            request.size,
            Size {
                width: Some(320),
                height: None
            }
        );
        assert_eq!(request.max_age, Some(Duration::from_secs(10)));
        let request = parse_query("src=a&width=640&height=480").unwrap();
        assert_eq!(
            (request.size.width, request.size.height),
            (Some(640), Some(480))
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, names) in [
            ("", "src"),
            ("src=", "src"),
            ("src=a&w=0", "width=0"),
            ("src=a&height=tall", "height=tall"),
            ("src=a&w=99999", "width=99999"),
            ("src=a&cache=forever", "cache=forever"),
        ] {
            let error = parse_query(query).unwrap_err();
            assert!(error.contains(names), "{query}: {error}");
            assert!(!error.contains('\n'));
        }
    }
}
