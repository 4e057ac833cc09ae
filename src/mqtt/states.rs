//! The retained state messages of a camera, computed purely from its [`CameraState`].

use super::discovery::{OFF, OFFLINE, ON, ONLINE};
use super::topics::{Entity, Leaf, Topics};
use crate::audio::task::{CryNotice, CryState};
use crate::camera::CameraState;
use crate::events::task::EventsState;
use crate::events::{Kind, Slot};
use crate::snapshot::SnapshotState;
use serde_json::json;
use std::time::SystemTime;

/// Where Home Assistant finds a camera's streams; the same for every message.
#[derive(Debug, Clone)]
pub struct CameraLinks {
    /// `rtsp://<host>:<port>/<camera>_live`, without credentials.
    pub stream_source: String,
    /// `http://<host>:<port>/api/still.jpeg?src=<camera>`, without credentials.
    pub still_image_url: String,
    /// `http://<host>:<port>/api/clips/<camera>/`: a clip is this plus `<event_id>.mp4`.
    pub clips_url: String,
    /// `rtsp://<host>:<port>/<camera>_event`, without credentials.
    pub event_source: String,
    /// The device page's link: the add-on's sidebar panel, or the viewer page outside one.
    pub configuration_url: String,
}

/// (topic, payload) pairs, all retained.
pub fn camera_states(
    topics: &Topics,
    camera: &str,
    links: &CameraLinks,
    state: &CameraState,
    cry: Option<&CryState>,
) -> Vec<(String, String)> {
    let info = &state.info;
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
        // A time, not an age: attributes that change on a timer fill the recorder.
        "streaming_since": state.streaming_since.map(rfc3339),
        "dropped_frames": state.dropped_frames,
        "held_by": held_by(state),
        "cry_detection": cry.map_or_else(|| "disabled".to_string(), |c| c.status.describe()),
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

/// Why the stream is up, in words: what keeps a camera connection open is never a mystery.
fn held_by(state: &CameraState) -> Vec<String> {
    let mut reasons = Vec::new();
    match state.rtsp_viewers {
        0 => {}
        1 => reasons.push("1 viewer".to_string()),
        n => reasons.push(format!("{n} viewers")),
    }
    match state.webrtc_viewers {
        0 => {}
        1 => reasons.push("1 WebRTC viewer".to_string()),
        n => reasons.push(format!("{n} WebRTC viewers")),
    }
    match state.mse_viewers {
        0 => {}
        1 => reasons.push("1 MSE viewer".to_string()),
        n => reasons.push(format!("{n} MSE viewers")),
    }
    if state.held {
        reasons.push("mqtt".into());
    }
    if state.held_by_cry_detection {
        reasons.push("cry detection".into());
    }
    reasons
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The Crying sensor, Cry confidence and Cry sensitivity; empty retained payloads when detection
/// is disabled, so nothing from an earlier run lingers.
pub fn cry_states(topics: &Topics, camera: &str, cry: Option<&CryState>) -> Vec<(String, String)> {
    let topic = |entity, leaf| topics.entity(camera, entity, leaf);
    let Some(cry) = cry else {
        return vec![
            (topic(Entity::Crying, Leaf::State), String::new()),
            (topic(Entity::Crying, Leaf::Attributes), String::new()),
            (topic(Entity::CryConfidence, Leaf::State), String::new()),
            (topic(Entity::CrySensitivity, Leaf::State), String::new()),
        ];
    };
    let attributes = json!({
        "status": cry.status.describe(),
        "last_started_at": cry.last_started_at.map(rfc3339),
        "last_ended_at": cry.last_ended_at.map(rfc3339),
    });
    let mut messages = vec![
        (
            topic(Entity::Crying, Leaf::State),
            if cry.crying { ON } else { OFF }.into(),
        ),
        (
            topic(Entity::Crying, Leaf::Attributes),
            attributes.to_string(),
        ),
        (
            topic(Entity::CrySensitivity, Leaf::State),
            cry.sensitivity.to_string(),
        ),
    ];
    if let Some(confidence) = cry.confidence {
        messages.push((
            topic(Entity::CryConfidence, Leaf::State),
            confidence.to_string(),
        ));
    }
    messages
}

/// The JSON of a cry event: `ended_at` and `duration_s` are null while the cry goes on.
pub fn cry_event(notice: &CryNotice) -> String {
    let duration_s = notice.ended_at.map(|end| {
        let seconds = end
            .duration_since(notice.started_at)
            .unwrap_or_default()
            .as_secs_f64();
        (seconds * 10.0).round() / 10.0
    });
    json!({
        "camera": notice.camera,
        "detection": "cry",
        "event": if notice.ended_at.is_some() { "end" } else { "start" },
        "confidence": (f64::from(notice.confidence) * 1000.0).round() / 1000.0,
        "started_at": rfc3339(notice.started_at),
        "ended_at": notice.ended_at.map(rfc3339),
        "duration_s": duration_s,
    })
    .to_string()
}

/// The Event select, the Event stream switch and the Motion sensor.
pub fn events_states(
    topics: &Topics,
    camera: &str,
    links: &CameraLinks,
    events: &EventsState,
) -> Vec<(String, String)> {
    let topic = |entity, leaf| topics.entity(camera, entity, leaf);
    let selected = events.selected.unwrap_or(Slot {
        kind: Kind::Cry,
        index: 1,
    });
    let clip = events.clip.as_ref();
    let attributes = json!({
        "event_id": clip.map(|c| c.event_id.clone()),
        "kind": clip.map(|c| c.kind),
        "started_at": clip.map(|c| rfc3339(c.started_at)),
        "duration_s": clip.and_then(|c| c.duration_s),
        "recording_url": clip.map(|c| format!("{}{}.mp4", links.clips_url, c.event_id)),
        "status": if clip.is_some() { "ok" } else { "no recording" },
        "recording": events.recording,
        "error": events.error,
    });
    let stream = json!({
        "stream_source": links.event_source,
        "playing": events.playing,
    });
    let on_off = |on: bool| if on { ON } else { OFF }.to_string();
    vec![
        (topic(Entity::Event, Leaf::State), selected.label()),
        (
            topic(Entity::Event, Leaf::Attributes),
            attributes.to_string(),
        ),
        (
            topic(Entity::EventStream, Leaf::State),
            on_off(events.playing > 0),
        ),
        (
            topic(Entity::EventStream, Leaf::Attributes),
            stream.to_string(),
        ),
        (topic(Entity::Motion, Leaf::State), on_off(events.motion)),
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
    fn cry_events_say_when_and_how_long() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut notice = CryNotice {
            camera: "nursery".into(),
            confidence: 0.91234,
            started_at: start,
            ended_at: None,
        };
        let started: serde_json::Value = serde_json::from_str(&cry_event(&notice)).unwrap();
        assert_eq!(started["event"], "start");
        assert_eq!(started["detection"], "cry");
        assert_eq!(started["confidence"], 0.912);
        assert_eq!(started["started_at"], "2027-01-15T08:00:00Z");
        assert!(started["ended_at"].is_null() && started["duration_s"].is_null());
        notice.ended_at = Some(start + Duration::from_millis(12_340));
        let ended: serde_json::Value = serde_json::from_str(&cry_event(&notice)).unwrap();
        assert_eq!(ended["event"], "end");
        assert_eq!(ended["duration_s"], 12.3);
        assert_eq!(ended["ended_at"], "2027-01-15T08:00:12Z");
    }

    #[test]
    fn disabled_cry_detection_clears_its_retained_states() {
        let topics = Topics::new(&MqttConfig::default());
        let cleared = cry_states(&topics, "nursery", None);
        assert_eq!(cleared.len(), 4);
        assert!(cleared.iter().all(|(_, payload)| payload.is_empty()));
    }

    #[test]
    fn info_attributes_carry_stream_source_and_the_start_time_not_an_age() {
        let topics = Topics::new(&MqttConfig::default());
        let links = CameraLinks {
            stream_source: "rtsp://hass.local:8554/nursery_live".into(),
            still_image_url: String::new(),
            clips_url: String::new(),
            event_source: String::new(),
            configuration_url: String::new(),
        };
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let state = CameraState {
            status: Status::Active,
            streaming_since: Some(start),
            rtsp_viewers: 2,
            ..CameraState::default()
        };
        let states = camera_states(&topics, "nursery", &links, &state, None);
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
        assert_eq!(attrs["streaming_since"], "2027-01-15T08:00:00Z");
        assert!(
            attrs.get("streaming_for_s").is_none(),
            "nothing moves on a timer"
        );
        assert_eq!(attrs["held_by"], json!(["2 viewers"]));
        assert_eq!(attrs["cry_detection"], "disabled");
        assert!(states.contains(&("ipcam/nursery/live_stream/state".into(), "ON".into())));
        assert!(states.contains(&("ipcam/nursery/status".into(), "online".into())));
    }
}
