//! Snapshots: the MQTT snapshot camera with its modes, interval and button, and the HTTP
//! `frame.jpeg` endpoint, against a real Mosquitto and a real RTSP camera stand-in.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

const IMAGE: &str = "ipcam/cam/snapshot/image";
const ATTRIBUTES: &str = "ipcam/cam/snapshot/attributes";

fn press(broker: &Mosquitto) {
    broker.publish("ipcam/cam/take_snapshot/command", "PRESS", false);
}

#[test]
fn the_button_publishes_a_jpeg_of_the_configured_width_and_is_rate_limited() {
    let rig = Rig::start(&[], "snapshot_width: 160");
    let images = ImageWatch::start(rig.broker.port, IMAGE);
    press(&rig.broker);
    let (_, jpeg) = images.wait_for_count(1, Duration::from_secs(15)).remove(0);
    assert_eq!(jpeg_size(&jpeg), Ok((160, 120)));
    let attributes = rig
        .mqtt
        .wait_for_json(ATTRIBUTES, Duration::from_secs(15), |a| {
            a["type"] == "on-demand"
        });
    assert_eq!(attributes["source"], "connection");
    assert!(attributes["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(attributes["error"], serde_json::Value::Null);
    assert_eq!(rig.camera.connections(), 1);

    // A second press within 5 s is ignored, and the log says so.
    press(&rig.broker);
    wait_until("the rate-limit log line", Duration::from_secs(15), || {
        rig.addon
            .logs()
            .contains("pressed again within 5 s: ignored")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(images.images().len(), 1);
}

#[test]
fn interval_mode_publishes_on_schedule_and_the_mode_survives_a_restart() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}data_dir: {}\n",
        config(broker.port, free_port(), &[("cam", &camera.url(), "")]),
        data.path().display()
    );
    let images = ImageWatch::start(broker.port, IMAGE);
    {
        let addon = AddOn::start(&yaml);
        let mqtt = broker.watch();
        mqtt.wait_for(
            "ipcam/cam/snapshot_mode/state",
            "Auto",
            Duration::from_secs(10),
        );
        broker.publish("ipcam/cam/snapshot_interval/command", "10", false);
        mqtt.wait_for(
            "ipcam/cam/snapshot_interval/state",
            "10",
            Duration::from_secs(15),
        );
        broker.publish("ipcam/cam/snapshot_mode/command", "Interval", false);
        mqtt.wait_for(
            "ipcam/cam/snapshot_mode/state",
            "Interval",
            Duration::from_secs(15),
        );
        // One at once when the mode is chosen, then one every 10 s.
        let shots = images.wait_for_count(3, Duration::from_secs(40));
        let gaps: Vec<f64> = shots.windows(2).map(|w| w[1].0 - w[0].0).collect();
        for gap in &gaps[..2] {
            assert!((8.5..=12.5).contains(gap), "gaps between images: {gaps:?}");
        }
        for (_, jpeg) in &shots {
            assert_eq!(jpeg_size(jpeg), Ok((320, 240)));
        }
        let attributes = mqtt.wait_for_json(ATTRIBUTES, Duration::from_secs(15), |_| true);
        assert_eq!(attributes["type"], "interval");
        // A bad value is refused with a clear log line and changes nothing.
        broker.publish("ipcam/cam/snapshot_interval/command", "3", false);
        wait_until("the refusal", Duration::from_secs(15), || {
            addon
                .logs()
                .contains("is not a whole number of seconds from 10 to 86400")
        });
        assert_eq!(
            mqtt.last("ipcam/cam/snapshot_interval/state").as_deref(),
            Some("10")
        );
    }
    let addon = AddOn::start(&yaml);
    let mqtt = broker.watch();
    mqtt.wait_for(
        "ipcam/cam/snapshot_mode/state",
        "Interval",
        Duration::from_secs(10),
    );
    mqtt.wait_for(
        "ipcam/cam/snapshot_interval/state",
        "10",
        Duration::from_secs(15),
    );
    drop(addon);
}

#[test]
fn frame_jpeg_works_while_idle_and_while_streaming_on_one_camera_connection() {
    let rig = Rig::start(&[], "");
    // Idle: a short lease connects, decodes the first keyframe and lets go.
    let (status, jpeg) = rig.addon.frame("src=cam");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&jpeg));
    assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
    assert_eq!(rig.camera.connections(), 1);

    // Streaming: a viewer holds the camera; the snapshot is its cached keyframe, resized.
    let _viewer = gst_viewer(&rig.addon.live_url("cam"));
    rig.mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "active",
        Duration::from_secs(15),
    );
    let (status, small) = rig.addon.frame("src=cam&w=160");
    assert_eq!(status, 200);
    assert_eq!(jpeg_size(&small), Ok((160, 120)));
    let (_, stretched) = rig.addon.frame("src=cam&width=200&height=100");
    assert_eq!(jpeg_size(&stretched), Ok((200, 100)));
    // Never larger than the picture: an 8K request of a 320x240 camera gets 320x240.
    let (_, huge) = rig.addon.frame("src=cam&w=7680");
    assert_eq!(jpeg_size(&huge), Ok((320, 240)));
    // go2rtc's cache parameter: the same picture again, not a new one.
    let (_, cached) = rig.addon.frame("src=cam&w=160&cache=10s");
    assert_eq!(cached, small);
    assert_eq!(
        rig.camera.connections(),
        1,
        "snapshots opened extra camera connections"
    );
    let info = rig
        .mqtt
        .wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(15), |_| {
            true
        });
    assert_eq!(
        info["still_image_url"],
        format!(
            "http://127.0.0.1:{}/api/still.jpeg?src=cam",
            rig.addon.http_port
        ),
        "dashboards poll the still image that never holds the camera open"
    );
}

