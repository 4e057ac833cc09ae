//! Cry detection end to end: camera-like files served over RTSP by a GStreamer camera stand-in,
//! the add-on analysing their audio with the cry model it ships (YAMNet and the cry head), and a
//! real Mosquitto.
mod common;
use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn event_json(mqtt: &MqttWatch, topic: &str) -> Vec<serde_json::Value> {
    mqtt.messages()
        .into_iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| serde_json::from_str(&p).unwrap())
        .collect()
}

#[test]
fn a_cry_turns_the_sensor_on_then_off_after_the_hold_and_quiet_audio_never_does() {
    let (Some(model), Some(cry_file), Some(quiet_file)) = (
        Some(cry_model()),
        shared_file("fixtures/media/cry_h264_pcma.mkv"),
        shared_file("fixtures/media/quiet_h264_aac.mp4"),
    ) else {
        return;
    };
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    // cry_h264_pcma.mkv: silence, a baby crying from 5 s to 10 s, silence, a dog from 15 s.
    let cry_camera = Camera::start(&["--file", cry_file.to_str().unwrap(), "--audio", "pcma"]);
    // quiet_h264_aac.mp4: speech, door knocks, snoring.
    let quiet_camera = Camera::start(&["--file", quiet_file.to_str().unwrap(), "--audio", "aac"]);
    let cry = "cry_detection: true\ncry_hold: 2";
    let yaml = cry_config(
        broker.port,
        &[
            ("cry", &cry_camera.url(), cry),
            ("quiet", &quiet_camera.url(), cry),
        ],
        model.to_str().unwrap(),
    );
    let started = Instant::now();
    let addon = AddOn::start(&yaml);

    // The quiet camera plays its whole 20 s file meanwhile.
    mqtt.wait_for("ipcam/cry/crying/state", "ON", Duration::from_secs(25));
    let on_after = started.elapsed();
    // The viewer page's crying badge reads the same sensor from /api/streams.
    let crying = |camera: &str| {
        let url = format!("http://127.0.0.1:{}/api/streams", addon.http_port);
        let streams: serde_json::Value =
            serde_json::from_slice(&http_get(&url).1).unwrap_or_default();
        streams[camera]["crying"].clone()
    };
    assert_eq!(crying("cry"), true);
    assert_eq!(crying("quiet"), false);
    mqtt.wait_for("ipcam/cry/crying/state", "OFF", Duration::from_secs(10));
    assert_eq!(crying("cry"), false);
    let events = event_json(&mqtt, "ipcam/cry/cry/event");
    assert_eq!(events.len(), 2, "a start and an end: {events:?}");
    assert_eq!(events[0]["event"], "start");
    assert_eq!(events[0]["camera"], "cry");
    assert_eq!(events[0]["detection"], "cry");
    assert!(
        events[0]["confidence"].as_f64().unwrap() >= 0.5,
        "{events:?}"
    );
    assert!(events[0]["ended_at"].is_null());
    assert_eq!(events[1]["event"], "end");
    assert_eq!(events[1]["started_at"], events[0]["started_at"]);
    // The cry in the file lasts 5 s; patches at its edges hear part of it.
    let duration = events[1]["duration_s"].as_f64().unwrap();
    assert!((4.0..=7.5).contains(&duration), "duration {duration} s");
    eprintln!(
        "Crying ON {:.1} s after the add-on started",
        on_after.as_secs_f64()
    );

    let wait_whole_file = Duration::from_secs(22).saturating_sub(started.elapsed());
    std::thread::sleep(wait_whole_file);
    let quiet_states: Vec<String> = mqtt
        .messages()
        .into_iter()
        .filter(|(t, _)| t == "ipcam/quiet/crying/state")
        .map(|(_, p)| p)
        .collect();
    assert!(
        !quiet_states.is_empty(),
        "the quiet camera's sensor is published"
    );
    assert!(
        quiet_states.iter().all(|s| s == "OFF"),
        "speech, knocks and snoring are not a cry: {quiet_states:?}"
    );
    assert!(event_json(&mqtt, "ipcam/quiet/cry/event").is_empty());
    let confidences: Vec<u32> = mqtt
        .messages()
        .into_iter()
        .filter(|(t, _)| t == "ipcam/quiet/cry_confidence/state")
        .map(|(_, p)| p.parse().unwrap())
        .collect();
    assert!(
        !confidences.is_empty(),
        "confidence is published while there is sound"
    );
    assert!(confidences.iter().all(|c| *c < 50), "{confidences:?}");

    // The info sensor says detection runs and that it keeps the stream up.
    let info = mqtt.wait_for_json(
        "ipcam/quiet/info/attributes",
        Duration::from_secs(15),
        |a| a["cry_detection"] == "listening",
    );
    assert!(
        info["held_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "cry detection"),
        "{info}"
    );
    assert!(addon.logs().contains("crying started"));
}

#[test]
fn a_missing_model_or_runtime_turns_detection_off_with_one_clear_error_and_streaming_goes_on() {
    let Some(model) = Some(cry_model()) else {
        return;
    };
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    for (cry_model, runtime, expected) in [
        (
            "/nonexistent/yamnet.onnx".to_string(),
            None,
            "the cry model /nonexistent/yamnet.onnx does not exist",
        ),
        (
            model.display().to_string(),
            Some("/nonexistent/libonnxruntime.so"),
            "the ONNX Runtime library could not be loaded",
        ),
        (
            // YAMNet as Google made it, without the cry head the detector decides on.
            model.with_file_name("yamnet.onnx").display().to_string(),
            None,
            "a plain YAMNet without the cry head",
        ),
    ] {
        let mqtt = broker.watch();
        let yaml = cry_config(
            broker.port,
            &[("cam", &camera.url(), "cry_detection: true")],
            &cry_model,
        );
        let addon = match runtime {
            // The library is found through the environment, as the add-on image sets it.
            Some(library) => AddOn::start_with_env(&yaml, &[("ORT_DYLIB_PATH", library)]),
            None => AddOn::start(&yaml),
        };
        let attributes = mqtt.wait_for_json(
            "ipcam/cam/crying/attributes",
            Duration::from_secs(10),
            // The previous round's status is retained: wait for this round's own.
            |a| a["status"].as_str().is_some_and(|s| s.contains(expected)),
        );
        assert!(
            attributes["status"].as_str().unwrap().contains(expected),
            "{attributes}"
        );
        let info = mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(15), |a| {
            a["cry_detection"]
                .as_str()
                .is_some_and(|s| s.contains(expected))
        });
        assert!(
            !info["held_by"].to_string().contains("cry detection"),
            "a detector that cannot run must not hold the camera: {info}"
        );
        assert_eq!(
            addon.proc.output.count("cry detection is off"),
            1,
            "one clear error line:\n{}",
            addon.logs()
        );
        // The rest of the add-on runs: the live stream plays.
        let codecs = ffprobe_codecs(&addon.live_url("cam"), "tcp").unwrap();
        assert_eq!(codecs, ["h264", "aac"]);
        // And the camera's MQTT states still follow it (a detector that gave up once froze
        // them until the 30 s refresh).
        mqtt.wait_for(
            "ipcam/cam/stream_status/state",
            "active",
            Duration::from_secs(15),
        );
    }
}

