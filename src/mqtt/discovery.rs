//! Home Assistant MQTT device discovery, typed and built in one place.
//!
//! One retained message per camera at `homeassistant/device/<node_id>_<camera>/config` declares
//! the device and all its entities (HA 2024.11+ device-based discovery). The JSON is pinned by a
//! golden-file test.

use super::topics::{Entity, Leaf, Topics};
use crate::camera::state::Status;
use crate::events::Slot;
use crate::snapshot::policy::{self, Mode};
use serde::Serialize;
use std::collections::BTreeMap;

pub const ORIGIN_NAME: &str = "ipcam-mqtt";

#[derive(Debug, Serialize)]
pub struct DeviceDiscovery {
    pub device: Device,
    pub origin: Origin,
    pub availability: Vec<Availability>,
    pub components: BTreeMap<&'static str, Component>,
    pub qos: u8,
}

#[derive(Debug, Serialize)]
pub struct Device {
    pub identifiers: Vec<String>,
    pub name: String,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub sw_version: &'static str,
    /// The device page's link: the add-on's sidebar panel, or the viewer page outside one.
    pub configuration_url: String,
}

#[derive(Debug, Serialize)]
pub struct Origin {
    pub name: &'static str,
    pub sw_version: &'static str,
    pub support_url: &'static str,
}

pub const SUPPORT_URL: &str = "https://github.com/ipcam-mqtt/ipcam-mqtt";

#[derive(Debug, Serialize)]
pub struct Availability {
    pub topic: String,
    pub payload_available: &'static str,
    pub payload_not_available: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct Component {
    pub platform: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub unique_id: String,
    /// The image topic of a `camera`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_on: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_off: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_press: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_category: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'static str>,
}

pub const ONLINE: &str = "online";
pub const OFFLINE: &str = "offline";
pub const ON: &str = "ON";
pub const OFF: &str = "OFF";
pub const PRESS: &str = "PRESS";

/// What a camera's discovery depends on besides its id.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    pub cry_detection: bool,
    pub configuration_url: &'a str,
}

/// The discovery message for one camera.
pub fn device(topics: &Topics, camera: &str, name: &str, features: Features) -> DeviceDiscovery {
    let version = env!("CARGO_PKG_VERSION");
    let components = Entity::ALL
        .into_iter()
        .map(|entity| {
            let component = component(topics, camera, entity);
            let enabled = match entity {
                Entity::Crying | Entity::CryConfidence | Entity::CrySensitivity => {
                    features.cry_detection
                }
                _ => true,
            };
            // A component with only its platform is how HA removes one from a device.
            let component = if enabled {
                component
            } else {
                Component {
                    platform: component.platform,
                    ..Component::default()
                }
            };
            (entity.key(), component)
        })
        .collect();
    DeviceDiscovery {
        device: Device {
            identifiers: vec![topics.device_id(camera)],
            name: name.to_string(),
            manufacturer: ORIGIN_NAME,
            model: "RTSP camera",
            sw_version: version,
            configuration_url: features.configuration_url.to_string(),
        },
        origin: Origin {
            name: ORIGIN_NAME,
            sw_version: version,
            support_url: SUPPORT_URL,
        },
        // The bridge alone: a camera that is down or retrying keeps OFF, Take snapshot, Record
        // clip, the selects and its last snapshot usable, and its status entities say why.
        availability: vec![Availability {
            topic: topics.bridge_status(),
            payload_available: ONLINE,
            payload_not_available: OFFLINE,
        }],
        components,
        qos: 1,
    }
}

