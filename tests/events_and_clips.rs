//! Event clips end to end: recorded with pre-roll from a real RTSP camera stand-in, chosen with
//! the Event select over a real Mosquitto, played at `<cam>_event` and downloaded over HTTP,
//! and still playable after SIGTERM or SIGKILL.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const EVENT_ATTRIBUTES: &str = "ipcam/cam/event/attributes";

/// Duration and codecs ffprobe reads from a file or URL.
fn probe(target: &str) -> Result<(f64, Vec<String>), String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-rtsp_transport", "tcp"])
        .args([
            "-show_entries",
            "format=duration:stream=codec_name",
            "-of",
            "compact=p=0:nk=1",
        ])
        .arg(target)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let lines: Vec<&str> = text.lines().collect();
    let duration = lines
        .last()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| format!("no duration in {text}"))?;
    let codecs = lines[..lines.len() - 1]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok((duration, codecs))
}

/// The first time (s) a 0.25 s window of the file's audio is louder than −40 dBFS.
fn first_loud_audio(path: &str) -> Option<f64> {
    let out = Command::new("ffmpeg")
        .args([
            "-v", "error", "-i", path, "-vn", "-f", "s16le", "-ac", "1", "-ar", "16000", "-",
        ])
        .output()
        .ok()?;
    let samples: Vec<f64> = out
        .stdout
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    samples
        .chunks(4000)
        .position(|window| {
            let rms = (window.iter().map(|s| s * s).sum::<f64>() / window.len() as f64).sqrt();
            20.0 * rms.log10() > -40.0
        })
        .map(|i| i as f64 * 0.25)
}

#[test]
fn a_cry_clip_starts_before_the_cry_plays_at_the_event_path_and_downloads() {
    let (Some(model), Some(media)) = (
        Some(cry_model()),
        shared_file("fixtures/media/cry_h264_pcma.mkv"),
    ) else {
        return;
    };
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    // Silence from 0 s, a cry from 5 s to 10 s.
    let camera = Camera::start(&["--file", media.to_str().unwrap(), "--audio", "pcma"]);
    let yaml = cry_config(
        broker.port,
        &[(
            "cam",
            &camera.url(),
            "cry_detection: true\ncry_hold: 2\npre_roll: 5\npost_roll: 2",
        )],
        &model,
    );
    let addon = AddOn::start(&yaml);
    let empty = probe(&format!("rtsp://127.0.0.1:{}/cam_event", addon.rtsp_port));
    assert!(empty.is_err(), "no clip yet: the event path must refuse");
    mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(15), |a| {
        a["status"] == "no recording"
    });

    let attributes = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(30), |a| {
        a["status"] == "ok" && a["kind"] == "cry"
    });
    assert_eq!(mqtt.last("ipcam/cam/event/state").as_deref(), Some("Cry 1"));
    let duration_s = attributes["duration_s"].as_f64().unwrap();
    // 5 s of pre-roll (from a keyframe) + the 5 s cry + 2 s hold + 2 s post-roll.
    assert!((10.0..=17.0).contains(&duration_s), "{attributes}");

    let url = attributes["recording_url"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    let (status, body) = http_get(url);
    assert_eq!(status, 200, "{url}");
    std::fs::write(&file, body).unwrap();
    let (file_duration, codecs) = probe(file.to_str().unwrap()).unwrap();
    assert_eq!(codecs, ["h264", "aac"]);
    assert!(
        (file_duration - duration_s).abs() < 0.5,
        "{file_duration} vs {duration_s}"
    );
    // The pre-roll: quiet first, then the cry's onset seconds into the clip.
    let onset = first_loud_audio(file.to_str().unwrap()).expect("the cry is in the clip");
    assert!(
        (2.5..=5.5).contains(&onset),
        "the cry starts {onset} s into the clip"
    );

    let event_url = format!("rtsp://127.0.0.1:{}/cam_event", addon.rtsp_port);
    let (played, codecs) = probe(&event_url).unwrap();
    assert_eq!(codecs, ["h264", "aac"]);
    assert!(
        (played - duration_s).abs() < 0.5,
        "{played} vs {duration_s}"
    );
}