#[test]
fn frame_jpeg_errors_are_one_clear_line() {
    let rig = Rig::start(&[], "");
    for (query, status, says) in [
        ("src=garage", 404, "no camera with id \"garage\""),
        ("src=cam&w=huge", 400, "width=huge is not a whole number"),
        ("w=100", 400, "src parameter"),
        ("src=cam&cache=later", 400, "cache=later"),
    ] {
        let (got, body) = rig.addon.frame(query);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{query}: {body}");
        assert!(body.contains(says), "{query}: {body}");
        assert_eq!(body.trim_end().lines().count(), 1, "{query}: {body}");
    }
}

#[test]
fn a_camera_that_is_down_gives_a_503_and_an_error_attribute_without_its_password() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let nobody_home = format!("rtsp://admin:hunter2@127.0.0.1:{}/stream", free_port());
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("cam", &nobody_home, "start_timeout: 3")],
    ));
    let started = Instant::now();
    let (status, body) = addon.frame("src=cam");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("camera cam: "), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    press(&broker);
    let attributes = mqtt.wait_for_json(ATTRIBUTES, Duration::from_secs(15), |a| {
        a["error"].is_string()
    });
    let text = attributes.to_string() + &addon.logs() + &body;
    assert!(!text.contains("hunter2"), "{text}");
    // The add-on is still up and serving.
    let (status, _) = addon.frame("src=garage");
    assert_eq!(status, 404);
}

/// Runs the digest-auth still-image server of `tests/clients/` on a JPEG made by ffmpeg.
struct CameraStillServer {
    port: u16,
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl CameraStillServer {
    fn start(user: &str, password: &str) -> CameraStillServer {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("still.jpg");
        let made = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=200x100",
                "-frames:v",
                "1",
            ])
            .arg(&image)
            .status()
            .unwrap();
        assert!(made.success());
        let port = free_port();
        let proc = Proc::spawn(Command::new("python3").args([
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/digest_snapshot_server.py"
            ),
            &port.to_string(),
            user,
            password,
            image.to_str().unwrap(),
        ]));
        wait_until("the still-image server", Duration::from_secs(10), || {
            proc.output.count("serving") > 0
        });
        CameraStillServer {
            port,
            proc,
            _dir: dir,
        }
    }
}

#[test]
fn snapshot_url_with_digest_auth_is_used_while_idle_and_a_failure_falls_back_to_the_stream() {
    let still = CameraStillServer::start("admin", "pic-pass");
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let good = format!(
        "snapshot_url: http://admin:pic-pass@127.0.0.1:{}/ISAPI/Streaming/channels/101/picture?snapShotImageType=JPEG",
        still.port
    );
    // Reolink-style: the password rides in the query string, and must not reach the log.
    let in_query = format!(
        "snapshot_url: http://127.0.0.1:{}/cgi-bin/api.cgi?cmd=Snap&user=admin&password=query-pass",
        still.port
    );
    let wrong = format!(
        "snapshot_url: http://admin:wrong-pass@127.0.0.1:{}/picture",
        still.port
    );
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[
            ("cam", &camera.url(), &good),
            ("bad", &camera.url(), &wrong),
            ("reolink", &camera.url(), &in_query),
        ],
    ));
    let (status, jpeg) = addon.frame("src=cam");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&jpeg));
    assert_eq!(
        jpeg_size(&jpeg),
        Ok((200, 100)),
        "not the camera's own still"
    );
    assert_eq!(camera.connections(), 0, "the stream was opened anyway");
    assert!(still.proc.output.count(" 401") >= 1 && still.proc.output.count(" 200") == 1);

    // Wrong password: one clear warning, then the stream.
    let (status, jpeg) = addon.frame("src=bad");
    assert_eq!(status, 200);
    assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
    assert_eq!(camera.connections(), 1);
    let logs = addon.logs();
    assert!(
        logs.contains("refused the username or password")
            && logs.contains("from the stream instead"),
        "{logs}"
    );
    // The still server wants Digest, which a query-string password cannot answer: the fetch
    // fails, the stream serves, and the log shows the URL with its password redacted.
    let (status, _) = addon.frame("src=reolink");
    assert_eq!(status, 200);
    let logs = addon.logs();
    assert!(logs.contains("&password=***"), "{logs}");
    assert!(
        !logs.contains("wrong-pass") && !logs.contains("pic-pass") && !logs.contains("query-pass"),
        "{logs}"
    );
}

