//! The command line: `check-config` lists every problem, and `demo` works with nothing else running.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn check_config_lists_every_problem_naming_the_field_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "mqtt:\n  port: 99999\ncameras:\n  - id: Nursery Cam\n    url: rtsp://admin:topsecret@10.0.0.5/h264\n    transport: quic\n  - id: ok\n    url: not a url\n    close_after: 5000\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in [
        "mqtt.port",
        "cameras[0].transport",
        "cameras[1].url",
        "cameras[1].close_after",
    ] {
        assert!(stderr.contains(field), "{field} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("topsecret"), "{stderr}");
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.yaml");
    std::fs::write(
        &path,
        "cameras:\n  - id: nursery\n    url: rtsp://admin:pw@10.0.0.5/h264\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 camera(s): nursery"));
}

#[test]
fn a_missing_config_file_says_so() {
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/cameras.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn demo_serves_a_synthetic_camera_and_publishes_it_on_its_own_broker() {
    let rtsp_port = free_port();
    let mqtt_port = free_port();
    let http_port = free_port();
    let demo = Proc::spawn(Command::new(BIN).args([
        "demo",
        "--rtsp-port",
        &rtsp_port.to_string(),
        "--http-port",
        &http_port.to_string(),
        "--mqtt-port",
        &mqtt_port.to_string(),
    ]));
    wait_until("the demo to start", Duration::from_secs(15), || {
        demo.output.count("ipcam-mqtt demo is running") > 0
            && std::net::TcpStream::connect(("127.0.0.1", rtsp_port)).is_ok()
    });
    let mqtt = MqttWatch::start(mqtt_port, &["ipcam/#", "homeassistant/#"]);
    let url = format!("rtsp://127.0.0.1:{rtsp_port}/demo_live");
    let mut codecs = ffprobe_codecs(&url, "tcp").unwrap();
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"]);
    wait_until("demo discovery", Duration::from_secs(15), || {
        mqtt.last("homeassistant/device/ipcam_demo/config")
            .is_some()
    });
    mqtt.wait_for(
        "ipcam/demo/stream_status/state",
        "active",
        Duration::from_secs(15),
    );
    let (status, jpeg) = http_get(&format!(
        "http://127.0.0.1:{http_port}/api/frame.jpeg?src=demo"
    ));
    assert_eq!(status, 200);
    assert_eq!(jpeg_size(&jpeg), Ok((640, 360)));
}
