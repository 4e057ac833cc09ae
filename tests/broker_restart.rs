//! The broker goes away for 30 s and comes back empty (no persistence, as after a Mosquitto
//! add-on update): the add-on reconnects with backoff and, within 5 s of the broker's return,
//! has republished its availability, discovery and retained states; commands work again; and
//! when the add-on is killed, its last will marks it offline.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn after_a_broker_restart_everything_is_republished_and_commands_work() {
    let broker = Mosquitto::start();
    let port = broker.port;
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let addon = AddOn::start(&config(port, free_port(), &[("cam", &camera.url(), "")]));
    mqtt.wait_for("ipcam/status", "online", Duration::from_secs(10));
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "inactive",
        Duration::from_secs(10),
    );
    let discovery_topic = mqtt
        .messages()
        .into_iter()
        .map(|(t, _)| t)
        .find(|t| t.starts_with("homeassistant/device/"))
        .expect("discovery was published");
    drop(mqtt);
    drop(broker);

    std::thread::sleep(Duration::from_secs(30));
    let broker = Mosquitto::start_on(port);
    let back = Instant::now();
    let mqtt = broker.watch();
    wait_until(
        "availability, discovery and states republished",
        Duration::from_secs(15),
        || {
            mqtt.last("ipcam/status").as_deref() == Some("online")
                && mqtt.last(&discovery_topic).is_some()
                && mqtt.last("ipcam/cam/stream_status/state").as_deref() == Some("inactive")
                && mqtt.last("ipcam/cam/info/attributes").is_some()
        },
    );
    eprintln!(
        "republished {:.1} s after the broker came back",
        back.elapsed().as_secs_f64()
    );
    let logs = addon.logs();
    assert!(
        logs.contains("reconnecting in 4 s"),
        "backoff up to 4 s: {logs}"
    );

    switch_on(&broker, &mqtt, "cam");

    // The last will: killed without a goodbye, the broker says offline for it.
    addon.proc.signal("KILL");
    mqtt.wait_for("ipcam/status", "offline", Duration::from_secs(60));
}
