//! The camera appears in a real Home Assistant (Core 2025.4.4, installed and onboarded by
//! `../shared/ha/real-ha.sh`) by MQTT discovery alone, and its switch works from HA's own API.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

struct RealHa {
    url: String,
    token: String,
    mqtt_port: u16,
    pids: Vec<String>,
}

impl RealHa {
    fn start() -> Option<RealHa> {
        let script = shared_file("ha/real-ha.sh")?;
        let (ha_port, mqtt_port) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(&script)
            .env("KEEP", "1")
            .env("HA_PORT", ha_port.to_string())
            .env("MQTT_PORT", mqtt_port.to_string())
            .output()
            .expect("bash runs real-ha.sh");
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "real-ha.sh failed:\n{log}");
        let pids = log
            .lines()
            .find_map(|l| l.split("leaving pids ").nth(1))
            .map(|rest| {
                rest.trim_end_matches(" running")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let session: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string("/tmp/ha/probe-work/session.json").unwrap(),
        )
        .unwrap();
        Some(RealHa {
            url: format!("http://127.0.0.1:{ha_port}"),
            token: session["token"].as_str().unwrap().to_string(),
            mqtt_port,
            pids,
        })
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sf",
            "-X",
            method,
            "-H",
            &format!("Authorization: Bearer {}", self.token),
        ]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let out = cmd.arg(format!("{}{path}", self.url)).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn state(&self, entity: &str) -> serde_json::Value {
        self.api("GET", &format!("/api/states/{entity}"), None)
    }
}

impl Drop for RealHa {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

#[test]
fn camera_appears_in_real_home_assistant_and_its_switch_starts_the_stream() {
    let Some(ha) = RealHa::start() else {
        return;
    };
    let camera = Camera::start(&[]);
    let _addon = AddOn::start(&config(
        ha.mqtt_port,
        free_port(),
        &[("nursery", &camera.url(), "")],
    ));
    wait_until("HA to create the entities", Duration::from_secs(20), || {
        ha.state("switch.camera_nursery_live_stream")["state"] == "off"
            && ha.state("sensor.camera_nursery_stream_status")["state"] == "inactive"
    });
    let info = ha.state("sensor.camera_nursery_info");
    assert!(
        info["attributes"]["stream_source"]
            .as_str()
            .unwrap()
            .ends_with("/nursery_live"),
        "{info}"
    );

    ha.api(
        "POST",
        "/api/services/switch/turn_on",
        Some(r#"{"entity_id": "switch.camera_nursery_live_stream"}"#),
    );
    wait_until(
        "HA to show the stream active",
        Duration::from_secs(15),
        || {
            ha.state("sensor.camera_nursery_stream_status")["state"] == "active"
                && ha.state("switch.camera_nursery_live_stream")["state"] == "on"
        },
    );
    assert_eq!(
        ha.state("sensor.camera_nursery_info")["attributes"]["video_codec"],
        "H264"
    );
    assert_eq!(camera.connections(), 1);

    ha.api(
        "POST",
        "/api/services/switch/turn_off",
        Some(r#"{"entity_id": "switch.camera_nursery_live_stream"}"#),
    );
    wait_until(
        "HA to show the stream stopped",
        Duration::from_secs(15),
        || ha.state("sensor.camera_nursery_stream_status")["state"] == "inactive",
    );
}
