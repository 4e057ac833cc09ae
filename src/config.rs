//! The configuration: YAML for standalone use, the same shape as the add-on's `options.json`.
//!
//! [`Config::parse`] reports every problem it finds, each naming its field, instead of stopping
//! at the first: a user fixing a config file should need one round, not ten.

use crate::secret::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub mqtt: MqttConfig,
    /// The RTSP re-streaming server.
    pub rtsp: ServerConfig,
    /// The HTTP API (`/api/frame.jpeg`).
    pub http: ServerConfig,
    /// Where settings changed at run time (snapshot mode, interval) are kept across restarts.
    pub data_dir: PathBuf,
    /// The cry model (YAMNet with the cry head); `<data_dir>/yamnet-cry.onnx` unless set.
    pub cry_model: PathBuf,
    /// Event clips go to `<media_dir>/<camera>/`; `<data_dir>/media` unless set (the add-on
    /// passes `/media/ipcam-mqtt`).
    pub media_dir: PathBuf,
    pub webrtc: WebrtcConfig,
    /// Create a Generic camera entry in Home Assistant per camera (the add-on).
    pub ha_cameras: bool,
    pub cameras: Vec<CameraConfig>,
    /// The Supervisor's ingress port, from the command line; never from the file.
    pub ingress_port: Option<u16>,
    /// The add-on's slug, from the command line; never from the file.
    pub addon_slug: Option<String>,
}

/// The model file looked for when `cry_model` is not set.
pub const CRY_MODEL_FILE: &str = "yamnet-cry.onnx";

/// `/data` in the add-on (the Supervisor keeps and backs it up), else
/// `$XDG_DATA_HOME/ipcam-mqtt`, else `~/.local/share/ipcam-mqtt`, else `./ipcam-data`.
pub fn default_data_dir() -> PathBuf {
    if crate::ha::in_addon() {
        return PathBuf::from("/data");
    }
    let xdg = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty());
    match (xdg, home) {
        (Some(xdg), _) => PathBuf::from(xdg).join("ipcam-mqtt"),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/ipcam-mqtt"),
        (None, None) => PathBuf::from("ipcam-data"),
    }
}

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

/// A server we listen on (RTSP, HTTP): the same security rules for both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `None` means the server's default port (see [`ServerConfig::port`]).
    pub port: Option<u16>,
    /// Set by the section, not the user: 8554 for `rtsp`, 1984 for `http`.
    #[serde(skip)]
    pub default_port: u16,
    /// Address to listen on. Without credentials the default is loopback only (see [`ServerConfig::bind_address`]).
    pub bind: Option<IpAddr>,
    /// Host name that Home Assistant uses to reach this server, for `stream_source` and `still_image_url`.
    pub public_host: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Serve every interface without credentials; the user's explicit choice.
    pub allow_anonymous: bool,
    /// `rtsp` only: put the user and password into the `stream_source` attributes on MQTT,
    /// where every MQTT client, every Home Assistant user and the recorder can read them.
    pub credentials_in_mqtt: bool,
}

/// The RTSP re-streaming server's default port.
pub const RTSP_PORT: u16 = 8554;
/// The HTTP API's default port: go2rtc's, so tools built for it work.
pub const HTTP_PORT: u16 = 1984;

impl ServerConfig {
    pub fn rtsp() -> Self {
        Self::with_default_port(RTSP_PORT)
    }

    pub fn http() -> Self {
        Self::with_default_port(HTTP_PORT)
    }

