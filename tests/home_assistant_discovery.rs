//! Home Assistant finds each camera by MQTT device discovery, sees it again after HA restarts,
//! and forgets cameras that left the config.
mod common;
use common::*;
use std::time::Duration;

const DISCOVERY: &str = "homeassistant/device/ipcam_nursery/config";

/// With cry detection on, so the golden file pins its entities too. There is no model at the
/// default path, which only turns detection off.
fn nursery(broker: &Mosquitto, camera: &Camera) -> AddOn {
    AddOn::start(&config(
        broker.port,
        free_port(),
        &[("nursery", &camera.url(), "cry_detection: true")],
    ))
}

#[test]
fn discovery_json_matches_the_golden_file() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let _addon = nursery(&broker, &camera);
    wait_until("discovery", Duration::from_secs(10), || {
        mqtt.last(DISCOVERY).is_some()
    });
    let mut published: serde_json::Value =
        serde_json::from_str(&mqtt.last(DISCOVERY).unwrap()).unwrap();
    // Outside the add-on, the device page links to the viewer on this run's port.
    let viewer = &mut published["device"]["configuration_url"];
    assert!(
        viewer
            .as_str()
            .is_some_and(|u| u.starts_with("http://") && u.ends_with('/')),
        "{viewer}"
    );
    *viewer = "<viewer>".into();
    let golden_text = include_str!("fixtures/discovery_nursery.json")
        .replace("<version>", env!("CARGO_PKG_VERSION"));
    let golden: serde_json::Value = serde_json::from_str(&golden_text).unwrap();
    assert_eq!(
        published,
        golden,
        "published:\n{}",
        serde_json::to_string_pretty(&published).unwrap()
    );
}

#[test]
fn discovery_and_states_are_published_again_when_home_assistant_comes_online() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let _addon = nursery(&broker, &camera);
    wait_until("discovery", Duration::from_secs(10), || {
        mqtt.count(DISCOVERY) == 1
    });
    let states_before = mqtt.count("ipcam/nursery/stream_status/state");
    broker.publish("homeassistant/status", "online", false);
    wait_until("discovery again", Duration::from_secs(15), || {
        mqtt.count(DISCOVERY) == 2
    });
    wait_until("states again", Duration::from_secs(15), || {
        mqtt.count("ipcam/nursery/stream_status/state") > states_before
    });
    // HA going offline is not a reason to republish.
    broker.publish("homeassistant/status", "offline", false);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(mqtt.count(DISCOVERY), 2);
}

#[test]
fn a_camera_removed_from_the_config_leaves_no_retained_topics() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let rtsp_port = free_port();
    let data = tempfile::tempdir().unwrap();
    let data_dir = format!("data_dir: {}\n", data.path().display());
    let garage_clips = data.path().join("media/garage");
    {
        let _old = AddOn::start(
            &(config(
                broker.port,
                rtsp_port,
                &[
                    ("nursery", &camera.url(), ""),
                    ("garage", &camera.url(), ""),
                ],
            ) + &data_dir),
        );
        let mqtt = broker.watch();
        wait_until("garage discovery", Duration::from_secs(10), || {
            mqtt.last("homeassistant/device/ipcam_garage/config")
                .is_some()
                && mqtt.last("ipcam/garage/info/attributes").is_some()
        });
        // Its snapshot image is retained too, and must go with it.
        broker.publish("ipcam/garage/take_snapshot/command", "PRESS", false);
        wait_until("a garage snapshot", Duration::from_secs(15), || {
            mqtt.last("ipcam/garage/snapshot/image").is_some()
        });
    }
    assert!(
        garage_clips.is_dir(),
        "the garage's clip folder exists while configured"
    );
    let _new = AddOn::start(
        &(config(broker.port, rtsp_port, &[("nursery", &camera.url(), "")]) + &data_dir),
    );
    std::thread::sleep(Duration::from_secs(2));
    // A fresh subscriber sees only what is retained now.
    let retained = broker.watch();
    std::thread::sleep(Duration::from_secs(1));
    let topics: Vec<String> = retained.messages().into_iter().map(|(t, _)| t).collect();
    assert!(topics.iter().any(|t| t == DISCOVERY), "{topics:?}");
    let ghosts: Vec<&String> = topics.iter().filter(|t| t.contains("garage")).collect();
    assert!(
        ghosts.is_empty(),
        "retained leftovers of the removed camera: {ghosts:?}"
    );
    assert!(
        !garage_clips.exists(),
        "the removed camera's clip folder goes too"
    );
}

#[test]
fn bridge_availability_is_the_last_will_and_goes_offline_on_shutdown_and_on_a_crash() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let addon = nursery(&broker, &camera);
    mqtt.wait_for("ipcam/status", "online", Duration::from_secs(10));
    addon.proc.signal("TERM");
    mqtt.wait_for("ipcam/status", "offline", Duration::from_secs(15));
    let mut addon = addon;
    assert!(
        addon.proc.wait_exit(Duration::from_secs(5)).is_some(),
        "SIGTERM did not stop it within 5 s"
    );

    let crashing = nursery(&broker, &camera);
    mqtt.wait_for("ipcam/status", "online", Duration::from_secs(10));
    crashing.proc.signal("KILL");
    mqtt.wait_for("ipcam/status", "offline", Duration::from_secs(60));
}

#[test]
fn a_second_sigterm_exits_at_once_while_the_first_is_still_closing() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let mqtt = broker.watch();
    let mut addon = nursery(&broker, &camera);
    switch_on(&broker, &mqtt, "nursery");
    // A frozen camera and broker slow the clean shutdown (about 300 ms measured), and the
    // second signal comes well inside it: sooner, the two could be read as one.
    camera.signal("STOP");
    broker.signal("STOP");
    addon.proc.signal("TERM");
    std::thread::sleep(Duration::from_millis(100));
    let second = std::time::Instant::now();
    addon.proc.signal("TERM");
    let status = addon.proc.wait_exit(Duration::from_secs(1));
    camera.signal("CONT");
    broker.signal("CONT");
    let took = second.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "after {took:?}: {}",
        addon.logs()
    );
    assert!(addon.logs().contains("second signal: exiting now"));
}

#[test]
fn two_instances_with_different_node_ids_share_one_broker_without_collisions() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let _home = nursery(&broker, &camera);
    let cabin_config = config(broker.port, free_port(), &[("nursery", &camera.url(), "")])
        .replacen("mqtt:\n", "mqtt:\n  node_id: cabin\n", 1);
    let _cabin = AddOn::start(&cabin_config);
    wait_until("both devices", Duration::from_secs(10), || {
        mqtt.last(DISCOVERY).is_some()
            && mqtt
                .last("homeassistant/device/cabin_nursery/config")
                .is_some()
    });
    mqtt.wait_for(
        "cabin/nursery/stream_status/state",
        "inactive",
        Duration::from_secs(15),
    );
    mqtt.wait_for(
        "ipcam/nursery/stream_status/state",
        "inactive",
        Duration::from_secs(15),
    );
}