fn component(topics: &Topics, camera: &str, entity: Entity) -> Component {
    let topic = |leaf| Some(topics.entity(camera, entity, leaf));
    let base = Component {
        unique_id: topics.unique_id(camera, entity),
        state_topic: topic(Leaf::State),
        json_attributes_topic: topic(Leaf::Attributes),
        ..Component::default()
    };
    match entity {
        Entity::LiveStream => Component {
            platform: "switch",
            name: "Live stream",
            command_topic: topic(Leaf::Command),
            payload_on: Some(ON),
            payload_off: Some(OFF),
            icon: Some("mdi:cctv"),
            ..base
        },
        Entity::StreamStatus => Component {
            platform: "sensor",
            name: "Stream status",
            json_attributes_topic: None,
            device_class: Some("enum"),
            options: Some(Status::ALL.iter().map(|s| s.as_str().into()).collect()),
            entity_category: Some("diagnostic"),
            icon: Some("mdi:video-check"),
            ..base
        },
        Entity::Info => Component {
            platform: "sensor",
            name: "Info",
            entity_category: Some("diagnostic"),
            icon: Some("mdi:information-outline"),
            ..base
        },
        Entity::Snapshot => Component {
            platform: "camera",
            name: "Snapshot",
            topic: Some(topics.entity(camera, entity, Leaf::Image)),
            state_topic: None,
            ..base
        },
        Entity::SnapshotMode => Component {
            platform: "select",
            name: "Snapshot mode",
            command_topic: topic(Leaf::Command),
            json_attributes_topic: None,
            options: Some(Mode::ALL.iter().map(|m| m.label().into()).collect()),
            entity_category: Some("config"),
            icon: Some("mdi:camera-timer"),
            ..base
        },
        Entity::SnapshotInterval => Component {
            platform: "number",
            name: "Snapshot interval",
            command_topic: topic(Leaf::Command),
            json_attributes_topic: None,
            min: Some(policy::MIN_INTERVAL_S),
            max: Some(policy::MAX_INTERVAL_S),
            step: Some(1),
            mode: Some("box"),
            unit_of_measurement: Some("s"),
            device_class: Some("duration"),
            entity_category: Some("config"),
            icon: Some("mdi:timer-outline"),
            ..base
        },
        Entity::TakeSnapshot => Component {
            platform: "button",
            name: "Take snapshot",
            state_topic: None,
            json_attributes_topic: None,
            command_topic: topic(Leaf::Command),
            payload_press: Some(PRESS),
            icon: Some("mdi:camera"),
            ..base
        },
        Entity::Crying => Component {
            platform: "binary_sensor",
            name: "Crying",
            payload_on: Some(ON),
            payload_off: Some(OFF),
            device_class: Some("sound"),
            icon: Some("mdi:emoticon-cry-outline"),
            ..base
        },
        Entity::CryConfidence => Component {
            platform: "sensor",
            name: "Cry confidence",
            json_attributes_topic: None,
            unit_of_measurement: Some("%"),
            state_class: Some("measurement"),
            icon: Some("mdi:baby-face-outline"),
            ..base
        },
        Entity::CrySensitivity => Component {
            platform: "number",
            name: "Cry sensitivity",
            command_topic: topic(Leaf::Command),
            json_attributes_topic: None,
            min: Some(1),
            max: Some(99),
            step: Some(1),
            mode: Some("slider"),
            unit_of_measurement: Some("%"),
            entity_category: Some("config"),
            icon: Some("mdi:tune-vertical"),
            ..base
        },
        Entity::Event => Component {
            platform: "select",
            name: "Event",
            command_topic: topic(Leaf::Command),
            options: Some(Slot::all().into_iter().map(Slot::label).collect()),
            icon: Some("mdi:filmstrip-box-multiple"),
            ..base
        },
        Entity::EventStream => Component {
            platform: "switch",
            name: "Event stream",
            command_topic: topic(Leaf::Command),
            payload_on: Some(ON),
            payload_off: Some(OFF),
            icon: Some("mdi:play-box-outline"),
            ..base
        },
        Entity::Motion => Component {
            platform: "binary_sensor",
            name: "Motion",
            json_attributes_topic: None,
            payload_on: Some(ON),
            payload_off: Some(OFF),
            device_class: Some("motion"),
            ..base
        },
        Entity::RecordClip => Component {
            platform: "button",
            name: "Record clip",
            state_topic: None,
            json_attributes_topic: None,
            command_topic: topic(Leaf::Command),
            payload_press: Some(PRESS),
            icon: Some("mdi:record-rec"),
            ..base
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttConfig;

    #[test]
    fn cry_entities_are_removed_from_the_device_when_detection_is_off() {
        let topics = Topics::new(&MqttConfig::default());
        let off = device(
            &topics,
            "nursery",
            "Nursery",
            Features {
                cry_detection: false,
                configuration_url: "homeassistant://hassio/ingress/local_ipcam_mqtt",
            },
        );
        let json = serde_json::to_value(&off).unwrap();
        // HA removes a device's component when it is sent with only its platform.
        assert_eq!(
            json["components"]["crying"],
            serde_json::json!({"platform": "binary_sensor"})
        );
        assert_eq!(
            json["components"]["cry_confidence"],
            serde_json::json!({"platform": "sensor"})
        );
        let on = device(
            &topics,
            "nursery",
            "Nursery",
            Features {
                cry_detection: true,
                configuration_url: "homeassistant://hassio/ingress/local_ipcam_mqtt",
            },
        );
        let json = serde_json::to_value(&on).unwrap();
        assert_eq!(json["components"]["crying"]["device_class"], "sound");
        assert_eq!(
            json["components"]["cry_confidence"]["unit_of_measurement"],
            "%"
        );
    }
}