    fn with_default_port(default_port: u16) -> Self {
        Self {
            default_port,
            ..Self::default()
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.default_port)
    }

    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        match (&self.username, &self.password) {
            (Some(user), Some(pass)) => Some((user.as_str(), pass)),
            _ => None,
        }
    }

    /// Security by default: a server without credentials listens on loopback only,
    /// unless the user set `bind` or `allow_anonymous` on purpose.
    pub fn bind_address(&self) -> IpAddr {
        match self.bind {
            Some(addr) => addr,
            None if self.credentials().is_some() || self.allow_anonymous => {
                IpAddr::from([0, 0, 0, 0])
            }
            None => IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// The host name in the URLs we hand out: as set, else the address we listen on, else (on
    /// every interface) this machine's host name, which in the add-on is the container's, the
    /// name Home Assistant reaches it by.
    pub fn public_host(&self) -> String {
        let bound = self.bind_address();
        match &self.public_host {
            Some(host) => host.clone(),
            None if bound.is_unspecified() => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into()),
            None => bound.to_string(),
        }
    }

    /// One line for the start-up log: who may connect.
    pub fn access_summary(&self, section: &str) -> String {
        if self.credentials().is_some() {
            "Digest auth required".into()
        } else if self.bind_address().is_loopback() {
            format!(
                "no credentials set, so loopback only; set {section}.username/password to serve the network"
            )
        } else {
            format!("anonymous access: {section}.allow_anonymous is set")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// When an H.265 camera is transcoded to H.264 for a WebRTC viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum H265ToH264 {
    /// Only for a viewer whose browser cannot take H.265, and only while one is watching.
    #[default]
    Auto,
    /// For every WebRTC viewer.
    Always,
    /// Never: a browser without H.265 gets a clear refusal.
    Never,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub id: String,
    pub name: String,
    /// The camera URL without credentials: safe to log.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub transport: Transport,
    pub h265_to_h264: H265ToH264,
    pub close_after: Duration,
    pub start_timeout: Duration,
    pub snapshot: SnapshotConfig,
    pub cry: CryConfig,
    pub clips: ClipConfig,
}

/// WebRTC's ICE servers, for viewing from outside the home network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebrtcConfig {
    /// `stun://host:port`.
    pub stun_server: Option<String>,
    /// `turn://user:password@host:port`: it carries a password.
    pub turn_servers: Vec<Secret>,
    /// Public addresses announced beside the host candidates (a forwarded router port).
    pub candidates: Vec<String>,
    /// The UDP ports ICE may use, so they can be forwarded; any port when unset.
    pub udp_ports: Option<(u16, u16)>,
}

/// `webrtc:` as written, in the browser's `RTCIceServer` shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWebrtc {
    ice_servers: Vec<RawIceServer>,
    /// For TURN URLs written as plain strings (the add-on's options cannot nest deeper).
    turn_username: Option<String>,
    turn_credential: Option<Secret>,
    candidates: Vec<String>,
    udp_ports: Option<String>,
}

/// An ICE server as the browser's `RTCIceServer`, or a bare URL.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawIceServer {
    Url(String),
    Server(IceServer),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IceServer {
    urls: Vec<String>,
    username: Option<String>,
    credential: Option<Secret>,
}

