//! Cameras fail: a wrong password, a camera that goes down, one that never answers.
//! None of them crashes the add-on or affects the other cameras, and no password leaks.
mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn wrong_password_gives_failed_once_without_hammering_and_never_shows_the_password() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&["--username", "admin", "--password", "right-pass"]);
    let good = Camera::start(&[]);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[
            (
                "locked",
                &camera.url(),
                "username: admin\npassword: wrong-pass-123",
            ),
            ("good", &good.url(), ""),
        ],
    ));
    // A viewer gets a clear refusal rather than a 20 s hang.
    let started = Instant::now();
    assert!(ffprobe_codecs(&addon.live_url("locked"), "tcp").is_err());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "refusal took {:?}",
        started.elapsed()
    );
    mqtt.wait_for(
        "ipcam/locked/stream_status/state",
        "failed",
        Duration::from_secs(10),
    );
    // A WebRTC offer is refused at once too, as the camera's refusal (502), not a server fault.
    #[cfg(feature = "webrtc")]
    {
        let refused = common::whep::WhepClient::connect(&format!(
            "http://127.0.0.1:{}/api/webrtc?src=locked",
            addon.http_port
        ))
        .err()
        .expect("the offer is refused");
        assert!(refused.starts_with("HTTP/1.1 502"), "{refused}");
        assert!(!refused.contains("wrong-pass-123"), "{refused}");
    }
    let attempts = camera.connections();
    // More viewers do not make the camera lock the account.
    for _ in 0..3 {
        let _ = ffprobe_codecs(&addon.live_url("locked"), "tcp");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        camera.connections(),
        attempts,
        "the add-on retried a wrong password"
    );
    let attributes = mqtt.last("ipcam/locked/live_stream/attributes").unwrap();
    assert!(attributes.contains("401"), "{attributes}");
    // The other camera is unaffected.
    assert_eq!(
        ffprobe_codecs(&addon.live_url("good"), "tcp")
            .unwrap()
            .len(),
        2
    );
    let logs = addon.logs();
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("ERROR") && l.contains("locked"))
            .count(),
        1,
        "one clear error line naming the camera:\n{logs}"
    );
    for (topic, payload) in mqtt.messages() {
        assert!(
            !payload.contains("wrong-pass-123"),
            "password in MQTT on {topic}"
        );
    }
    assert!(!logs.contains("wrong-pass-123"), "password in the log");
}

#[test]
fn camera_that_goes_down_is_retried_with_backoff_and_recovers() {
    let Rig {
        addon,
        mut camera,
        mqtt,
        broker,
    } = Rig::start(&["--gop", "25"], "");
    switch_on(&broker, &mqtt, "cam");
    // A viewer that reports how many frames it has decoded, twice a second.
    let mut viewer = counting_viewer(&addon.live_url("cam"), "0.5");
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(10), |v| {
        v["viewers"] == 1
    });

    camera.kill();
    mqtt.wait_for("ipcam/cam/status", "offline", Duration::from_secs(8));
    // Published as its own message, so it may land a moment after `offline`.
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "activating",
        Duration::from_secs(15),
    );
    // Let a few retries go by with the camera away: 1 s, 2 s, 4 s...
    std::thread::sleep(Duration::from_secs(4));
    camera.restore();
    let restored = Instant::now();
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "active",
        Duration::from_secs(15),
    );
    mqtt.wait_for("ipcam/cam/status", "online", Duration::from_secs(15));
    println!(
        "recovered {:?} after the camera came back",
        restored.elapsed()
    );
    let logs = addon.logs();
    let retries = logs.matches("retrying with backoff").count();
    assert!(
        (2..=5).contains(&retries),
        "{retries} retries in ~5 s:\n{logs}"
    );
    // The viewer rode through the outage on the same RTSP session, and pictures flow again.
    let after_recovery = viewer.decoded_frames();
    wait_until(
        "the viewer to decode new frames",
        Duration::from_secs(15),
        || viewer.decoded_frames() >= after_recovery + 25,
    );
    assert!(
        viewer.exited().is_none(),
        "the viewer was dropped by the reconnect"
    );
}

#[test]
fn unreachable_camera_fails_the_viewer_within_start_timeout_and_shows_failed() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let nobody_home = format!("rtsp://127.0.0.1:{}/stream", free_port());
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("gone", &nobody_home, "start_timeout: 3")],
    ));
    // Timed on a raw DESCRIBE, so a loaded machine's ffprobe start-up is not counted;
    // 6 s is well under the 10 s default, so the configured 3 s is what answered.
    let started = Instant::now();
    let reply = raw_describe(&addon.live_url("gone"));
    let took = started.elapsed();
    // The camera is what is unavailable, not the viewer's request that is wrong.
    assert!(reply.starts_with("RTSP/1.0 503"), "{reply} after {took:?}");
    assert!(took < Duration::from_secs(6), "the viewer waited {took:?}");
    assert!(ffprobe_codecs(&addon.live_url("gone"), "tcp").is_err());
    mqtt.wait_for(
        "ipcam/gone/stream_status/state",
        "failed",
        Duration::from_secs(15),
    );
    mqtt.wait_for("ipcam/gone/status", "offline", Duration::from_secs(15));
    assert!(addon.logs().contains("refusing a viewer"));
}

#[test]
fn camera_that_stalls_without_disconnecting_is_noticed_and_reconnected() {
    let Rig {
        addon,
        camera,
        mqtt,
        broker,
    } = Rig::start(&[], "");
    // Subscribed before the command, which is not retained.
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "inactive",
        Duration::from_secs(10),
    );
    switch_on(&broker, &mqtt, "cam");
    // Frozen, not dead: the TCP connection stays open but nothing more arrives.
    camera.signal("STOP");
    let frozen = Instant::now();
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "activating",
        Duration::from_secs(8),
    );
    let noticed = frozen.elapsed();
    assert!(
        addon.logs().contains("the camera stalled"),
        "{}",
        addon.logs()
    );
    camera.signal("CONT");
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "active",
        Duration::from_secs(40),
    );
    println!("stall noticed after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(6),
        "stall noticed after {noticed:?}"
    );
}

/// Sends a DESCRIBE on a fresh connection and returns the reply's status line.
fn raw_describe(url: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let address = url.trim_start_matches("rtsp://").split('/').next().unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n").unwrap();
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).unwrap();
    status
}
