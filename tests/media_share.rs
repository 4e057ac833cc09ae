//! The media share is the user's too: the add-on removes only the clip folders it made (marked),
//! holding only what it wrote, and never takes a path from a file's content.
mod common;
use common::*;
use std::time::Duration;

const OURS: &str = "cry-20261121-204916-123";

fn sidecar(event_id: &str) -> String {
    serde_json::json!({
        "event_id": event_id, "kind": "cry",
        "started_at": {"secs_since_epoch": 1_600_000_000u64, "nanos_since_epoch": 0},
        "duration_s": 5.0, "video": "h264", "audio": true, "complete": true
    })
    .to_string()
}

/// A real (if tiny) MP4 that ffmpeg writes.
fn mp4(path: &std::path::Path) {
    write_mp4(
        path,
        "testsrc=size=64x48:rate=5",
        &["-t", "1", "-c:v", "libx264", "-f", "mp4"],
    );
}

#[test]
fn foreign_folders_and_planted_sidecars_lose_nothing() {
    let media = tempfile::tempdir().unwrap();
    let root = media.path();
    // A user's holiday videos beside the clips, in the same shape as ours.
    let holiday = root.join("holiday");
    std::fs::create_dir_all(&holiday).unwrap();
    mp4(&holiday.join("beach.mp4"));
    std::fs::write(holiday.join("beach.json"), sidecar("beach")).unwrap();
    // A folder we made for a camera that has left the config: ours, removed.
    let gone = root.join("old_cam");
    std::fs::create_dir_all(&gone).unwrap();
    std::fs::write(gone.join(".ipcam-mqtt"), "made by ipcam-mqtt\n").unwrap();
    mp4(&gone.join(format!("{OURS}.mp4")));
    std::fs::write(gone.join(format!("{OURS}.json")), sidecar(OURS)).unwrap();
    // Ours once, but the user put a file in it since: left alone.
    let shared = root.join("shared_cam");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join(".ipcam-mqtt"), "made by ipcam-mqtt\n").unwrap();
    std::fs::write(shared.join("notes.txt"), "keep me").unwrap();
    // A planted sidecar in the configured camera's folder that names a path outside it.
    let victim = root.join("victim.mp4");
    mp4(&victim);
    let cam = root.join("cam");
    std::fs::create_dir_all(&cam).unwrap();
    mp4(&cam.join("x.mp4"));
    std::fs::write(cam.join("x.json"), sidecar("../victim")).unwrap();

    let broker = Mosquitto::start();
    let mqtt = broker.watch();
    let camera = Camera::start(&[]);
    // The planted clip is years old: retention would delete it, and with it whatever it names.
    let yaml = config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "clip_max_age: 7d")],
    ) + &format!("media_dir: {}\n", root.display());
    let addon = AddOn::start(&yaml);
    mqtt.wait_for(
        "ipcam/cam/stream_status/state",
        "inactive",
        Duration::from_secs(10),
    );

    assert!(holiday.join("beach.mp4").exists() && holiday.join("beach.json").exists());
    assert!(
        !gone.exists(),
        "our folder of a camera that left is removed"
    );
    assert!(
        shared.join("notes.txt").exists(),
        "a folder holding a user's file stays"
    );
    assert!(victim.exists(), "a planted sidecar never becomes a path");
    assert!(cam.join("x.mp4").exists());
    assert!(
        cam.join(".ipcam-mqtt").exists(),
        "the camera's folder is marked as ours"
    );
    // Nor is the planted clip served.
    let (status, _) = http_get(&format!(
        "http://127.0.0.1:{}/api/clips/cam/..%2Fvictim.mp4",
        addon.http_port
    ));
    assert_ne!(status, 200);
    let logs = addon.logs();
    assert!(
        logs.contains("shared_cam belongs to no configured camera but holds other files"),
        "{logs}"
    );
}