fn webrtc(raw: RawWebrtc, problems: &mut Vec<Problem>) -> WebrtcConfig {
    let mut config = WebrtcConfig::default();
    let servers = raw.ice_servers.into_iter().map(|server| match server {
        RawIceServer::Url(url) => IceServer {
            urls: vec![url],
            username: raw.turn_username.clone(),
            credential: raw.turn_credential.clone(),
        },
        RawIceServer::Server(server) => server,
    });
    for (i, server) in servers.enumerate() {
        for url in &server.urls {
            let field = format!("webrtc.ice_servers[{i}].urls");
            let mut problem = |message: String| {
                problems.push(Problem {
                    field: field.clone(),
                    message,
                })
            };
            let (scheme, address) = url.split_once(':').unwrap_or(("", url));
            let address = address.trim_start_matches("//");
            match scheme {
                "stun" if config.stun_server.is_none() => {
                    config.stun_server = Some(format!("stun://{address}"))
                }
                "stun" => problem(format!("{url}: only one STUN server is used; keep one")),
                "turn" | "turns" => match (&server.username, &server.credential) {
                    (Some(user), Some(credential)) => {
                        let enc = |s: &str| {
                            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                        };
                        config.turn_servers.push(Secret::new(format!(
                            "{scheme}://{}:{}@{}",
                            enc(user),
                            enc(credential.expose()),
                            address.split('?').next().unwrap_or(address)
                        )));
                    }
                    _ => problem(format!("{url} needs a username and a credential")),
                },
                _ => problem(format!("\"{url}\" is not a stun: or turn: URL")),
            }
        }
    }
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: format!("webrtc.{field}"),
            message,
        })
    };
    if let Some(text) = &raw.udp_ports {
        let range = text
            .split_once('-')
            .and_then(|(low, high)| Some((low.trim().parse().ok()?, high.trim().parse().ok()?)))
            .filter(|(low, high): &(u16, u16)| *low >= 1024 && low <= high);
        match range {
            Some(range) => config.udp_ports = Some(range),
            None => problem(
                "udp_ports",
                format!("\"{text}\" is not a port range like \"50000-50100\" (ports 1024-65535)"),
            ),
        }
    }
    for (i, candidate) in raw.candidates.iter().enumerate() {
        let host = candidate.trim();
        if host.is_empty()
            || host.contains([':', '/', ' ']) && host.parse::<std::net::IpAddr>().is_err()
        {
            problem(
                &format!("candidates[{i}]"),
                format!(
                    "\"{candidate}\" is not an address; write an IP or a host name, without a port"
                ),
            );
        } else {
            config.candidates.push(host.to_string());
        }
    }
    if !config.candidates.is_empty() && raw.udp_ports.is_none() {
        problem(
            "candidates",
            "needs webrtc.udp_ports: the ports to forward from the router to this host".into(),
        );
    }
    config
}

/// Event clips: how much before and after an event, and how many are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub pre_roll: Duration,
    pub post_roll: Duration,
    /// Clips kept per kind (cry, motion, manual); at least 5, so the Event select is full.
    pub keep: usize,
    pub max_age: Option<Duration>,
    pub max_disk_mb: Option<u64>,
}

pub const DEFAULT_PRE_ROLL: Duration = Duration::from_secs(5);
pub const DEFAULT_POST_ROLL: Duration = Duration::from_secs(10);
pub const DEFAULT_CLIPS_KEPT: usize = 5;

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            pre_roll: DEFAULT_PRE_ROLL,
            post_roll: DEFAULT_POST_ROLL,
            keep: DEFAULT_CLIPS_KEPT,
            max_age: None,
            max_disk_mb: None,
        }
    }
}

/// Cry detection on a camera's audio; see DOCS for how the defaults were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct CryConfig {
    pub enabled: bool,
    /// How readily a sound counts as crying, in percent (1 to 99): the detector's mean cry
    /// probability must reach `1 − sensitivity`. The "Cry sensitivity" entity changes it at run
    /// time (kept in the settings); this is its value until then.
    pub sensitivity: u8,
    /// How long the votes must go on before the sensor turns on.
    pub min_duration: Duration,
    /// How long the sensor stays on after the last crying patch.
    pub hold: Duration,
}

/// Chosen on the validation split's curve (`models/yamnet/README.md`).
pub const DEFAULT_CRY_SENSITIVITY: u8 = 50;
pub const DEFAULT_CRY_HOLD: Duration = Duration::from_secs(10);

impl Default for CryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            sensitivity: DEFAULT_CRY_SENSITIVITY,
            min_duration: Duration::ZERO,
            hold: DEFAULT_CRY_HOLD,
        }
    }
}

/// How a camera's still images are made.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotConfig {
    /// Output width; `None` keeps the camera's own. The height follows the aspect ratio.
    pub width: Option<u32>,
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// The camera's own still-image URL, used while the stream is idle.
    pub url: Option<SnapshotUrl>,
}

/// An HTTP still-image URL with its credentials split out, so the URL is safe to log.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotUrl {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

pub const DEFAULT_SNAPSHOT_QUALITY: u8 = 85;

