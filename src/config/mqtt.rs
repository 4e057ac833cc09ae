//! `mqtt:`: the broker, its TLS, and the topics this instance uses.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `None`: the broker the Supervisor names (in the add-on), else localhost.
    pub host: Option<String>,
    /// `None`: 8883 with TLS, else 1883.
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Connect over TLS (MQTTS), checking the broker's certificate; never falls back to plain.
    pub tls: bool,
    /// The PEM certificate of the authority that signed the broker's (a home broker's own CA);
    /// `None`: the system's trusted authorities.
    pub ca_file: Option<PathBuf>,
    /// Distinguishes two instances on one broker; also the default topic prefix.
    pub node_id: String,
    /// Topic prefix for states and commands; defaults to `node_id`.
    pub prefix: Option<String>,
    pub discovery_prefix: String,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            node_id: "ipcam".into(),
            prefix: None,
            discovery_prefix: "homeassistant".into(),
        }
    }
}

impl MqttConfig {
    pub fn topic_prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.node_id)
    }

    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("localhost")
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 8883 } else { 1883 })
    }
}

pub(super) fn is_valid_topic_level(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(['+', '#', '\0'])
        && !text.starts_with('/')
        && !text.ends_with('/')
}

pub(super) fn check_mqtt(mqtt: &MqttConfig, problems: &mut Vec<Problem>) {
    let mut problem = |name: &str, message: String| {
        problems.push(Problem {
            field: format!("mqtt.{name}"),
            message,
        })
    };
    if mqtt.host.as_deref().is_some_and(|h| h.trim().is_empty()) {
        problem("host", "must not be empty".into());
    }
    if mqtt.port == Some(0) {
        problem("port", "must be 1 to 65535".into());
    }
    if mqtt.ca_file.is_some() && !mqtt.tls {
        problem(
            "ca_file",
            "is set but mqtt.tls is off: set tls: true to use it".into(),
        );
    }
    if mqtt.node_id.is_empty()
        || !mqtt
            .node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        problem(
            "node_id",
            format!(
                "\"{}\" is not valid: use letters, digits, _ and -",
                mqtt.node_id
            ),
        );
    }
    if let Some(prefix) = &mqtt.prefix {
        if !is_valid_topic_level(prefix) {
            problem(
                "prefix",
                format!("\"{prefix}\" is not a valid topic prefix"),
            );
        }
    }
    if !is_valid_topic_level(&mqtt.discovery_prefix) {
        problem(
            "discovery_prefix",
            format!("\"{}\" is not a valid topic prefix", mqtt.discovery_prefix),
        );
    }
    if mqtt.password.is_some() && mqtt.username.is_none() {
        problem("password", "is set without a username".into());
    }
}