fn classify(args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipcam-mqtt"));
    command.arg("classify").args(args);
    if let Some(library) = onnxruntime_library() {
        command.env("ORT_DYLIB_PATH", library);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The highest "Baby cry, infant cry" score among each patch's top classes.
fn max_baby_cry(table: &str) -> f64 {
    table
        .lines()
        .filter_map(|line| line.split("Baby cry, infant cry ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .fold(0.0, f64::max)
}

#[test]
fn classify_prints_per_patch_scores_that_match_the_reference_model() {
    let (Some(model), Some(cry), Some(speech)) = (
        Some(cry_model()),
        shared_file("fixtures/audio/cry/esc50_crying_baby_1-60997-B.wav"),
        shared_file("fixtures/audio/other/speech_ljspeech_LJ001-0003.wav"),
    ) else {
        return;
    };
    let model = model.to_str().unwrap();
    let table = classify(&[
        "--model",
        model,
        "--sensitivity",
        "50",
        cry.to_str().unwrap(),
    ]);
    // The model's README: class 20 peaks at 0.982 on this clip (ONNX Runtime, Python); the
    // cry head leaves YAMNet's own scores as they were.
    let peak = max_baby_cry(&table);
    assert!((peak - 0.982).abs() < 0.02, "peak {peak}\n{table}");
    assert!(table.starts_with("sensitivity 50 %: crying starts when the mean cry probability of 3 patches reaches 0.50"), "{table}");
    // The first two patches only fill the mean; every patch after them is crying.
    assert_eq!(table.matches("CRYING").count(), 8, "{table}");
    assert!(
        table
            .trim_end()
            .ends_with("10 patches; 1 cry: 0.00–5.00 s (sensitivity 50 %)"),
        "{table}"
    );

    let table = classify(&[
        "--model",
        model,
        "--sensitivity",
        "50",
        speech.to_str().unwrap(),
    ]);
    assert!(table.contains("Speech"), "{table}");
    assert!(
        table
            .trim_end()
            .ends_with("20 patches; 0 cries (sensitivity 50 %)"),
        "{table}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ipcam-mqtt"))
        .args([
            "classify",
            "--model",
            "/nonexistent.onnx",
            cry.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the cry model /nonexistent.onnx does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mqtt_off_stops_a_listening_camera_and_pauses_detection_until_the_stream_is_on_again() {
    let Some(model) = Some(cry_model()) else {
        return;
    };
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    let yaml = cry_config(
        broker.port,
        &[("cam", &camera.url(), "cry_detection: true")],
        model.to_str().unwrap(),
    );
    let _addon = AddOn::start(&yaml);
    // Detection alone keeps the camera connected.
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(15), |a| {
        a["status"] == "active" && a["held_by"] == serde_json::json!(["cry detection"])
    });
    assert_eq!(camera.connections(), 1);

    broker.publish("ipcam/cam/live_stream/command", "OFF", false);
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(10), |a| {
        a["status"] == "inactive" && a["cry_detection"] == "paused: the live stream was turned off"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        camera.connections(),
        1,
        "OFF wins: detection must not reconnect"
    );

    broker.publish("ipcam/cam/live_stream/command", "ON", false);
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(15), |a| {
        a["status"] == "active"
            && a["cry_detection"] == "listening"
            && a["held_by"] == serde_json::json!(["mqtt", "cry detection"])
    });
}

#[test]
fn a_camera_without_audio_is_not_kept_streaming_for_detection() {
    let Some(model) = Some(cry_model()) else {
        return;
    };
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&["--audio", "none"]);
    let yaml = cry_config(
        broker.port,
        &[("cam", &camera.url(), "cry_detection: true\nclose_after: 1")],
        model.to_str().unwrap(),
    );
    let addon = AddOn::start(&yaml);
    mqtt.wait_for_json(
        "ipcam/cam/crying/attributes",
        Duration::from_secs(15),
        |a| a["status"] == "off: the camera sends no audio",
    );
    // Nothing else wants the stream, so it closes after close_after.
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(10), |a| {
        a["status"] == "inactive" && a["held_by"] == serde_json::json!([])
    });
    assert_eq!(addon.proc.output.count("the camera sends no audio"), 1);
}

/// The "Cry sensitivity" number: a parent moves it in Home Assistant, detection uses it from the
/// next patch, and it is kept across a restart; a bad value changes nothing and says why.
#[test]
fn cry_sensitivity_is_set_from_mqtt_and_kept_across_a_restart() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let data = tempfile::tempdir().unwrap();
    let yaml = cry_config(
        broker.port,
        &[(
            "cam",
            &camera.url(),
            "cry_detection: true\ncry_sensitivity: 40",
        )],
        cry_model(),
    ) + &format!("data_dir: {}\n", data.path().display());
    let mqtt = broker.watch();
    let addon = AddOn::start(&yaml);
    mqtt.wait_for(
        "ipcam/cam/cry_sensitivity/state",
        "40",
        Duration::from_secs(15),
    );
    broker.publish("ipcam/cam/cry_sensitivity/command", "150", false);
    broker.publish("ipcam/cam/cry_sensitivity/command", "65.0", false);
    mqtt.wait_for(
        "ipcam/cam/cry_sensitivity/state",
        "65",
        Duration::from_secs(10),
    );
    let logs = addon.logs();
    assert!(
        logs.contains("payload \"150\" is not a whole percent from 1 to 99"),
        "{logs}"
    );
    assert!(logs.contains("cry sensitivity set to 65 %"), "{logs}");
    drop(addon);

    let mqtt = broker.watch();
    let _addon = AddOn::start(&yaml);
    mqtt.wait_for_json(
        "ipcam/cam/crying/attributes",
        Duration::from_secs(15),
        |a| a["status"] == "listening",
    );
    assert_eq!(
        mqtt.last("ipcam/cam/cry_sensitivity/state").as_deref(),
        Some("65"),
        "the slider's value outlives a restart"
    );
}