#[test]
fn motion_and_manual_clips_fill_their_slots_and_the_select_chooses_what_plays() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&["--gop", "25"]);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "pre_roll: 1\npost_roll: 1")],
    ));
    broker.publish("ipcam/cam/motion/command", "ON", false);
    mqtt.wait_for("ipcam/cam/motion/state", "ON", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    broker.publish("ipcam/cam/motion/command", "OFF", false);
    mqtt.wait_for("ipcam/cam/motion/state", "OFF", Duration::from_secs(15));
    let motion = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(20), |a| {
        a["kind"] == "motion"
    });
    broker.publish("ipcam/cam/record_clip/command", "2", false);
    let manual = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(20), |a| {
        a["kind"] == "manual"
    });
    assert_eq!(
        mqtt.last("ipcam/cam/event/state").as_deref(),
        Some("Manual 1")
    );
    let manual_s = manual["duration_s"].as_f64().unwrap();
    let motion_s = motion["duration_s"].as_f64().unwrap();
    assert!(
        (2.0..=5.5).contains(&manual_s),
        "2 s + post-roll + pre-roll: {manual}"
    );
    assert!(
        (5.0..=8.5).contains(&motion_s),
        "4 s + post-roll + pre-roll: {motion}"
    );

    // Garbage changes nothing.
    broker.publish("ipcam/cam/event/command", "Dog 7", false);
    broker.publish("ipcam/cam/record_clip/command", "forever", false);
    wait_until("two warnings", Duration::from_secs(15), || {
        addon.proc.output.count("ignored MQTT command") >= 2
    });
    assert_eq!(
        mqtt.last("ipcam/cam/event/state").as_deref(),
        Some("Manual 1")
    );

    broker.publish("ipcam/cam/event/command", "Motion 1", false);
    mqtt.wait_for("ipcam/cam/event/state", "Motion 1", Duration::from_secs(15));
    let chosen = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(15), |a| {
        a["kind"] == "motion"
    });
    assert_eq!(chosen["event_id"], motion["event_id"]);
    let (played, _) = probe(&format!("rtsp://127.0.0.1:{}/cam_event", addon.rtsp_port)).unwrap();
    assert!(
        (played - motion_s).abs() < 0.5,
        "plays the motion clip: {played} vs {motion_s}"
    );

    // A playback in progress: the Event stream switch shows it, and OFF or a new selection
    // stops it long before the clip's end.
    let event_url = format!("rtsp://127.0.0.1:{}/cam_event", addon.rtsp_port);
    for stop in [("event_stream", "OFF"), ("event", "Manual 1")] {
        let started = std::time::Instant::now();
        let mut viewer = counting_viewer(&event_url, "0.1");
        mqtt.wait_for(
            "ipcam/cam/event_stream/state",
            "ON",
            Duration::from_secs(15),
        );
        // A viewer that plays; one still negotiating is checked below.
        wait_until("the event viewer playing", Duration::from_secs(15), || {
            viewer.decoded_frames() > 0
        });
        broker.publish(&format!("ipcam/cam/{}/command", stop.0), stop.1, false);
        mqtt.wait_for(
            "ipcam/cam/event_stream/state",
            "OFF",
            Duration::from_secs(15),
        );
        // Generous: two CI runs on a loaded 2-core machine saw the viewer outlast 5 s.
        assert!(
            viewer.wait_exit(Duration::from_secs(15)).is_some(),
            "{stop:?} ends the playback"
        );
        assert!(
            started.elapsed().as_secs_f64() < motion_s,
            "{stop:?} stopped it before the clip's end"
        );
    }
    // A viewer between DESCRIBE and SETUP has no session yet, but the switch already shows it:
    // a stop in that window closes its connection too.
    for stop in [("event_stream", "OFF"), ("event", "Motion 1")] {
        let negotiating = rtsp_described(addon.rtsp_port, &event_url);
        mqtt.wait_for(
            "ipcam/cam/event_stream/state",
            "ON",
            Duration::from_secs(15),
        );
        broker.publish(&format!("ipcam/cam/{}/command", stop.0), stop.1, false);
        mqtt.wait_for(
            "ipcam/cam/event_stream/state",
            "OFF",
            Duration::from_secs(15),
        );
        assert_closed_by_server(
            negotiating,
            &format!("{stop:?} for a viewer that has not set up yet"),
        );
    }

    broker.publish("ipcam/cam/event_stream/command", "ON", false);
    wait_until(
        "ON to be ignored with a log line",
        Duration::from_secs(15),
        || addon.logs().contains("Event stream ON ignored"),
    );
    assert_eq!(
        mqtt.last("ipcam/cam/event_stream/state").as_deref(),
        Some("OFF")
    );

    // An empty slot: no recording, and the event path says so.
    broker.publish("ipcam/cam/event/command", "Cry 1", false);
    mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(15), |a| {
        a["status"] == "no recording"
    });
    assert!(probe(&format!("rtsp://127.0.0.1:{}/cam_event", addon.rtsp_port)).is_err());
}

