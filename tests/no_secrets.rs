//! No secret in any output: a full run with every kind of password set (camera, snapshot URL,
//! MQTT, RTSP and HTTP servers), a failing camera, viewers over RTSP and WebRTC, snapshots, MQTT
//! commands and API errors. Every log line, MQTT message and API answer is then searched for
//! each password. The RTSP password goes into MQTT's `stream_source` only when the user sets
//! `rtsp.credentials_in_mqtt`.
mod common;
use common::*;
use std::time::Duration;

const SECRETS: [&str; 6] = [
    "cam-Pa55word",
    "down-Pa55word",
    "snap-Pa55word",
    "mqtt-Pa55word",
    "rtsp-Pa55word",
    "http-Pa55word",
];

#[test]
fn no_password_appears_in_logs_mqtt_or_api_answers() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&["--username", "admin", "--password", SECRETS[0]]);
    let (rtsp_port, http_port) = (free_port(), free_port());
    let yaml = format!(
        "mqtt:\n  host: 127.0.0.1\n  port: {}\n  username: ipcam\n  password: {}\n\
         rtsp:\n  port: {rtsp_port}\n  username: viewer\n  password: {}\n\
         http:\n  port: {http_port}\n  username: viewer\n  password: {}\n\
         cameras:\n\
         \x20 - id: cam\n    url: {}\n    username: admin\n    password: {}\n\
         \x20   snapshot_url: http://127.0.0.1:9/cgi-bin/api.cgi?cmd=Snap&user=admin&password={}\n\
         \x20 - id: down\n    url: rtsp://admin:{}@127.0.0.1:9/stream\n",
        broker.port,
        SECRETS[3],
        SECRETS[4],
        SECRETS[5],
        camera.url(),
        SECRETS[0],
        SECRETS[2],
        SECRETS[1],
    );
    let addon = AddOn::start(&yaml);
    let mut answers = Vec::new();
    let http = |path: &str, auth: bool| {
        let url = format!("http://127.0.0.1:{http_port}{path}");
        let credentials = format!("viewer:{}", SECRETS[5]);
        let args: Vec<&str> = if auth {
            vec!["-u", &credentials]
        } else {
            vec![]
        };
        let (status, body) = http_get_with(&url, &args);
        format!("{path} {status} {}", String::from_utf8_lossy(&body))
    };
    // Viewers and commands that make the add-on talk: a viewer, a snapshot (its URL fails, so
    // it falls back to the stream), a dead camera, API errors, and MQTT commands.
    let live = format!(
        "rtsp://viewer:{}@127.0.0.1:{rtsp_port}/cam_live",
        SECRETS[4]
    );
    assert_eq!(ffprobe_codecs(&live, "tcp").unwrap().len(), 2);
    answers.push(
        http("/api/frame.jpeg?src=cam", true)
            .chars()
            .take(40)
            .collect(),
    );
    answers.push(http("/api/frame.jpeg?src=down", true));
    answers.push(http("/api/frame.jpeg?src=nope", true));
    answers.push(http("/api/streams", true));
    answers.push(http("/api", true));
    answers.push(http("/api/streams", false));
    broker.publish("ipcam/down/live_stream/command", "ON", false);
    broker.publish("ipcam/cam/take_snapshot/command", "PRESS", false);
    broker.publish("ipcam/cam/live_stream/command", "not a command", false);
    wait_until(
        "the dead camera's error on MQTT",
        Duration::from_secs(15),
        || {
            mqtt.messages()
                .iter()
                .any(|(t, p)| t == "ipcam/down/info/attributes" && p.contains("error"))
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    let logs = addon.logs();
    let messages: Vec<String> = mqtt
        .messages()
        .into_iter()
        .map(|(t, p)| format!("{t} {p}"))
        .collect();
    let info = mqtt.last("ipcam/cam/info/attributes").unwrap();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let live = url::Url::parse(info["stream_source"].as_str().unwrap()).unwrap();
    assert_eq!(
        (live.username(), live.password(), live.path()),
        ("", None, "/cam_live"),
        "no credentials in stream_source by default"
    );
    assert!(
        logs.lines().count() > 20 && messages.len() > 20,
        "a full run was seen"
    );
    for secret in SECRETS {
        for (what, text) in [
            ("log", logs.as_str()),
            ("MQTT", &messages.join("\n")),
            ("API", &answers.join("\n")),
        ] {
            assert!(
                !text.contains(secret),
                "{secret} appears in the {what}:\n{}",
                text.lines()
                    .filter(|l| l.contains(secret))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    eprintln!(
        "searched {} log lines, {} MQTT messages and {} API answers for {} passwords",
        logs.lines().count(),
        messages.len(),
        answers.len(),
        SECRETS.len()
    );
}

/// Shared on purpose: `rtsp.credentials_in_mqtt` puts the RTSP user and password into the
/// `stream_source` attributes, and that URL plays as given.
#[test]
fn credentials_in_mqtt_puts_the_rtsp_password_into_stream_source_on_request() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let rtsp_port = free_port();
    let yaml = config(broker.port, rtsp_port, &[("cam", &camera.url(), "")]).replacen(
        &format!("rtsp:\n  port: {rtsp_port}\n"),
        &format!(
            "rtsp:\n  port: {rtsp_port}\n  username: viewer\n  password: {}\n  credentials_in_mqtt: true\n",
            SECRETS[4]
        ),
        1,
    );
    let _addon = AddOn::start(&yaml);
    let info = mqtt.wait_for_json(
        "ipcam/cam/info/attributes",
        Duration::from_secs(10),
        |json| json["stream_source"].is_string(),
    );
    let mut live = url::Url::parse(info["stream_source"].as_str().unwrap()).unwrap();
    assert_eq!(
        (live.username(), live.password()),
        ("viewer", Some(SECRETS[4]))
    );
    // The host name is this machine's; the test plays it on loopback.
    live.set_host(Some("127.0.0.1")).unwrap();
    assert!(
        ffprobe_codecs(live.as_str(), "tcp").is_ok_and(|c| c.contains(&"h264".to_string())),
        "stream_source plays as given"
    );
}
