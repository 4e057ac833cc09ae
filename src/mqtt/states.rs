//! The retained state messages of a camera, computed purely from its [`CameraState`].

use super::discovery::{OFF, OFFLINE, ON, ONLINE};
use super::topics::{Entity, Leaf, Topics};
use crate::camera::CameraState;
use crate::snapshot::SnapshotState;
use serde_json::json;
use std::time::SystemTime;

/// Where Home Assistant finds a camera's streams; the same for every message.
#[derive(Debug, Clone)]
pub struct CameraLinks {
    /// `rtsp://<host>:<port>/<camera>_live`, without credentials.
    pub stream_source: String,
    /// `http://<host>:<port>/api/frame.jpeg?src=<camera>`, without credentials.
    pub still_image_url: String,
}

/// (topic, payload) pairs, all retained.
pub fn camera_states(
    topics: &Topics,
    camera: &str,
    links: &CameraLinks,
    state: &CameraState,
    now: SystemTime,
) -> Vec<(String, String)> {
    let info = &state.info;
    let streaming_for_s = state
        .streaming_since
        .and_then(|since| now.duration_since(since).ok())
        .map(|d| d.as_secs());
    let info_state = match (&info.video_codec, info.width, info.height) {
        (Some(codec), Some(w), Some(h)) => format!("{codec} {w}x{h}"),
        (Some(codec), _, _) => codec.clone(),
        _ => "unknown".into(),
    };
    let info_attributes = json!({
        "stream_source": links.stream_source,
        "still_image_url": links.still_image_url,
        "status": state.status.as_str(),
        "video_codec": info.video_codec,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "audio_codec_in": info.audio_codec_in,
        "audio_codec_out": info.audio_codec_out,
        "viewers": state.rtsp_viewers,
        "streaming_since": state.streaming_since.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "streaming_for_s": streaming_for_s,
        "dropped_frames": state.dropped_frames,
        "error": state.error,
    });
    let live_attributes = json!({
        "status": state.status.as_str(),
        "viewers": state.rtsp_viewers,
        "held_by_mqtt": state.held,
        "error": state.error,
    });
    vec![
        (
            topics.camera_status(camera),
            if state.available { ONLINE } else { OFFLINE }.into(),
        ),
        (
            topics.entity(camera, Entity::LiveStream, Leaf::State),
            if state.live() { ON } else { OFF }.into(),
        ),
        (
            topics.entity(camera, Entity::LiveStream, Leaf::Attributes),
            live_attributes.to_string(),
        ),
        (
            topics.entity(camera, Entity::StreamStatus, Leaf::State),
            state.status.as_str().into(),
        ),
        (topics.entity(camera, Entity::Info, Leaf::State), info_state),
        (
            topics.entity(camera, Entity::Info, Leaf::Attributes),
            info_attributes.to_string(),
        ),
    ]
}

/// The snapshot camera's retained messages: the JPEG, its attributes, the mode and the interval.
///
/// Nothing about the image is published before this run has one or has failed to make one,
/// so the image retained from the last run keeps its own attributes.
pub fn snapshot_states(
    topics: &Topics,
    camera: &str,
    state: &SnapshotState,
) -> Vec<(String, bytes::Bytes)> {
    let topic = |entity, leaf| topics.entity(camera, entity, leaf);
    let mut messages = vec![
        (
            topic(Entity::SnapshotMode, Leaf::State),
            state.settings.snapshot_mode.label().into(),
        ),
        (
            topic(Entity::SnapshotInterval, Leaf::State),
            state.settings.snapshot_interval_s.to_string().into(),
        ),
    ];
    if let Some((image, _)) = &state.image {
        messages.push((topic(Entity::Snapshot, Leaf::Image), image.jpeg.clone()));
    }
    if state.image.is_some() || state.error.is_some() {
        let image = state.image.as_ref();
        let attributes = json!({
            "timestamp": image.map(|(i, _)| humantime::format_rfc3339_seconds(i.taken_at).to_string()),
            "type": image.map(|(_, kind)| kind),
            "width": image.map(|(i, _)| i.width),
            "height": image.map(|(i, _)| i.height),
            "source": image.map(|(i, _)| i.source),
            "error": state.error,
        });
        messages.push((
            topic(Entity::Snapshot, Leaf::Attributes),
            attributes.to_string().into(),
        ));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::state::Status;
    use crate::config::MqttConfig;
    use crate::snapshot::policy::Kind;
    use crate::snapshot::{Snapshot, Source};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_snapshot_failure_keeps_the_image_and_says_why() {
        let topics = Topics::new(&MqttConfig::default());
        let mut state = SnapshotState {
            settings: Default::default(),
            image: None,
            error: None,
        };
        let before = snapshot_states(&topics, "nursery", &state);
        assert_eq!(before.len(), 2, "mode and interval only: {before:?}");
        state.image = Some((
            Arc::new(Snapshot {
                jpeg: bytes::Bytes::from_static(&[0xFF, 0xD8]),
                width: 640,
                height: 360,
                taken_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                source: Source::LiveStream,
            }),
            Kind::OnDemand,
        ));
        state.error = Some("camera unreachable".into());
        let after = snapshot_states(&topics, "nursery", &state);
        let attributes = &after
            .iter()
            .find(|(t, _)| t == "ipcam/nursery/snapshot/attributes")
            .unwrap()
            .1;
        let attributes: serde_json::Value = serde_json::from_slice(attributes).unwrap();
        assert_eq!(attributes["type"], "on-demand");
        assert_eq!(attributes["timestamp"], "2027-01-15T08:00:00Z");
        assert_eq!(attributes["error"], "camera unreachable");
        assert!(
            after
                .iter()
                .any(|(t, _)| t == "ipcam/nursery/snapshot/image")
        );
    }

    #[test]
    fn info_attributes_carry_stream_source_and_uptime() {
        let topics = Topics::new(&MqttConfig::default());
        let links = CameraLinks {
            stream_source: "rtsp://hass.local:8554/nursery_live".into(),
            still_image_url: String::new(),
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let state = CameraState {
            status: Status::Active,
            streaming_since: Some(start),
            rtsp_viewers: 2,
            ..CameraState::default()
        };
        let states = camera_states(
            &topics,
            "nursery",
            &links,
            &state,
            start + Duration::from_secs(90),
        );
        let (_, attrs) = states
            .iter()
            .find(|(t, _)| t == "ipcam/nursery/info/attributes")
            .unwrap();
        let attrs: serde_json::Value = serde_json::from_str(attrs).unwrap();
        assert_eq!(
            attrs["stream_source"],
            "rtsp://hass.local:8554/nursery_live"
        );
        assert_eq!(attrs["still_image_url"], "");
        assert_eq!(attrs["viewers"], 2);
        assert_eq!(attrs["streaming_for_s"], 90);
        assert!(states.contains(&("ipcam/nursery/live_stream/state".into(), "ON".into())));
        assert!(states.contains(&("ipcam/nursery/status".into(), "online".into())));
    }
}