/// The camera entry as written by the user, before credentials are split out of the URL.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    id: String,
    name: Option<String>,
    url: String,
    username: Option<String>,
    password: Option<Secret>,
    #[serde(default)]
    transport: Transport,
    #[serde(default)]
    h265_to_h264: H265ToH264,
    #[serde(default = "default_close_after")]
    close_after: f64,
    #[serde(default = "default_start_timeout")]
    start_timeout: f64,
    snapshot_url: Option<String>,
    snapshot_width: Option<u32>,
    #[serde(default = "default_snapshot_quality")]
    snapshot_quality: u8,
    #[serde(default)]
    cry_detection: bool,
    #[serde(default = "default_cry_sensitivity")]
    cry_sensitivity: f64,
    #[serde(default)]
    cry_min_duration: f64,
    #[serde(default = "default_cry_hold")]
    cry_hold: f64,
    #[serde(default = "default_pre_roll")]
    pre_roll: f64,
    #[serde(default = "default_post_roll")]
    post_roll: f64,
    #[serde(default = "default_clips_kept")]
    clips_kept: usize,
    clip_max_age: Option<String>,
    clip_max_disk_mb: Option<u64>,
}

fn default_pre_roll() -> f64 {
    DEFAULT_PRE_ROLL.as_secs_f64()
}

fn default_post_roll() -> f64 {
    DEFAULT_POST_ROLL.as_secs_f64()
}

fn default_clips_kept() -> usize {
    DEFAULT_CLIPS_KEPT
}

fn default_cry_sensitivity() -> f64 {
    f64::from(DEFAULT_CRY_SENSITIVITY)
}

fn default_cry_hold() -> f64 {
    DEFAULT_CRY_HOLD.as_secs_f64()
}

fn default_snapshot_quality() -> u8 {
    DEFAULT_SNAPSHOT_QUALITY
}

fn default_close_after() -> f64 {
    10.0
}

fn default_start_timeout() -> f64 {
    10.0
}

/// One problem in a config file, naming the field (`cameras[1].url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in a config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

const SECTIONS: [&str; 10] = [
    "mqtt",
    "rtsp",
    "http",
    "data_dir",
    "cry_model",
    "media_dir",
    "webrtc",
    "ha_cameras",
    "log_level",
    "cameras",
];

impl Config {
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                field: path.display().to_string(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Config::parse(&text)
    }

