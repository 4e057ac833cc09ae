//! `GET /metrics` as Prometheus reads it: the text is parsed by the Prometheus Python client's
//! own parser, and its counters follow a real camera through a viewer, a loss and a reconnect.
mod common;
use common::*;
use std::collections::HashMap;
use std::time::Duration;

/// Every sample of a Prometheus text exposition, keyed `name{label=value,...}` (labels sorted),
/// as `prometheus_client.parser` reads it; panics when it cannot.
fn prometheus_samples(text: &str) -> HashMap<String, f64> {
    let parse = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics (is prometheus_client installed? scripts/setup.sh installs it):\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metrics(addon: &AddOn) -> HashMap<String, f64> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/metrics", addon.http_port));
    assert_eq!(status, 200);
    prometheus_samples(&String::from_utf8_lossy(&body))
}

/// Asserts each `(key, value)` of `expected` in `samples`.
fn assert_samples(samples: &HashMap<String, f64>, expected: &[(&str, f64)]) {
    for (key, value) in expected {
        assert_eq!(sample(samples, key), *value, "{key}");
    }
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

#[test]
fn metrics_follow_a_camera_through_a_viewer_a_loss_and_a_reconnect() {
    let Rig {
        addon,
        mut camera,
        mqtt,
        broker,
    } = Rig::start(&["--gop", "25"], "");
    let idle = metrics(&addon);
    assert_samples(
        &idle,
        &[
            ("ipcam_camera_up{camera=cam}", 0.0),
            ("ipcam_camera_status{camera=cam,status=inactive}", 1.0),
            ("ipcam_camera_connects_total{camera=cam}", 0.0),
        ],
    );

    switch_on(&broker, &mqtt, "cam");
    let _viewer = counting_viewer(&addon.live_url("cam"), "0.5");
    wait_until("the viewer counted", Duration::from_secs(15), || {
        metrics(&addon).get("ipcam_camera_viewers{camera=cam,kind=rtsp}") == Some(&1.0)
    });
    let watching = metrics(&addon);
    assert_samples(
        &watching,
        &[
            ("ipcam_camera_up{camera=cam}", 1.0),
            ("ipcam_camera_connects_total{camera=cam}", 1.0),
            ("ipcam_camera_reconnects_total{camera=cam}", 0.0),
            ("ipcam_camera_viewers{camera=cam,kind=webrtc}", 0.0),
        ],
    );
    let bytes = sample(&watching, "ipcam_camera_received_bytes_total{camera=cam}");
    assert!(bytes > 0.0, "no bytes counted");
    wait_until("more bytes", Duration::from_secs(15), || {
        sample(
            &metrics(&addon),
            "ipcam_camera_received_bytes_total{camera=cam}",
        ) > bytes
    });

    camera.kill();
    mqtt.wait_for("ipcam/cam/status", "offline", Duration::from_secs(15));
    assert_eq!(sample(&metrics(&addon), "ipcam_camera_up{camera=cam}"), 0.0);
    camera.restore();
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "active",
        Duration::from_secs(20),
    );
    let back = metrics(&addon);
    assert_samples(
        &back,
        &[
            ("ipcam_camera_connects_total{camera=cam}", 2.0),
            ("ipcam_camera_reconnects_total{camera=cam}", 1.0),
            ("ipcam_camera_clip_failures_total{camera=cam}", 0.0),
            ("ipcam_login_failures_total{server=http}", 0.0),
        ],
    );
}

/// With credentials, `/metrics` needs them like every endpoint, and wrong passwords on both
/// servers are counted.
#[test]
fn metrics_need_credentials_and_count_wrong_passwords_on_both_servers() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let yaml = config(broker.port, free_port(), &[("cam", &camera.url(), "")])
        .replacen(
            "rtsp:\n",
            "rtsp:\n  username: viewer\n  password: s3cret-view\n",
            1,
        )
        .replacen(
            "http:\n",
            "http:\n  username: viewer\n  password: s3cret-http\n",
            1,
        );
    let addon = AddOn::start(&yaml);
    let url = format!("http://127.0.0.1:{}/metrics", addon.http_port);
    assert_eq!(http_get(&url).0, 401);
    assert_eq!(http_get_with(&url, &["-u", "viewer:wrong"]).0, 401);
    let wrong_rtsp = addon
        .live_url("cam")
        .replacen("rtsp://", "rtsp://viewer:wrong@", 1);
    assert!(
        ffprobe_codecs(&wrong_rtsp, "tcp")
            .unwrap_err()
            .contains("401")
    );
    let (status, body) = http_get_with(&url, &["-u", "viewer:s3cret-http"]);
    assert_eq!(status, 200);
    let samples = prometheus_samples(&String::from_utf8_lossy(&body));
    assert_eq!(
        sample(&samples, "ipcam_login_failures_total{server=http}"),
        1.0
    );
    assert!(sample(&samples, "ipcam_login_failures_total{server=rtsp}") >= 1.0);
    assert_eq!(
        sample(&samples, "ipcam_camera_connects_total{camera=cam}"),
        0.0
    );
}
