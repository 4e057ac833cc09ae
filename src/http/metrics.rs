//! `GET /metrics`: the counters of [`crate::metrics`] for Prometheus, behind the API's
//! credentials like every other endpoint.

use super::Api;
use crate::metrics::{CameraSample, render};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let states: Vec<_> = api
        .streams
        .iter()
        .map(|camera| camera.state.borrow().clone())
        .collect();
    let cameras: Vec<CameraSample> = api
        .streams
        .iter()
        .zip(&states)
        .map(|(camera, state)| CameraSample {
            id: &camera.id,
            status: state.status,
            counters: &camera.counters,
            rtsp_viewers: state.rtsp_viewers,
            webrtc_viewers: state.webrtc_viewers,
            mse_viewers: state.mse_viewers,
        })
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&cameras, &api.logins),
    )
        .into_response()
}
