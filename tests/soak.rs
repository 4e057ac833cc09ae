//! Long runs, left out of the README's test command: `scripts/soak.sh` runs them and prints
//! their figures. `SOAK_CYCLES` sets the number of cycles (default 100).
#![cfg(feature = "webrtc")]
mod common;
use common::whep::WhepClient;
use common::*;
use std::time::{Duration, Instant};

fn cycles() -> usize {
    std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The camera is killed and restored again and again under two RTSP viewers and one WebRTC
/// viewer: they stay connected, pictures come back, MQTT follows, and nothing piles up.
#[test]
#[ignore = "long: run by scripts/soak.sh"]
fn camera_killed_and_restored_under_viewers() {
    let Rig {
        mut addon,
        mut camera,
        mqtt,
        broker: _broker,
    } = Rig::start(&["--gop", "25"], "");
    let mut rtsp: Vec<Proc> = (0..2)
        .map(|_| {
            Proc::spawn(&mut ffmpeg_command(
                &addon.live_url("cam"),
                &[
                    "-f",
                    "null",
                    "-",
                    "-progress",
                    "pipe:1",
                    "-stats_period",
                    "0.2",
                ],
            ))
        })
        .collect();
    let webrtc = WhepClient::connect(&format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        addon.http_port
    ))
    .unwrap();
    wait_until("three viewers playing", Duration::from_secs(20), || {
        rtsp.iter().all(|v| v.decoded_frames() > 25) && webrtc.frames() > 25
    });
    let pid = addon.proc.child.id();
    let start = (threads(pid), open_fds(pid), rss_kb(pid));
    let mut resumed = Vec::new();
    let mut reconnected = Vec::new();
    let mut mqtt_offline = Vec::new();
    for cycle in 0..cycles() {
        let killed = Instant::now();
        camera.kill();
        mqtt.wait_for("ipcam/cam/status", "offline", Duration::from_secs(10));
        mqtt_offline.push(killed.elapsed().as_secs_f64());
        let before: Vec<u64> = rtsp.iter().map(Proc::decoded_frames).collect();
        let before_webrtc = webrtc.frames();
        camera.restore();
        let restored = Instant::now();
        mqtt.wait_for(
            "ipcam/cam/stream_status/state",
            "active",
            Duration::from_secs(45),
        );
        reconnected.push(restored.elapsed().as_secs_f64());
        wait_until(
            &format!("cycle {cycle}: every viewer decoding again"),
            Duration::from_secs(15),
            || {
                rtsp.iter()
                    .zip(&before)
                    .all(|(v, b)| v.decoded_frames() > *b)
                    && webrtc.frames() > before_webrtc
            },
        );
        // From the add-on's reconnect (MQTT `active`, sent at the camera's first keyframe).
        resumed.push(restored.elapsed().as_secs_f64() - reconnected[cycle]);
        mqtt.wait_for("ipcam/cam/status", "online", Duration::from_secs(5));
    }
    for viewer in &mut rtsp {
        assert!(viewer.exited().is_none(), "an RTSP viewer was dropped");
    }
    let end = (threads(pid), open_fds(pid), rss_kb(pid));
    assert!(addon.proc.exited().is_none(), "the add-on is still running");
    for figures in [&mut resumed, &mut reconnected, &mut mqtt_offline] {
        figures.sort_by(f64::total_cmp);
    }
    println!(
        "\n| camera kill/restore, {} cycles | median | p95 | max |",
        resumed.len()
    );
    println!("|---|---|---|---|");
    println!(
        "| camera restored → add-on reconnected, `active` on MQTT (s) | {:.2} | {:.2} | {:.2} |",
        percentile(&reconnected, 0.5),
        percentile(&reconnected, 0.95),
        percentile(&reconnected, 1.0)
    );
    println!(
        "| `active` → all 3 viewers decoding again (s) | {:.2} | {:.2} | {:.2} |",
        percentile(&resumed, 0.5),
        percentile(&resumed, 0.95),
        percentile(&resumed, 1.0)
    );
    println!(
        "| camera killed → MQTT status offline (s) | {:.2} | {:.2} | {:.2} |",
        percentile(&mqtt_offline, 0.5),
        percentile(&mqtt_offline, 0.95),
        percentile(&mqtt_offline, 1.0)
    );
    println!(
        "| add-on threads / fds / RSS: start → end | {} → {} | {} → {} | {} → {} kB |",
        start.0, end.0, start.1, end.1, start.2, end.2
    );
    assert!(
        end.0 <= start.0 + 4,
        "threads piled up: {start:?} → {end:?}"
    );
    assert!(end.1 <= start.1 + 4, "fds piled up: {start:?} → {end:?}");
}
