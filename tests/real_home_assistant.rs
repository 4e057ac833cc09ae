//! The camera appears in a real Home Assistant (Core 2025.4.4 and 2026.2.3, each installed and
//! onboarded by `../shared/ha/real-ha.sh`) by MQTT discovery alone; its switch, snapshot camera,
//! mode select, interval number and button work from HA's own API; its Crying sensor follows a
//! real cry and leaves the device when cry detection is turned off. As the add-on, the live stream
//! becomes a Generic camera that HA's stream component plays, once, even after a reinstall.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// The Home Assistant releases the add-on must work with: the default of `real-ha.sh`, and the
/// newest this machine's Python runs (the Generic camera's flow changed shape in 2026.1).
#[derive(Debug, Clone, Copy)]
enum Release {
    Ha2025,
    Ha2026,
}

impl Release {
    fn version(self) -> &'static str {
        match self {
            Release::Ha2025 => "2025.4.4",
            Release::Ha2026 => "2026.2.3",
        }
    }

    /// One folder (and venv) per version, as `real-ha.sh` asks.
    fn base(self) -> &'static str {
        match self {
            Release::Ha2025 => "/tmp/ha",
            Release::Ha2026 => "/tmp/ha2026",
        }
    }
}

struct RealHa {
    release: Release,
    url: String,
    token: String,
    mqtt_port: u16,
    pids: Vec<String>,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// Two Home Assistants at once are too much for two cores: one at a time.
static REAL_HA: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl RealHa {
    fn start(release: Release) -> Option<RealHa> {
        let script = shared_file("ha/real-ha.sh")?;
        let one_at_a_time = REAL_HA.lock().unwrap_or_else(|e| e.into_inner());
        let (ha_port, mqtt_port) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(&script)
            .env("KEEP", "1")
            .env("HA_VERSION", release.version())
            .env("BASE", release.base())
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
            &std::fs::read_to_string(format!("{}/probe-work/session.json", release.base()))
                .unwrap(),
        )
        .unwrap();
        Some(RealHa {
            release,
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

    /// Home Assistant's own log, for what it warns about our discovery.
    fn log(&self) -> String {
        std::fs::read_to_string(format!(
            "{}/probe-config/home-assistant.log",
            self.release.base()
        ))
        .unwrap_or_default()
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
fn camera_appears_in_home_assistant_2025_with_a_working_switch_and_snapshot_camera() {
    camera_appears_with_a_working_switch_and_snapshot_camera(Release::Ha2025);
}

#[test]
fn camera_appears_in_home_assistant_2026_with_a_working_switch_and_snapshot_camera() {
    camera_appears_with_a_working_switch_and_snapshot_camera(Release::Ha2026);
}

fn camera_appears_with_a_working_switch_and_snapshot_camera(release: Release) {
    let Some(ha) = RealHa::start(release) else {
        return;
    };
    let mut camera = Camera::start(&[]);
    let camera_url = camera.url();
    let cry = Some(cry_model()).zip(shared_file("fixtures/media/cry_h264_pcma.mkv"));
    let crib = cry
        .as_ref()
        .map(|(_, media)| Camera::start(&["--file", media.to_str().unwrap(), "--audio", "pcma"]));
    let rtsp_port = free_port();
    let config_with_crib = |crib_yaml: &str| {
        let mut cameras = vec![("nursery", camera_url.clone(), String::new())];
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
        port: Some(ha.mqtt_port),
        ..Default::default()
    };
    let discovery = serde_json::to_value(ipcam_mqtt::mqtt::discovery::device(
        &ipcam_mqtt::mqtt::topics::Topics::new(&mqtt_config),
        "nursery",
        "Camera nursery",
        ipcam_mqtt::mqtt::discovery::Features {
            cry_detection: false,
            configuration_url: "",
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
    let device_registry = ha.ws(serde_json::json!({"type": "config/device_registry/list"}));
    let device = device_registry
        .as_array()
        .unwrap()
        .iter()
        .find(|d| devices.contains(d["id"].as_str().unwrap_or("")))
        .unwrap();
    assert!(
        device["configuration_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://")),
        "the device page links to the viewer: {device}"
    );
    // Nothing we send is deprecated or refused in this release.
    let complaints: Vec<String> = ha
        .log()
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
        .filter(|l| l.contains("ipcam") || l.contains("camera_nursery"))
        .map(str::to_string)
        .collect();
    assert!(
        complaints.is_empty(),
        "Home Assistant {} complains:\n{}",
        release.version(),
        complaints.join("\n")
    );
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

    // A camera that fails keeps its controls: OFF, the button and the selects stay usable, and
    // the status entity says what is wrong.
    camera.kill();
    wait_until(
        "HA to show the camera's trouble",
        Duration::from_secs(20),
        || ha.state("sensor.camera_nursery_stream_status")["state"] != "active",
    );
    for entity in [
        "switch.camera_nursery_live_stream",
        "button.camera_nursery_take_snapshot",
        "button.camera_nursery_record_clip",
        "select.camera_nursery_snapshot_mode",
        "select.camera_nursery_event",
        "camera.camera_nursery_snapshot",
    ] {
        assert_ne!(
            ha.state(entity)["state"],
            "unavailable",
            "{entity} stays usable while the camera is down"
        );
    }
    assert_eq!(
        ha.camera_image("camera.camera_nursery_snapshot").0,
        200,
        "the last snapshot is still shown"
    );
    ha.api(
        "POST",
        "/api/services/switch/turn_off",
        Some(r#"{"entity_id": "switch.camera_nursery_live_stream"}"#),
    );
    camera.restore();
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

#[test]
fn the_live_stream_becomes_a_home_assistant_2025_camera_by_itself_once() {
    the_live_stream_becomes_a_home_assistant_camera_by_itself_once(Release::Ha2025);
}

#[test]
fn the_live_stream_becomes_a_home_assistant_2026_camera_by_itself_once() {
    the_live_stream_becomes_a_home_assistant_camera_by_itself_once(Release::Ha2026);
}

/// As the add-on (a Supervisor token, here HA's own, `HOMEASSISTANT_API` for the core proxy, and
/// the options.json the Supervisor writes): the live stream becomes a Generic camera entry once,
/// which HA's stream component plays; it survives restarts and a reinstall (`/data` wiped)
/// without a duplicate, follows a changed URL in place, shows a still image through HA's camera
/// proxy, and goes when its camera leaves the options.
fn the_live_stream_becomes_a_home_assistant_camera_by_itself_once(release: Release) {
    let Some(ha) = RealHa::start(release) else {
        return;
    };
    let camera = Camera::start(&[]);
    let (rtsp_port, http_port) = (free_port(), free_port());
    let options = |public_host: &str, cameras: serde_json::Value| {
        serde_json::json!({
            "mqtt": {"host": "127.0.0.1", "port": ha.mqtt_port},
            "rtsp": {"port": rtsp_port, "public_host": public_host},
            "http": {"port": http_port, "public_host": public_host},
            "cameras": cameras,
        })
    };
    let nursery = serde_json::json!([{"id": "nursery", "name": "Nursery", "url": camera.url()}]);
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

    let addon = AddOn::start_as_addon(&options("127.0.0.1", nursery.clone()), &env);
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
    // HA's stream component plays it: the HLS playlist HA makes from our RTSP stream.
    let stream =
        ha.ws(serde_json::json!({"type": "camera/stream", "entity_id": "camera.nursery_live"}));
    let hls = format!(
        "{}{}",
        ha.url,
        stream["url"].as_str().unwrap_or_else(|| panic!("{stream}"))
    );
    let codecs = ffprobe_codecs(&hls, "tcp").unwrap_or_else(|e| panic!("HA's HLS: {e}"));
    assert!(codecs.contains(&"h264".to_string()), "{codecs:?}");
    let generated =
        std::fs::read_to_string(addon.dir.path().join("data/credentials.json")).unwrap();
    let password =
        serde_json::from_str::<serde_json::Value>(&generated).unwrap()["rtsp"]["password"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        !addon.logs().contains(&password),
        "the generated password is never logged"
    );
    let dir = addon.stop();

    let addon = AddOn::start_as_addon_in(dir, &options("127.0.0.1", nursery.clone()), &env);
    wait_until("the entries checked again", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert_eq!(ours().len(), 1, "a restart makes no duplicate");
    let dir = addon.stop();

    // A changed stream URL changes the entry in place, through its options flow.
    let addon = AddOn::start_as_addon_in(dir, &options("localhost", nursery.clone()), &env);
    wait_until("the entry changed", Duration::from_secs(60), || {
        in_step(&addon)
    });
    let changed = ours();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        changed[0]["entry_id"], entries[0]["entry_id"],
        "changed in place"
    );
    let source = ha.ws(serde_json::json!({"type": "config_entries/get_single", "entry_id": changed[0]["entry_id"]}));
    assert!(
        ha.state("camera.nursery_live")["state"].is_string(),
        "{source}"
    );
    drop(addon);

    // A reinstall wipes /data: the entry is found by its mark and adopted, not made again.
    let addon = AddOn::start_as_addon(&options("127.0.0.1", nursery.clone()), &env);
    wait_until(
        "the entries checked after a reinstall",
        Duration::from_secs(60),
        || in_step(&addon),
    );
    let adopted = ours();
    assert_eq!(
        adopted.len(),
        1,
        "a reinstall makes no duplicate: {adopted:?}"
    );
    assert_eq!(adopted[0]["entry_id"], entries[0]["entry_id"]);
    assert!(addon.logs().contains("adopted its Home Assistant camera"));
    assert_eq!(ha.camera_image("camera.nursery_live").0, 200);
    let dir = addon.stop();

    let addon = AddOn::start_as_addon_in(dir, &options("127.0.0.1", serde_json::json!([])), &env);
    wait_until("the entry removed", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert!(ours().is_empty());
    wait_until("the camera entity gone", Duration::from_secs(10), || {
        ha.state("camera.nursery_live")["state"].is_null()
    });
    drop(addon);

    // Turned off, the option makes none.
    let mut off = options("127.0.0.1", nursery);
    off["ha_cameras"] = false.into();
    let addon = AddOn::start_as_addon(&off, &env);
    wait_until("the entries checked", Duration::from_secs(30), || {
        in_step(&addon)
    });
    assert!(
        ours().is_empty(),
        "ha_cameras: false makes no camera entity"
    );
}