#[test]
fn auto_mode_takes_a_free_snapshot_when_a_viewer_starts_the_stream() {
    let rig = Rig::start(&[], "");
    let images = ImageWatch::start(rig.broker.port, IMAGE);
    rig.mqtt.wait_for(
        "ipcam/cam/snapshot_mode/state",
        "Auto",
        Duration::from_secs(10),
    );
    let _viewer = gst_viewer(&rig.addon.live_url("cam"));
    let (_, jpeg) = images.wait_for_count(1, Duration::from_secs(15)).remove(0);
    assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
    let attributes = rig
        .mqtt
        .wait_for_json(ATTRIBUTES, Duration::from_secs(15), |_| true);
    assert_eq!(attributes["type"], "interval");
    assert_eq!(attributes["source"], "live_stream");
    assert_eq!(rig.camera.connections(), 1);
}

/// Snapshots may decode a frame each: one client asking for one camera faster than 5 a second
/// (after a burst of 10) gets 429 with Retry-After, and one warning in the log, not one a request.
#[test]
fn a_client_asking_too_fast_gets_429_with_retry_after() {
    let rig = Rig::start(&[], "");
    let url = format!(
        "http://127.0.0.1:{}/api/frame.jpeg?src=cam",
        rig.addon.http_port
    );
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = (0..40).map(|_| http_get(&url).0).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    eprintln!("40 requests in {elapsed:.1} s: {ok} answered, {refused} refused");
    assert_eq!(ok + refused, 40, "{statuses:?}");
    assert!(ok >= 10, "the burst passes: {statuses:?}");
    assert!(
        ok as f64 <= 10.0 + 5.0 * elapsed + 1.0,
        "then 5 a second: {ok} in {elapsed:.1} s"
    );
    let (status, headers) = http_get_with(&url, &["-D", "/dev/stdout", "-o", "/dev/null"]);
    if status == 429 {
        let headers = String::from_utf8_lossy(&headers).to_lowercase();
        assert!(headers.contains("retry-after: 1"), "{headers}");
    }
    let logs = rig.addon.logs();
    assert_eq!(logs.matches("faster than 5 a second").count(), 1, "{logs}");
}

/// A dashboard left open: Home Assistant polls the camera entity's `still_image_url` about every
/// 10 s while a card shows it. For two minutes against an idle camera in `Auto` mode that opens
/// no camera session at all; once something else has streamed, the dashboard gets that picture,
/// still without connecting.
#[test]
fn a_dashboard_polling_the_still_image_for_two_minutes_never_connects_an_idle_camera() {
    let rig = Rig::start(&[], "");
    let still = || {
        http_get(&format!(
            "http://127.0.0.1:{}/api/still.jpeg?src=cam",
            rig.addon.http_port
        ))
    };
    for poll in 1..=12 {
        let (status, jpeg) = still();
        assert_eq!(status, 200, "poll {poll}");
        // The "no picture yet" card: 640x360, and not the camera's 320x240.
        assert_eq!(jpeg_size(&jpeg), Ok((640, 360)), "poll {poll}");
        assert_eq!(
            rig.camera.connections(),
            0,
            "poll {poll} connected the idle camera"
        );
        // Home Assistant's pace, not a wait for an event.
        std::thread::sleep(Duration::from_secs(10));
    }
    switch_on(&rig.broker, &rig.mqtt, "cam");
    let (status, jpeg) = still();
    assert_eq!(
        (status, jpeg_size(&jpeg)),
        (200, Ok((320, 240))),
        "a picture of now"
    );
    rig.broker
        .publish("ipcam/cam/live_stream/command", "OFF", false);
    rig.mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "inactive",
        Duration::from_secs(15),
    );
    let (status, jpeg) = still();
    assert_eq!(
        (status, jpeg_size(&jpeg)),
        (200, Ok((320, 240))),
        "the newest snapshot there is"
    );
    assert_eq!(
        rig.camera.connections(),
        1,
        "only the stream that was asked for"
    );
}