#[test]
fn sigterm_finishes_a_clip_and_sigkill_still_leaves_a_playable_one() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&["--gop", "25"]);
    let data = tempfile::tempdir().unwrap();
    let mut yaml = config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "pre_roll: 1\npost_roll: 30")],
    );
    yaml.push_str(&format!("data_dir: {}\n", data.path().display()));
    let clips = data.path().join("media/cam");
    let mp4s = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(&clips)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "mp4"));
        files.sort();
        files
    };
    for signal in ["TERM", "KILL"] {
        let mut addon = AddOn::start(&yaml);
        let before = mp4s().len();
        broker.publish("ipcam/cam/record_clip/command", "60", false);
        wait_until("a clip file", Duration::from_secs(10), || {
            mp4s().len() > before
        });
        std::thread::sleep(Duration::from_secs(4));
        addon.proc.signal(signal);
        assert!(addon.proc.wait_exit(Duration::from_secs(10)).is_some());
        let clip = mp4s().last().unwrap().clone();
        let (duration, codecs) = probe(clip.to_str().unwrap()).unwrap_or_else(|e| {
            panic!("after SIG{signal}, {} is not playable: {e}", clip.display())
        });
        assert_eq!(codecs, ["h264", "aac"], "after SIG{signal}");
        // 4 s were recorded; a kill loses at most the fragment being written (1 s).
        let least = if signal == "KILL" { 2.0 } else { 3.0 };
        assert!(duration >= least, "after SIG{signal}: {duration} s");
        let decoded = Command::new("ffmpeg")
            // `repeat`: a filtered warning must not come back as "Last message repeated".
            .args([
                "-v",
                "repeat+error",
                "-i",
                clip.to_str().unwrap(),
                "-f",
                "null",
                "-",
            ])
            .output()
            .unwrap();
        // A live camera's timestamp jitter can round two frames onto one tick of ffmpeg's null
        // muxer; that warning is about the null output, not the clip. A kill may tear the last
        // fragment, which ffmpeg reports as a partial file: everything before it plays.
        let problems: Vec<String> = String::from_utf8_lossy(&decoded.stderr)
            .lines()
            .filter(|l| !l.contains("non monotonically increasing dts"))
            .filter(|l| !(signal == "KILL" && l.ends_with("partial file")))
            .map(str::to_string)
            .collect();
        assert!(
            decoded.status.success() && problems.is_empty(),
            "after SIG{signal}: {problems:?}"
        );
    }
    // The killed clip is found again after a restart.
    let _addon = AddOn::start(&yaml);
    let newest = mp4s()
        .last()
        .unwrap()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .to_string();
    mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(10), |a| {
        a["event_id"] == newest.as_str()
    });
}

/// A small tmpfs as the media folder; `None` (with a message) where mounting needs root.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("ipcam-small-disk-{}", free_port()));
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIP: cannot mount a tmpfs (needs root) for the disk-full test");
            return None;
        }
        Some(SmallDisk(dir))
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_stops_recording_with_a_clear_error_and_recording_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount("200k") else {
        return;
    };
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    // Noise at 2 Mbit/s: one second is more than the disk holds.
    let camera = Camera::start(&["--pattern", "snow", "--bitrate", "2000"]);
    let mut yaml = config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "pre_roll: 1\npost_roll: 0")],
    );
    yaml.push_str(&format!("media_dir: {}\n", disk.0.display()));
    let addon = AddOn::start(&yaml);
    broker.publish("ipcam/cam/live_stream/command", "ON", false);
    broker.publish("ipcam/cam/record_clip/command", "2", false);
    let failed = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(15), |a| {
        a["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left"))
    });
    assert_eq!(
        failed["status"], "no recording",
        "the broken clip is not offered"
    );
    assert_eq!(addon.proc.output.count("manual clip not recorded"), 1);
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{}/metrics", addon.http_port));
    assert!(
        String::from_utf8_lossy(&metrics)
            .contains("ipcam_camera_clip_failures_total{camera=\"cam\"} 1"),
        "the failure is counted for /metrics"
    );
    // Live streaming does not care.
    assert_eq!(
        ffprobe_codecs(&addon.live_url("cam"), "tcp").unwrap(),
        ["h264", "aac"]
    );

    disk.grow("20m");
    broker.publish("ipcam/cam/record_clip/command", "1", false);
    let saved = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(15), |a| {
        a["status"] == "ok"
    });
    assert!(saved["error"].is_null(), "{saved}");
}

/// Record clip pressed again and again while the camera drops and comes back: every press ends
/// in a clip or a clear error, never a stuck slot, and the next press records.
#[test]
fn record_clip_while_the_camera_restarts_never_wedges_the_recorder() {
    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let mut camera = Camera::start(&["--gop", "10"]);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "pre_roll: 1\npost_roll: 0")],
    ));
    broker.publish("ipcam/cam/live_stream/command", "ON", false);
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "active",
        Duration::from_secs(15),
    );
    for _ in 0..3 {
        broker.publish("ipcam/cam/record_clip/command", "1", false);
        camera.kill();
        mqtt.wait_for("ipcam/cam/status", "offline", Duration::from_secs(15));
        broker.publish("ipcam/cam/record_clip/command", "1", false);
        camera.restore();
        mqtt.wait_for(
            "ipcam/cam/stream_status/state",
            "active",
            Duration::from_secs(20),
        );
    }
    let before = mqtt
        .last(EVENT_ATTRIBUTES)
        .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
        .map(|a| a["event_id"].clone());
    broker.publish("ipcam/cam/record_clip/command", "1", false);
    let saved = mqtt.wait_for_json(EVENT_ATTRIBUTES, Duration::from_secs(20), |a| {
        a["status"] == "ok" && a["kind"] == "manual" && Some(&a["event_id"]) != before.as_ref()
    });
    assert!(saved["duration_s"].as_f64().unwrap() > 0.5, "{saved}");
    let logs = addon.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}
