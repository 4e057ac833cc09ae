//! The add-on finds its MQTT broker through the Supervisor when its options name none. The real
//! Supervisor cannot run here: the server below is a STAND-IN that answers
//! `GET /services/mqtt` as the Supervisor documents it (and checks the bearer token).
mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves every request with `status` and `body`; records the Authorization header it saw.
fn supervisor_stand_in(
    status: &'static str,
    body: String,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if line.to_ascii_lowercase().starts_with("authorization:")
                    || line.starts_with("GET ")
                {
                    record.lock().unwrap().push(line.trim().to_string());
                }
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// Saved options that name no broker, as a user leaves them.
fn options_without_broker() -> serde_json::Value {
    serde_json::json!({
        "rtsp": {"port": free_port()},
        "http": {"port": free_port()},
        "cameras": [{"id": "cam", "url": "rtsp://127.0.0.1:9/stream"}],
    })
}

#[test]
fn the_broker_comes_from_the_supervisor_when_the_options_name_none() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    // The port as a string, as some Supervisor versions send it.
    let (url, seen) = supervisor_stand_in(
        "200 OK",
        format!(
            r#"{{"result":"ok","data":{{"host":"127.0.0.1","port":"{}","ssl":false,"protocol":"3.1.1","username":"addons","password":"broker-secret"}}}}"#,
            broker.port
        ),
    );
    let addon = AddOn::start_as_addon(
        &options_without_broker(),
        &[("SUPERVISOR_TOKEN", "test-token"), ("SUPERVISOR_URL", &url)],
    );
    mqtt.wait_for("ipcam/status", "online", Duration::from_secs(10));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&"GET /services/mqtt HTTP/1.1".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.eq_ignore_ascii_case("authorization: Bearer test-token")),
        "{seen:?}"
    );
    let logs = addon.logs();
    assert!(logs.contains("MQTT broker from the Supervisor"), "{logs}");
    assert!(
        !logs.contains("broker-secret"),
        "the broker password is never logged"
    );
}

#[test]
fn service_not_enabled_stops_the_add_on_with_a_clear_error() {
    let (url, _) = supervisor_stand_in(
        "400 Bad Request",
        r#"{"result":"error","message":"Service not enabled","data":{}}"#.into(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("options.json");
    let mut saved = options_without_broker();
    saved["media_dir"] = dir.path().join("media").to_str().unwrap().into();
    std::fs::write(&path, common::supervisor::options_json(&saved)).unwrap();
    let mut addon = Proc::spawn(
        std::process::Command::new(BIN)
            .args(["--config", path.to_str().unwrap()])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .env("SUPERVISOR_TOKEN", "test-token")
            .env("SUPERVISOR_URL", &url),
    );
    let status = addon
        .wait_exit(Duration::from_secs(10))
        .expect("the add-on stops");
    assert!(!status.success());
    let text = addon.output.text();
    assert!(text.contains("Service not enabled"), "{text}");
    assert!(text.contains("Mosquitto broker"), "{text}");
}
