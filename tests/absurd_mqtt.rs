//! Absurd MQTT input: an unknown camera, an unknown entity, words where numbers belong, numbers
//! out of range, and payloads far too big (one retained, so it comes back at every connect).
//! Each gets a one-line warning, and nothing the add-on shows changes.
mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn publish_big(port: u16, topic: &str, bytes: usize, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-s",
    ]);
    if retain {
        cmd.arg("-r");
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![b'x'; bytes])
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn absurd_commands_get_one_warning_each_and_change_nothing() {
    let rig = Rig::start(&[], "");
    rig.mqtt.wait_for(
        "ipcam/cam/snapshot_interval/state",
        "60",
        Duration::from_secs(10),
    );
    let state_topics = [
        "ipcam/cam/live_stream/state",
        "ipcam/cam/snapshot_interval/state",
        "ipcam/cam/snapshot_mode/state",
        "ipcam/cam/stream_status/state",
    ];
    let before: Vec<Option<String>> = state_topics.iter().map(|t| rig.mqtt.last(t)).collect();
    let absurd = [
        ("ipcam/nope/live_stream/command", "ON"),
        ("ipcam/cam/warp_drive/command", "ON"),
        ("ipcam/cam/live_stream/command", "maybe"),
        ("ipcam/cam/snapshot_interval/command", "banana"),
        ("ipcam/cam/snapshot_interval/command", "-5"),
        (
            "ipcam/cam/snapshot_interval/command",
            "99999999999999999999",
        ),
        ("ipcam/cam/snapshot_mode/command", "Sometimes"),
        ("ipcam/cam/record_clip/command", "1e9"),
    ];
    for (topic, payload) in absurd {
        rig.broker.publish(topic, payload, false);
    }
    // 64 KiB: over the command limit, under the connection's packet limit.
    publish_big(
        rig.broker.port,
        "ipcam/cam/live_stream/command",
        64 * 1024,
        false,
    );
    wait_until("a warning for each", Duration::from_secs(10), || {
        // The eight above and the 64 KiB one.
        rig.addon.logs().matches("ignored MQTT command").count() > absurd.len()
    });
    // 1 MiB and retained: over the packet limit; it must not make the add-on loop on it.
    publish_big(
        rig.broker.port,
        "ipcam/cam/live_stream/command",
        1 << 20,
        true,
    );
    std::thread::sleep(Duration::from_secs(6));
    let logs = rig.addon.logs();
    let reconnects = logs.matches("connected to the MQTT broker").count();
    eprintln!(
        "{} warnings; {} connections to the broker over the run",
        logs.matches("WARN").count(),
        reconnects
    );
    assert!(
        reconnects <= 3,
        "the add-on loops on an oversized retained message:\n{logs}"
    );
    let after: Vec<Option<String>> = state_topics.iter().map(|t| rig.mqtt.last(t)).collect();
    assert_eq!(before, after, "nothing changed");
    for line in logs.lines().filter(|l| l.contains("ignored MQTT command")) {
        assert!(line.len() < 400, "one short line: {line}");
    }
    assert_eq!(
        ffprobe_codecs(&rig.addon.live_url("cam"), "tcp")
            .unwrap()
            .len(),
        2,
        "the add-on still serves"
    );
}
