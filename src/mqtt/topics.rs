//! The only place MQTT topics are built or taken apart.
//!
//! Layout: `<prefix>/<camera>/<entity>/{state,command,attributes}`, `<prefix>/<camera>/status`
//! (camera availability), `<prefix>/status` (bridge availability, the last will), and
//! `<discovery_prefix>/device/<node_id>_<camera>/config` for Home Assistant.

use crate::config::MqttConfig;

/// The entities each camera device has. Discovery and the publisher derive everything from this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    LiveStream,
    StreamStatus,
    Info,
    Snapshot,
    SnapshotMode,
    SnapshotInterval,
    TakeSnapshot,
    Crying,
    CryConfidence,
    CrySensitivity,
    Event,
    EventStream,
    Motion,
    RecordClip,
}

impl Entity {
    pub const ALL: [Entity; 14] = [
        Entity::LiveStream,
        Entity::StreamStatus,
        Entity::Info,
        Entity::Snapshot,
        Entity::SnapshotMode,
        Entity::SnapshotInterval,
        Entity::TakeSnapshot,
        Entity::Crying,
        Entity::CryConfidence,
        Entity::CrySensitivity,
        Entity::Event,
        Entity::EventStream,
        Entity::Motion,
        Entity::RecordClip,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Entity::LiveStream => "live_stream",
            Entity::StreamStatus => "stream_status",
            Entity::Info => "info",
            Entity::Snapshot => "snapshot",
            Entity::SnapshotMode => "snapshot_mode",
            Entity::SnapshotInterval => "snapshot_interval",
            Entity::TakeSnapshot => "take_snapshot",
            Entity::Crying => "crying",
            Entity::CryConfidence => "cry_confidence",
            Entity::CrySensitivity => "cry_sensitivity",
            Entity::Event => "event",
            Entity::EventStream => "event_stream",
            Entity::Motion => "motion",
            Entity::RecordClip => "record_clip",
        }
    }

    pub fn from_key(key: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.key() == key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    State,
    Command,
    Attributes,
    /// The JPEG of the snapshot camera.
    Image,
}

impl Leaf {
    fn as_str(self) -> &'static str {
        match self {
            Leaf::State => "state",
            Leaf::Command => "command",
            Leaf::Attributes => "attributes",
            Leaf::Image => "image",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    discovery_prefix: String,
    node_id: String,
}

impl Topics {
    pub fn new(mqtt: &MqttConfig) -> Self {
        Self {
            prefix: mqtt.topic_prefix().to_string(),
            discovery_prefix: mqtt.discovery_prefix.clone(),
            node_id: mqtt.node_id.clone(),
        }
    }

    /// The bridge's availability and last will.
    pub fn bridge_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.prefix)
    }

    pub fn entity(&self, camera: &str, entity: Entity, leaf: Leaf) -> String {
        format!(
            "{}/{camera}/{}/{}",
            self.prefix,
            entity.key(),
            leaf.as_str()
        )
    }

    /// Cry start and end events (not retained).
    pub fn cry_event(&self, camera: &str) -> String {
        format!("{}/{camera}/cry/event", self.prefix)
    }

    pub fn discovery(&self, camera: &str) -> String {
        format!(
            "{}/device/{}/config",
            self.discovery_prefix,
            self.device_id(camera)
        )
    }

    /// Stable across restarts and unique per `node_id`, so two instances never collide.
    pub fn device_id(&self, camera: &str) -> String {
        format!("{}_{camera}", self.node_id)
    }

    pub fn unique_id(&self, camera: &str, entity: Entity) -> String {
        format!("{}_{}", self.device_id(camera), entity.key())
    }

    /// Home Assistant's birth and will topic.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    pub fn command_filter(&self) -> String {
        format!("{}/+/+/command", self.prefix)
    }

    pub fn camera_status_filter(&self) -> String {
        format!("{}/+/status", self.prefix)
    }

    /// `<prefix>/<camera>/<entity>/command` → (camera, entity key). The entity may be unknown.
    pub fn parse_command<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(camera), Some(entity), Some("command"), None) => Some((camera, entity)),
            _ => None,
        }
    }

    /// `<prefix>/<camera>/status` → camera.
    pub fn parse_camera_status<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let camera = rest.strip_suffix("/status")?;
        (!camera.is_empty() && !camera.contains('/')).then_some(camera)
    }

    /// Every retained topic this add-on may have written for a camera: cleared when it leaves the config.
    pub fn retained_for(&self, camera: &str) -> Vec<String> {
        let mut topics = vec![self.discovery(camera), self.camera_status(camera)];
        for entity in Entity::ALL {
            topics.push(self.entity(camera, entity, Leaf::State));
            topics.push(self.entity(camera, entity, Leaf::Attributes));
        }
        topics.push(self.entity(camera, Entity::Snapshot, Leaf::Image));
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new(&MqttConfig::default())
    }

    #[test]
    fn layout_is_prefix_camera_entity_leaf() {
        let t = topics();
        assert_eq!(
            t.entity("nursery", Entity::LiveStream, Leaf::Command),
            "ipcam/nursery/live_stream/command"
        );
        assert_eq!(
            t.discovery("nursery"),
            "homeassistant/device/ipcam_nursery/config"
        );
        assert_eq!(t.bridge_status(), "ipcam/status");
        assert_eq!(t.cry_event("nursery"), "ipcam/nursery/cry/event");
        assert_eq!(
            t.entity("nursery", Entity::Snapshot, Leaf::Image),
            "ipcam/nursery/snapshot/image"
        );
    }

    #[test]
    fn commands_and_statuses_parse_back() {
        let t = topics();
        assert_eq!(
            t.parse_command("ipcam/nursery/live_stream/command"),
            Some(("nursery", "live_stream"))
        );
        assert_eq!(t.parse_command("ipcam/nursery/live_stream/state"), None);
        assert_eq!(t.parse_command("ipcamx/nursery/live_stream/command"), None);
        assert_eq!(
            t.parse_camera_status("ipcam/nursery/status"),
            Some("nursery")
        );
        assert_eq!(t.parse_camera_status("ipcam/status"), None);
    }

    #[test]
    fn node_id_separates_two_instances() {
        let garage = MqttConfig {
            node_id: "garage".into(),
            ..MqttConfig::default()
        };
        let t = Topics::new(&garage);
        assert_eq!(t.bridge_status(), "garage/status");
        assert_eq!(t.discovery("cam"), "homeassistant/device/garage_cam/config");
    }
}
