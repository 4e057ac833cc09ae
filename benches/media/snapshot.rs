//! Snapshot benchmark: `/api/frame.jpeg` latency while streaming and cold, and the CPU of the
//! interval mode, each next to a baseline measured in the same run.

use super::common::{self, Camera, Mosquitto, Proc};
use super::{CAMERA_720P, addon, children_cpu_time, cpu_percent, cpu_time, median, ms, viewer};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 15;
const CPU_WARMUP: Duration = Duration::from_secs(12);
const CPU_WINDOW: Duration = Duration::from_secs(60);

/// One `GET` over a fresh connection, timed from connect to the last byte.
fn timed_get(port: u16, path: &str) -> (Duration, u16, usize) {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let elapsed = started.elapsed();
    let status = String::from_utf8_lossy(&reply[9..12]).parse().unwrap_or(0);
    (elapsed, status, reply.len())
}

/// `ffmpeg -i <url> -frames:v 1 out.jpg`: how go2rtc-style tools and scripts make a snapshot.
fn ffmpeg_snapshot(url: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = common::ffmpeg_command(url, &["-frames:v", "1", "-y"])
        .arg(dir.path().join("out.jpg"))
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg snapshot of {url} failed");
    started.elapsed()
}

pub fn run(broker: &Mosquitto) {
    let camera = Camera::start(&CAMERA_720P);
    let url = camera.url();
    println!("\n## Snapshots (720p25 H.264, 2 s GOP; median of {RUNS}, min–max)\n");
    println!("| case | ours ms | baseline | baseline ms | ours/baseline | goal |");
    println!("|---|---|---|---|---|---|");

    // While streaming: the cached keyframe, against ffmpeg grabbing a frame from our stream.
    let streaming = addon(broker, &url, 1, "");
    broker.publish("ipcam/cam0/live_stream/command", "ON", false);
    let mqtt = broker.watch();
    mqtt.wait_for(
        "ipcam/cam0/stream_status/state",
        "active",
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(3));
    let path = "/api/frame.jpeg?src=cam0";
    let ours: Vec<f64> = (0..RUNS)
        .map(|_| {
            // Below the per-client limit (5 a second): a faster loop is answered 429.
            std::thread::sleep(Duration::from_millis(250));
            let (took, status, _) = timed_get(streaming.http_port, path);
            assert_eq!(status, 200);
            ms(took)
        })
        .collect();
    let relay: Vec<f64> = (0..RUNS)
        .map(|_| ms(ffmpeg_snapshot(&streaming.live_url("cam0"))))
        .collect();
    let (o, omin, omax) = median(ours);
    let (r, rmin, rmax) = median(relay);
    println!(
        "| while streaming | {o:.0} ({omin:.0}–{omax:.0}) | ffmpeg -frames:v 1 on our stream | {r:.0} ({rmin:.0}–{rmax:.0}) | {:.2} | ≤ 50 ms |",
        o / r
    );
    drop(streaming);

    // Cold: the camera idle before each request, against the camera's own connect + first
    // decoded keyframe (an in-process GStreamer client straight to the camera).
    let cold = addon(broker, &url, 1, "close_after: 0");
    let mqtt = broker.watch();
    let mut ours = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..RUNS {
        mqtt.wait_for(
            "ipcam/cam0/stream_status/state",
            "inactive",
            Duration::from_secs(15),
        );
        let (took, status, _) = timed_get(cold.http_port, path);
        assert_eq!(status, 200);
        ours.push(ms(took));
        direct.push(ms(viewer(&url).wait_first_frame()));
        std::thread::sleep(Duration::from_millis(500));
    }
    let (o, omin, omax) = median(ours);
    let (d, dmin, dmax) = median(direct);
    println!(
        "| cold (camera idle) | {o:.0} ({omin:.0}–{omax:.0}) | camera connect + first keyframe decoded | {d:.0} ({dmin:.0}–{dmax:.0}) | {:.2} | — |",
        o / d
    );
    drop(cold);

    interval_cpu(broker, &url);
}

/// 8 cameras in Interval mode at 10 s, against 8 ffmpeg snapshot loops at 10 s.
fn interval_cpu(broker: &Mosquitto, url: &str) {
    const CAMERAS: usize = 8;
    let ours = addon(broker, url, CAMERAS, "");
    for i in 0..CAMERAS {
        broker.publish(
            &format!("ipcam/cam{i}/snapshot_interval/command"),
            "10",
            false,
        );
        broker.publish(
            &format!("ipcam/cam{i}/snapshot_mode/command"),
            "Interval",
            false,
        );
    }
    let pid = ours.proc.child.id();
    let our_cpu = cpu_percent(&[pid], cpu_time, CPU_WARMUP, CPU_WINDOW);
    drop(ours);

    let loops: Vec<Proc> = (0..CAMERAS)
        .map(|_| {
            Proc::spawn(Command::new("bash").args([
                "-c",
                &format!(
                    "while true; do ffmpeg -v error -rtsp_transport tcp -i {url} -frames:v 1 -y /tmp/ipcam-bench-$$.jpg; sleep 10; done"
                ),
            ]))
        })
        .collect();
    let pids: Vec<u32> = loops.iter().map(|p| p.child.id()).collect();
    // A loop's ffmpeg runs are counted once waited for: its children's CPU.
    let base_cpu = cpu_percent(&pids, children_cpu_time, CPU_WARMUP, CPU_WINDOW);
    drop(loops);
    println!(
        "| CPU, Interval mode at 10 s, {CAMERAS} cameras | {our_cpu:.1} % of a core | {CAMERAS} × `ffmpeg -frames:v 1` every 10 s | {base_cpu:.1} % of a core | {:.2} | — |",
        our_cpu / base_cpu
    );
}
