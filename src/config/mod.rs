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

mod camera;
mod mqtt;
mod server;
mod webrtc;

pub use camera::*;
use camera::{RawCamera, camera};
use mqtt::check_mqtt;
pub use mqtt::*;
use server::check_server;
pub use server::*;
pub use webrtc::*;
use webrtc::{RawWebrtc, webrtc};

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
    /// `default_data_dir` is where settings go when the file names no `data_dir` (the caller
    /// knows the environment; parsing does not read it).
    pub fn load(path: &Path, default_data_dir: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                field: path.display().to_string(),
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        Config::parse(&text, default_data_dir)
    }

    /// Parses YAML (JSON is YAML too, so `options.json` goes through here as well).
    pub fn parse(text: &str, default_data_dir: &Path) -> Result<Config, Problems> {
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
            None | Some(serde_yaml::Value::Null) => default_data_dir.to_path_buf(),
            Some(serde_yaml::Value::String(dir)) if !dir.trim().is_empty() => PathBuf::from(dir),
            Some(_) => {
                problems.push(Problem {
                    field: "data_dir".into(),
                    message: "must be a directory path".into(),
                });
                default_data_dir.to_path_buf()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Problems> {
        Config::parse(text, Path::new("/var/lib/ipcam-test"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config =
            parse("cameras:\n  - id: nursery\n    url: rtsp://10.0.0.5:554/h264\n").unwrap();
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
            parse("cameras:\n  - id: a\n    url: rtsp://admin:p%40ss@cam.example/h264\n").unwrap();
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
        let problems = parse(text).unwrap_err().0;
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
        let config = parse(
            "cameras:\n  - id: a\n    url: rtsp://admin:pw@cam/x\n    snapshot_url: http://cam/snap.jpg\n",
        )
        .unwrap();
        let still = config.cameras[0].snapshot.url.as_ref().unwrap();
        assert_eq!(still.url, "http://cam/snap.jpg");
        assert_eq!(still.username.as_deref(), Some("admin"));
        assert_eq!(config.cameras[0].snapshot.quality, DEFAULT_SNAPSHOT_QUALITY);

        let text = "rtsp: { port: 9000 }\nhttp: { port: 9000 }\ndata_dir: [1]\ncameras:\n  - id: a\n    url: rtsp://cam/x\n    snapshot_url: https://cam/snap.jpg\n    snapshot_width: 4\n    snapshot_quality: 0\n";
        let problems = parse(text).unwrap_err().0;
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
        let config = parse(
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
        let good = parse(
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

        let Err(Problems(problems)) = parse(
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
        let Err(Problems(problems)) = parse("webrtc:\n  candidates: [203.0.113.7]\ncameras: []\n")
        else {
            panic!("candidates without forwarded ports are refused");
        };
        assert!(problems[0].message.contains("udp_ports"), "{problems:?}");
    }
}