    /// Parses YAML (JSON is YAML too, so `options.json` goes through here as well).
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let root: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            Problems(vec![Problem {
                field: "(file)".into(),
                message: format!("not valid YAML: {e}"),
            }])
        })?;
        let mut problems = Vec::new();
        let empty = serde_yaml::Mapping::new();
        let map = match &root {
            serde_yaml::Value::Mapping(map) => map,
            serde_yaml::Value::Null => &empty,
            _ => {
                return Err(Problems(vec![Problem {
                    field: "(file)".into(),
                    message: "the top level must be a mapping with mqtt, rtsp and cameras".into(),
                }]));
            }
        };
        for key in map.keys() {
            let name = key.as_str().unwrap_or("?");
            if !SECTIONS.contains(&name) {
                problems.push(Problem {
                    field: name.into(),
                    message: format!("unknown section; expected one of {}", SECTIONS.join(", ")),
                });
            }
        }
        let mqtt: MqttConfig = section(map.get("mqtt"), "mqtt", &mut problems).unwrap_or_default();
        let server = |name: &str, problems: &mut Vec<Problem>, default_port| ServerConfig {
            default_port,
            ..section(map.get(name), name, problems).unwrap_or_default()
        };
        let rtsp = server("rtsp", &mut problems, RTSP_PORT);
        let http = server("http", &mut problems, HTTP_PORT);
        let data_dir = match map.get("data_dir") {
            None | Some(serde_yaml::Value::Null) => default_data_dir(),
            Some(serde_yaml::Value::String(dir)) if !dir.trim().is_empty() => PathBuf::from(dir),
            Some(_) => {
                problems.push(Problem {
                    field: "data_dir".into(),
                    message: "must be a directory path".into(),
                });
                default_data_dir()
            }
        };
        let cry_model = match map.get("cry_model") {
            None | Some(serde_yaml::Value::Null) => data_dir.join(CRY_MODEL_FILE),
            Some(serde_yaml::Value::String(path)) if !path.trim().is_empty() => PathBuf::from(path),
            Some(_) => {
                problems.push(Problem {
                    field: "cry_model".into(),
                    message: "must be the path of a YAMNet .onnx file".into(),
                });
                data_dir.join(CRY_MODEL_FILE)
            }
        };
        let media_dir = match map.get("media_dir") {
            None | Some(serde_yaml::Value::Null) => data_dir.join("media"),
            Some(serde_yaml::Value::String(path)) if !path.trim().is_empty() => PathBuf::from(path),
            Some(_) => {
                problems.push(Problem {
                    field: "media_dir".into(),
                    message: "must be a directory path".into(),
                });
                data_dir.join("media")
            }
        };
        let webrtc = section::<RawWebrtc>(map.get("webrtc"), "webrtc", &mut problems)
            .map(|raw| webrtc(raw, &mut problems))
            .unwrap_or_default();
        let ha_cameras = match map.get("ha_cameras") {
            None | Some(serde_yaml::Value::Null) => true,
            Some(serde_yaml::Value::Bool(on)) => *on,
            Some(_) => {
                problems.push(Problem {
                    field: "ha_cameras".into(),
                    message: "must be true or false".into(),
                });
                true
            }
        };
        // Read by the add-on's run script (`--log-level`); checked here so a typo is named.
        if let Some(level) = map.get("log_level")
            && !matches!(
                level.as_str(),
                Some("trace" | "debug" | "info" | "warn" | "error")
            )
        {
            problems.push(Problem {
                field: "log_level".into(),
                message: "must be one of trace, debug, info, warn, error".into(),
            });
        }
        let cameras = match map.get("cameras") {
            None | Some(serde_yaml::Value::Null) => Vec::new(),
            Some(serde_yaml::Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let field = format!("cameras[{i}]");
                    let raw: RawCamera = section(Some(item), &field, &mut problems)?;
                    camera(raw, &field, &mut problems).map(|c| (i, c))
                })
                .collect::<Vec<_>>(),
            Some(_) => {
                problems.push(Problem {
                    field: "cameras".into(),
                    message: "must be a list of cameras".into(),
                });
                Vec::new()
            }
        };
        check_mqtt(&mqtt, &mut problems);
        check_server(&rtsp, "rtsp", &mut problems);
        check_server(&http, "http", &mut problems);
        if rtsp.port() == http.port() {
            problems.push(Problem {
                field: "http.port".into(),
                message: format!("{} is the RTSP port too; pick another", http.port()),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, cam) in &cameras {
            if !seen.insert(cam.id.clone()) {
                problems.push(Problem {
                    field: format!("cameras[{i}].id"),
                    message: format!(
                        "\"{}\" is used by another camera; ids must be unique",
                        cam.id
                    ),
                });
            }
        }
        if problems.is_empty() {
            Ok(Config {
                mqtt,
                rtsp,
                http,
                data_dir,
                cry_model,
                media_dir,
                webrtc,
                ha_cameras,
                cameras: cameras.into_iter().map(|(_, c)| c).collect(),
                ingress_port: None,
                addon_slug: None,
            })
        } else {
            Err(Problems(problems))
        }
    }
}

fn section<T: DeserializeOwned>(
    value: Option<&serde_yaml::Value>,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let value = match value {
        None | Some(serde_yaml::Value::Null) => serde_yaml::Value::Mapping(Default::default()),
        Some(v) => v.clone(),
    };
    serde_path_to_error::deserialize(value)
        .map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                field.to_string()
            } else {
                format!("{field}.{path}")
            };
            problems.push(Problem {
                field,
                message: crate::secret::redact_urls(&e.into_inner().to_string()),
            });
        })
        .ok()
}

