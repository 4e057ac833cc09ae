//! The camera appears in a real Home Assistant (Core 2025.4.4, installed and onboarded by
//! `../shared/ha/real-ha.sh`) by MQTT discovery alone; its switch, snapshot camera, mode select,
//! interval number and button work from HA's own API; its Crying sensor follows a real cry and
//! leaves the device when cry detection is turned off.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

struct RealHa {
    url: String,
    token: String,
    mqtt_port: u16,
    pids: Vec<String>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// real-ha.sh works in one folder (/tmp/ha): one Home Assistant at a time.
static REAL_HA: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl RealHa {
    fn start() -> Option<RealHa> {
        let script = shared_file("ha/real-ha.sh")?;
        let one_at_a_time = REAL_HA.lock().unwrap_or_else(|e| e.into_inner());
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
            _one_at_a_time: one_at_a_time,
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

    /// What a Picture Glance card loads: the camera entity's image through HA's proxy.
    fn camera_image(&self, entity: &str) -> (u16, Vec<u8>) {
        http_get_with(
            &format!("{}/api/camera_proxy/{entity}", self.url),
            &["-H", &format!("Authorization: Bearer {}", self.token)],
        )
    }

    /// One command on HA's WebSocket API (the entity registry has no REST API).
    fn ws(&self, command: serde_json::Value) -> serde_json::Value {
        use tungstenite::Message;
        let url = format!("{}/api/websocket", self.url.replacen("http", "ws", 1));
        let (mut socket, _) = tungstenite::connect(url).unwrap();
        let _auth_required = socket.read().unwrap();
        let auth = serde_json::json!({"type": "auth", "access_token": self.token});
        socket.send(Message::Text(auth.to_string())).unwrap();
        let mut command = command;
        command["id"] = 1.into();
        socket.send(Message::Text(command.to_string())).unwrap();
        loop {
            if let Message::Text(text) = socket.read().unwrap() {
                let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == 1 {
                    return reply["result"].clone();
                }
            }
        }
    }

    fn call(&self, service: &str, body: &str) {
        self.api("POST", &format!("/api/services/{service}"), Some(body));
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
fn camera_appears_in_real_home_assistant_with_a_working_switch_and_snapshot_camera() {
    let Some(ha) = RealHa::start() else {
        return;
    };
    let camera = Camera::start(&[]);
    let cry =
        shared_file("models/yamnet.onnx").zip(shared_file("fixtures/media/cry_h264_pcma.mkv"));
    let crib = cry
        .as_ref()
        .map(|(_, media)| Camera::start(&["--file", media.to_str().unwrap(), "--audio", "pcma"]));
    let rtsp_port = free_port();
    let config_with_crib = |crib_yaml: &str| {
        let mut cameras = vec![("nursery", camera.url(), String::new())];
        if let Some(crib) = &crib {
            cameras.push(("crib", crib.url(), crib_yaml.to_string()));
        }
        let entries: Vec<(&str, &str, &str)> = cameras
            .iter()
            .map(|(id, url, yaml)| (*id, url.as_str(), yaml.as_str()))
            .collect();
        let mut yaml = config(ha.mqtt_port, rtsp_port, &entries);
        if let Some((model, _)) = &cry {
            yaml.push_str(&format!("cry_model: {}\n", model.display()));
        }
        yaml
    };
    let addon = AddOn::start(&config_with_crib("cry_detection: true\ncry_hold: 2"));
    if crib.is_some() {
        // The crib camera's file cries from 5 s to 10 s.
        wait_until(
            "HA's Crying sensor to turn on",
            Duration::from_secs(30),
            || ha.state("binary_sensor.camera_crib_crying")["state"] == "on",
        );
        let confidence = ha.state("sensor.camera_crib_cry_confidence");
        assert_eq!(
            confidence["attributes"]["unit_of_measurement"], "%",
            "{confidence}"
        );
        wait_until(
            "HA's Crying sensor to turn off",
            Duration::from_secs(15),
            || ha.state("binary_sensor.camera_crib_crying")["state"] == "off",
        );
    }
    wait_until("HA to create the entities", Duration::from_secs(20), || {
        ha.state("switch.camera_nursery_live_stream")["state"] == "off"
            && ha.state("sensor.camera_nursery_stream_status")["state"] == "inactive"
    });
    // Every discovered entity, as HA registered it: our name, one device, category and icon.
    let mqtt_config = ipcam_mqtt::config::MqttConfig {
        port: ha.mqtt_port,
        ..Default::default()
    };
    let discovery = serde_json::to_value(ipcam_mqtt::mqtt::discovery::device(
        &ipcam_mqtt::mqtt::topics::Topics::new(&mqtt_config),
        "nursery",
        "Camera nursery",
        ipcam_mqtt::mqtt::discovery::Features {
            cry_detection: false,
        },
    ))
    .unwrap();
    let registry = ha.ws(serde_json::json!({"type": "config/entity_registry/list"}));
    let mut devices = std::collections::BTreeSet::new();
    for component in discovery["components"].as_object().unwrap().values() {
        let Some(unique_id) = component["unique_id"].as_str() else {
            continue; // a component sent empty, to be removed
        };
        let entry = registry
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["unique_id"] == unique_id && e["platform"] == "mqtt")
            .unwrap_or_else(|| panic!("HA has no entity for {unique_id}"));
        devices.insert(entry["device_id"].as_str().unwrap().to_string());
        assert_eq!(
            entry["entity_category"], component["entity_category"],
            "{unique_id}: {entry}"
        );
        let state = ha.state(entry["entity_id"].as_str().unwrap());
        let name = component["name"].as_str().unwrap();
        assert_eq!(
            state["attributes"]["friendly_name"],
            format!("Camera nursery {name}"),
            "{state}"
        );
        if !component["icon"].is_null() {
            assert_eq!(state["attributes"]["icon"], component["icon"], "{state}");
        }
    }
    assert_eq!(devices.len(), 1, "every entity on the camera's one device");
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

    // Auto mode: the running stream gives the snapshot camera a picture for free.
    wait_until("a snapshot in HA", Duration::from_secs(15), || {
        ha.camera_image("camera.camera_nursery_snapshot").0 == 200
    });
    let (_, jpeg) = ha.camera_image("camera.camera_nursery_snapshot");
    assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
    ha.call(
        "select/select_option",
        r#"{"entity_id": "select.camera_nursery_snapshot_mode", "option": "Interval + Events"}"#,
    );
    ha.call(
        "number/set_value",
        r#"{"entity_id": "number.camera_nursery_snapshot_interval", "value": 30}"#,
    );
    wait_until(
        "HA to show the new mode and interval",
        Duration::from_secs(10),
        || {
            ha.state("select.camera_nursery_snapshot_mode")["state"] == "Interval + Events"
                && ha.state("number.camera_nursery_snapshot_interval")["state"] == "30"
        },
    );
    let before = ha.state("camera.camera_nursery_snapshot")["attributes"]["timestamp"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    ha.call(
        "button/press",
        r#"{"entity_id": "button.camera_nursery_take_snapshot"}"#,
    );
    wait_until(
        "the pressed snapshot in HA",
        Duration::from_secs(10),
        || {
            let attributes = &ha.state("camera.camera_nursery_snapshot")["attributes"];
            attributes["type"] == "on-demand" && attributes["timestamp"] != before
        },
    );

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

    if crib.is_some() {
        drop(addon);
        let _addon = AddOn::start(&config_with_crib(""));
        wait_until(
            "HA to remove the Crying and Cry confidence entities",
            Duration::from_secs(20),
            || {
                ha.state("binary_sensor.camera_crib_crying").is_null()
                    && ha.state("sensor.camera_crib_cry_confidence").is_null()
            },
        );
        assert!(!ha.state("switch.camera_crib_live_stream").is_null());
    }
}

/// As the add-on (a Supervisor token, here HA's own, and `HOMEASSISTANT_API` for the core proxy):
/// the live stream becomes a Generic camera entry once, survives restarts without a duplicate,
/// shows a still image through HA's camera proxy, and goes when its camera leaves the options.
#[test]
fn the_live_stream_becomes_a_home_assistant_camera_by_itself_once() {
    let Some(ha) = RealHa::start() else {
        return;
    };
    let camera = Camera::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let (rtsp_port, http_port) = (free_port(), free_port());
    let options = |cameras: &str| {
        format!(
            "mqtt:\n  host: 127.0.0.1\n  port: {}\nrtsp:\n  port: {rtsp_port}\n  public_host: 127.0.0.1\n\
             http:\n  port: {http_port}\n  public_host: 127.0.0.1\ndata_dir: {}\ncameras:\n{cameras}",
            ha.mqtt_port,
            data.path().display()
        )
    };
    let nursery = format!(
        "  - id: nursery\n    name: Nursery\n    url: {}\n",
        camera.url()
    );
    let api = format!("{}/api", ha.url);
    let env = [
        ("SUPERVISOR_TOKEN", ha.token.as_str()),
        ("HOMEASSISTANT_API", api.as_str()),
    ];
    let ours = || {
        ha.api(
            "GET",
            "/api/config/config_entries/entry?domain=generic",
            None,
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    };
    let in_step = |addon: &AddOn| {
        addon
            .logs()
            .contains("Home Assistant camera entries in step")
    };

    let addon = AddOn::start_with_env(&options(&nursery), &env);
    wait_until("the camera entity", Duration::from_secs(60), || {
        ha.state("camera.nursery_live")["attributes"]["friendly_name"] == "Nursery live"
    });
    let (status, jpeg) = ha.camera_image("camera.nursery_live");
    assert_eq!(
        status, 200,
        "HA fetched the still image with the generated credentials"
    );
    assert!(jpeg_size(&jpeg).is_ok());
    let entries = ours();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["title"], "Nursery (ipcam-mqtt)");
    assert!(
        !addon.logs().contains("credentials.json\n"),
        "no secret in the log"
    );
    let generated = std::fs::read_to_string(data.path().join("credentials.json")).unwrap();
    let password =
        serde_json::from_str::<serde_json::Value>(&generated).unwrap()["rtsp"]["password"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        !addon.logs().contains(&password),
        "the generated password is never logged"
    );
    drop(addon);

    let addon = AddOn::start_with_env(&options(&nursery), &env);
    wait_until("the entries checked again", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert_eq!(ours().len(), 1, "a restart makes no duplicate");
    drop(addon);

    // A changed stream URL replaces the entry.
    let moved = options(&nursery).replacen("public_host: 127.0.0.1", "public_host: localhost", 1);
    assert_ne!(moved, options(&nursery));
    let addon = AddOn::start_with_env(&moved, &env);
    wait_until("the entry replaced", Duration::from_secs(60), || {
        in_step(&addon)
    });
    let replaced = ours();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(replaced[0]["entry_id"], entries[0]["entry_id"]);
    assert!(ha.state("camera.nursery_live")["state"].is_string());
    drop(addon);

    let addon = AddOn::start_with_env(&options("  []\n"), &env);
    wait_until("the entry removed", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert!(ours().is_empty());
    wait_until("the camera entity gone", Duration::from_secs(10), || {
        ha.state("camera.nursery_live")["state"].is_null()
    });
    drop(addon);

    // Turned off, the option makes none.
    let addon = AddOn::start_with_env(&format!("{}ha_cameras: false\n", options(&nursery)), &env);
    wait_until("the entries checked", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert!(
        ours().is_empty(),
        "ha_cameras: false makes no camera entity"
    );
}