fn is_valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn camera(raw: RawCamera, field: &str, problems: &mut Vec<Problem>) -> Option<CameraConfig> {
    let before = problems.len();
    let mut problem = |name: &str, message: String| {
        problems.push(Problem {
            field: format!("{field}.{name}"),
            message,
        })
    };
    if !is_valid_id(&raw.id) {
        problem(
            "id",
            format!(
                "\"{}\" is not a valid id: use 1 to 32 of a-z, 0-9 and _ (it becomes part of topics and RTSP paths)",
                raw.id
            ),
        );
    }
    let mut username = raw.username.filter(|u| !u.is_empty());
    let mut password = raw.password.filter(|p| !p.is_empty());
    let url = match parse_url(&raw.url, &["rtsp", "rtsps"]) {
        Err(message) => {
            problem("url", message);
            None
        }
        Ok(credentialed) => {
            if credentialed.username.is_some() {
                if username.is_some() || password.is_some() {
                    problem(
                        "url",
                        "has credentials and username/password are set too; keep only one".into(),
                    );
                }
                username = credentialed.username;
                password = credentialed.password;
            }
            Some(credentialed.url)
        }
    };
    if password.is_some() && username.is_none() {
        problem("password", "is set without a username".into());
    }
    let close_after = seconds(raw.close_after, 0.0, 3600.0, "close_after", &mut problem);
    let start_timeout = seconds(raw.start_timeout, 1.0, 120.0, "start_timeout", &mut problem);
    let snapshot_url = raw
        .snapshot_url
        .filter(|u| !u.trim().is_empty())
        .and_then(|text| match parse_url(&text, &["http"]) {
            Ok(parsed) if parsed.username.is_some() => Some(parsed),
            // Most cameras take the same account for stills as for the stream.
            Ok(parsed) => Some(SnapshotUrl {
                username: username.clone(),
                password: password.clone(),
                ..parsed
            }),
            Err(message) => {
                problem("snapshot_url", message);
                None
            }
        });
    if let Some(width) = raw.snapshot_width {
        if !(16..=7680).contains(&width) {
            problem(
                "snapshot_width",
                format!(
                    "{width} is out of range; use 16 to 7680 pixels, or leave it out for the camera's own"
                ),
            );
        }
    }
    if !(1..=100).contains(&raw.snapshot_quality) {
        problem(
            "snapshot_quality",
            format!("{} is out of range; use 1 to 100", raw.snapshot_quality),
        );
    }
    let cry_sensitivity = if (1.0..=99.0).contains(&raw.cry_sensitivity)
        && raw.cry_sensitivity.fract() == 0.0
    {
        Some(raw.cry_sensitivity as u8)
    } else {
        problem(
            "cry_sensitivity",
            format!(
                "{} is not a whole percent from 1 to 99 (the default {DEFAULT_CRY_SENSITIVITY} suits most rooms)",
                raw.cry_sensitivity
            ),
        );
        None
    };
    let cry_min_duration = seconds(
        raw.cry_min_duration,
        0.0,
        60.0,
        "cry_min_duration",
        &mut problem,
    );
    let cry_hold = seconds(raw.cry_hold, 0.0, 3600.0, "cry_hold", &mut problem);
    let pre_roll = seconds(raw.pre_roll, 0.0, 30.0, "pre_roll", &mut problem);
    let post_roll = seconds(raw.post_roll, 0.0, 300.0, "post_roll", &mut problem);
    if !(DEFAULT_CLIPS_KEPT..=100).contains(&raw.clips_kept) {
        problem(
            "clips_kept",
            format!(
                "{} is out of range; use {DEFAULT_CLIPS_KEPT} to 100 (the Event select shows 5 per kind)",
                raw.clips_kept
            ),
        );
    }
    let clip_max_age = match raw.clip_max_age.as_deref().map(humantime::parse_duration) {
        None => Some(None),
        Some(Ok(age)) if age >= Duration::from_secs(60) => Some(Some(age)),
        Some(_) => {
            problem(
                "clip_max_age",
                format!(
                    "\"{}\" is not a duration of a minute or more, like \"7d\" or \"12h\"",
                    raw.clip_max_age.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };
    if raw.clip_max_disk_mb == Some(0) {
        problem(
            "clip_max_disk_mb",
            "must be at least 1 (or left out)".into(),
        );
    }
    if problems.len() > before {
        return None;
    }
    Some(CameraConfig {
        name: raw
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| raw.id.clone()),
        id: raw.id,
        url: url?,
        username,
        password,
        transport: raw.transport,
        h265_to_h264: raw.h265_to_h264,
        close_after: close_after?,
        start_timeout: start_timeout?,
        snapshot: SnapshotConfig {
            width: raw.snapshot_width,
            quality: raw.snapshot_quality,
            url: snapshot_url,
        },
        cry: CryConfig {
            enabled: raw.cry_detection,
            sensitivity: cry_sensitivity?,
            min_duration: cry_min_duration?,
            hold: cry_hold?,
        },
        clips: ClipConfig {
            pre_roll: pre_roll?,
            post_roll: post_roll?,
            keep: raw.clips_kept,
            max_age: clip_max_age?,
            max_disk_mb: raw.clip_max_disk_mb,
        },
    })
}

/// Checks a URL's scheme and host, and moves credentials written into it into their own
/// fields, so the URL is safe to log.
fn parse_url(text: &str, schemes: &[&str]) -> Result<SnapshotUrl, String> {
    let mut url = url::Url::parse(text)
        .map_err(|e| format!("\"{}\" is not a URL: {e}", crate::secret::redact_urls(text)))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "scheme \"{}\" is not supported; use {}://",
            url.scheme(),
            schemes[0]
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    let (mut username, mut password) = (None, None);
    if !url.username().is_empty() || url.password().is_some() {
        username = Some(decode(url.username()));
        password = url.password().map(|p| Secret::new(decode(p)));
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    Ok(SnapshotUrl {
        url: url.to_string(),
        username,
        password,
    })
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn seconds(
    value: f64,
    min: f64,
    max: f64,
    name: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<Duration> {
    if value.is_finite() && (min..=max).contains(&value) {
        Some(Duration::from_secs_f64(value))
    } else {
        problem(
            name,
            format!("{value} is out of range; use {min} to {max} seconds"),
        );
        None
    }
}

fn is_valid_topic_level(text: &str) -> bool {
    !text.is_empty()
        && !text.contains(['+', '#', '\0'])
        && !text.starts_with('/')
        && !text.ends_with('/')
}

fn check_mqtt(mqtt: &MqttConfig, problems: &mut Vec<Problem>) {
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

fn check_server(server: &ServerConfig, section: &str, problems: &mut Vec<Problem>) {
    if server.username.is_some() != server.password.is_some() {
        problems.push(Problem {
            field: format!("{section}.username"),
            message: "username and password must be set together".into(),
        });
    }
    if server.port == Some(0) {
        problems.push(Problem {
            field: format!("{section}.port"),
            message: "must be 1 to 65535".into(),
        });
    }
    if server.credentials_in_mqtt && section != "rtsp" {
        problems.push(Problem {
            field: format!("{section}.credentials_in_mqtt"),
            message: "only rtsp has stream URLs on MQTT".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let config =
            Config::parse("cameras:\n  - id: nursery\n    url: rtsp://10.0.0.5:554/h264\n")
                .unwrap();
        let cam = &config.cameras[0];
        assert_eq!(cam.name, "nursery");
        assert_eq!(cam.transport, Transport::Tcp);
        assert_eq!(cam.close_after, Duration::from_secs(10));
        assert_eq!(config.rtsp.port(), 8554);
        assert_eq!(config.http.port(), 1984);
        assert_eq!(config.mqtt.topic_prefix(), "ipcam");
        assert_eq!(config.rtsp.bind_address(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn credentials_in_the_url_move_out_of_it() {
        let config =
            Config::parse("cameras:\n  - id: a\n    url: rtsp://admin:p%40ss@cam.example/h264\n")
                .unwrap();
        let cam = &config.cameras[0];
        assert_eq!(cam.url, "rtsp://cam.example/h264");
        assert_eq!(cam.username.as_deref(), Some("admin"));
        assert_eq!(cam.password.as_ref().unwrap().expose(), "p@ss");
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let text = r#"
mqtt: { port: "abc" }
rtsp: { username: viewer }
extra: 1
cameras:
  - id: Bad-Id
    url: http://user:hunter2@cam.example/x
    close_after: -1
  - id: ok
    url: rtsp://cam/x
    transport: carrier-pigeon
  - id: dup
    url: rtsp://cam/1
  - id: dup
    url: rtsp://cam/2
"#;
        let problems = Config::parse(text).unwrap_err().0;
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "extra",
                "mqtt.port",
                "cameras[0].id",
                "cameras[0].url",
                "cameras[0].close_after",
                "cameras[1].transport",
                "rtsp.username",
                "cameras[3].id",
            ]
        );
        let all = Problems(problems).to_string();
        assert!(!all.contains("hunter2"), "{all}");
    }

    #[test]
    fn snapshot_options_are_checked_and_the_still_url_borrows_the_camera_account() {
        let config = Config::parse(
            "cameras:\n  - id: a\n    url: rtsp://admin:pw@cam/x\n    snapshot_url: http://cam/snap.jpg\n",
        )
        .unwrap();
        let still = config.cameras[0].snapshot.url.as_ref().unwrap();
        assert_eq!(still.url, "http://cam/snap.jpg");
        assert_eq!(still.username.as_deref(), Some("admin"));
        assert_eq!(config.cameras[0].snapshot.quality, DEFAULT_SNAPSHOT_QUALITY);

        let text = "rtsp: { port: 9000 }\nhttp: { port: 9000 }\ndata_dir: [1]\ncameras:\n  - id: a\n    url: rtsp://cam/x\n    snapshot_url: https://cam/snap.jpg\n    snapshot_width: 4\n    snapshot_quality: 0\n";
        let problems = Config::parse(text).unwrap_err().0;
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "data_dir",
                "cameras[0].snapshot_url",
                "cameras[0].snapshot_width",
                "cameras[0].snapshot_quality",
                "http.port",
            ]
        );
        assert!(
            problems[1].message.contains("use http://"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let config = Config::parse(
            "mqtt: { username: u, password: mqttpass }\ncameras:\n  - id: a\n    url: rtsp://cam/x\n    username: admin\n    password: campass\n",
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("mqttpass") && !debug.contains("campass"),
            "{debug}"
        );
    }

    #[test]
    fn webrtc_ice_options_are_checked_and_turn_credentials_stay_secret() {
        let good = Config::parse(
            "webrtc:\n  ice_servers:\n    - urls: [\"stun:stun.example:3478\", \"turn:turn.example:3478\"]\n      username: u\n      credential: turnpass\n  candidates: [203.0.113.7, home.example.org]\n  udp_ports: 50000-50100\ncameras:\n  - id: a\n    url: rtsp://cam/x\n    h265_to_h264: never\n",
        )
        .unwrap();
        assert_eq!(
            good.webrtc.stun_server.as_deref(),
            Some("stun://stun.example:3478")
        );
        assert_eq!(good.webrtc.candidates, ["203.0.113.7", "home.example.org"]);
        assert_eq!(good.webrtc.udp_ports, Some((50000, 50100)));
        assert_eq!(good.cameras[0].h265_to_h264, H265ToH264::Never);
        assert!(!format!("{good:?}").contains("turnpass"));

        let Err(Problems(problems)) = Config::parse(
            "webrtc:\n  candidates: [\"203.0.113.7:8555\"]\n  udp_ports: 9000-10\ncameras:\n  - id: a\n    url: rtsp://cam/x\n    h265_to_h264: sometimes\n",
        ) else {
            panic!("bad WebRTC options are refused");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webrtc.udp_ports",
                "webrtc.candidates[0]",
                "cameras[0].h265_to_h264"
            ],
            "{problems:?}"
        );
        let Err(Problems(problems)) =
            Config::parse("webrtc:\n  candidates: [203.0.113.7]\ncameras: []\n")
        else {
            panic!("candidates without forwarded ports are refused");
        };
        assert!(problems[0].message.contains("udp_ports"), "{problems:?}");
    }
}
