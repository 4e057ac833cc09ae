//! WebRTC: glass-to-glass latency in headless Chromium (the test camera stamps its wall clock
//! into each frame; the page reads it back off the decoded frame), time to first frame in the
//! browser, and the add-on's CPU per WebRTC viewer against its CPU per RTSP viewer; the same
//! through the H.265 → H.264 transcoder, whose CPU is set against ffmpeg's libx264.

use super::common::browser::{Chromium, videos};
use super::common::whep::WhepClient;
use super::common::{self, Camera, Mosquitto, Proc, free_port, wait_until};
use super::{CAMERA_720P, cpu_percent, cpu_time};
use std::time::{Duration, Instant};

const VIEWERS: usize = 5;

/// Installed in the page: on every frame shown, decode the 32-block timecode and keep
/// `Date.now()` minus it, in ms.
const READ_TIMECODE: &str = r#"(() => {
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  canvas.width = 512; canvas.height = 16;
  const g = canvas.getContext('2d', { willReadFrequently: true });
  window.latencies = [];
  const tick = () => {
    if (video.videoWidth >= 512) {
      g.drawImage(video, 0, 0, 512, 16, 0, 0, 512, 16);
      const d = g.getImageData(0, 0, 512, 16).data;
      let stamp = 0;
      for (let i = 0; i < 32; i++) stamp = stamp * 2 + (d[(8 * 512 + i * 16 + 8) * 4] > 128 ? 1 : 0);
      let late = Date.now() % 4294967296 - stamp;
      if (late < 0) late += 4294967296;
      if (late < 5000) window.latencies.push(late);
    }
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
  return true;
})()"#;

pub fn run(broker: &Mosquitto) {
    let Some(mut chromium) = Chromium::start() else {
        println!("WebRTC benchmark skipped: chromium is missing");
        return;
    };
    println!();
    println!("## WebRTC");
    println!();
    println!("| measure | ipcam-mqtt | baseline | baseline value | ratio | goal |");
    println!("|---|---|---|---|---|---|");
    let camera = Camera::start(&[&CAMERA_720P[..], &["--timecode"]].concat());
    let addon = streaming_addon(broker, &camera);
    in_chromium(&mut chromium, &addon, "H.264 camera, passed through");

    let pid = addon.proc.child.id();
    let idle = window(pid, 2);
    let url = format!("http://127.0.0.1:{}/api/webrtc?src=cam0", addon.http_port);
    let webrtc: Vec<WhepClient> = (0..VIEWERS)
        .map(|_| WhepClient::connect(&url).unwrap())
        .collect();
    let with_webrtc = window(pid, 4);
    drop(webrtc);
    std::thread::sleep(Duration::from_secs(10));
    let rtsp: Vec<Proc> = (0..VIEWERS)
        .map(|_| {
            Proc::spawn(&mut common::ffmpeg_command(
                &addon.live_url("cam0"),
                &["-c", "copy", "-f", "null", "-"],
            ))
        })
        .collect();
    let with_rtsp = window(pid, 4);
    drop(rtsp);
    let per_webrtc = (with_webrtc - idle) / VIEWERS as f64;
    let per_rtsp = (with_rtsp - idle) / VIEWERS as f64;
    println!(
        "| CPU per WebRTC viewer ({VIEWERS} webrtcbin peers, shared Opus) | {per_webrtc:.2} % of a core | per RTSP viewer ({VIEWERS} × ffmpeg `-c copy`) | {per_rtsp:.2} % | {:.2} | — |",
        per_webrtc / per_rtsp
    );
    drop((addon, camera));

    // An H.265 camera for a browser without H.265: through the shared transcoder.
    let camera = Camera::start(&[&CAMERA_720P[..], &["--timecode", "--video", "h265"]].concat());
    let addon = streaming_addon(broker, &camera);
    in_chromium(&mut chromium, &addon, "H.265 camera, transcoded to H.264");
    drop(chromium);
    std::thread::sleep(Duration::from_secs(10));
    let pid = addon.proc.child.id();
    let idle = window(pid, 2);
    let viewer = WhepClient::connect(&format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam0",
        addon.http_port
    ))
    .unwrap_or_else(|e| {
        let metrics = |_| {
            let out = std::process::Command::new("curl")
                .args([
                    "-s",
                    &format!("http://127.0.0.1:{}/metrics", addon.http_port),
                ])
                .output()
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let (a, b) = (metrics(0), metrics(1));
        panic!("{e}\n{}\nMETRICS A\n{a}\nMETRICS B\n{b}", addon.logs())
    });
    let transcoding = window(pid, 4) - idle;
    drop(viewer);
    std::thread::sleep(Duration::from_secs(10));
    let ffmpeg = Proc::spawn(&mut common::ffmpeg_command(
        &addon.live_url("cam0"),
        &[
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-f",
            "null",
            "-",
        ],
    ));
    let baseline = window(ffmpeg.child.id(), 4);
    println!(
        "| CPU of H.265 → H.264 for WebRTC, 720p25 (add-on with one viewer, minus idle) | {transcoding:.1} % of a core | ffmpeg `-c:v libx264 -preset ultrafast -tune zerolatency` of the same stream | {baseline:.1} % | {:.2} | — |",
        transcoding / baseline
    );
}

pub fn window(pid: u32, warmup: u64) -> f64 {
    cpu_percent(
        &[pid],
        cpu_time,
        Duration::from_secs(warmup),
        Duration::from_secs(10),
    )
}

/// The add-on serving `camera` as `cam0`, with the stream already on.
pub fn streaming_addon(broker: &Mosquitto, camera: &Camera) -> common::AddOn {
    let addon = common::AddOn::start(&common::config(
        broker.port,
        free_port(),
        &[("cam0", &camera.url(), "")],
    ));
    broker.publish("ipcam/cam0/live_stream/command", "ON", false);
    std::thread::sleep(Duration::from_secs(3));
    addon
}

/// What the viewer page did in Chromium: page load to first decoded frame (3 loads, sorted, ms)
/// and the glass-to-glass latencies of 10 s of frames (sorted, ms).
pub struct PageFigures {
    pub firsts: Vec<f64>,
    pub latencies: Vec<f64>,
}

impl PageFigures {
    pub fn latency(&self, q: f64) -> Option<f64> {
        let last = self.latencies.len().checked_sub(1)?;
        Some(self.latencies[(last as f64 * q) as usize])
    }
}

/// Loads the viewer page of `addon` three times, then reads the timecode off 10 s of frames.
pub fn measure_page(chromium: &mut Chromium, addon: &common::AddOn) -> PageFigures {
    let page = format!("http://127.0.0.1:{}/", addon.http_port);
    let mut firsts = Vec::new();
    for _ in 0..3 {
        chromium.call("Page.navigate", serde_json::json!({"url": "about:blank"}));
        let asked = Instant::now();
        chromium.call("Page.navigate", serde_json::json!({"url": page}));
        wait_until("a frame in the browser", Duration::from_secs(20), || {
            videos(chromium).first().is_some_and(|v| v.1 > 0)
        });
        firsts.push(asked.elapsed().as_secs_f64() * 1000.0);
    }
    firsts.sort_by(f64::total_cmp);
    chromium.evaluate(READ_TIMECODE);
    std::thread::sleep(Duration::from_secs(10));
    let mut latencies: Vec<f64> =
        serde_json::from_value(chromium.evaluate("window.latencies")).unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    PageFigures { firsts, latencies }
}

/// Time to first frame and glass-to-glass latency of the viewer page in Chromium.
fn in_chromium(chromium: &mut Chromium, addon: &common::AddOn, what: &str) {
    let figures = measure_page(chromium, addon);
    let firsts = &figures.firsts;
    println!(
        "| time to first frame in Chromium, {what} (page load → first decoded frame, camera streaming) | {:.0} ms median ({:.0}–{:.0}) | — | — | — | — |",
        firsts[1], firsts[0], firsts[2]
    );
    match (figures.latency(0.5), figures.latency(0.95)) {
        (Some(median), Some(p95)) => println!(
            "| glass-to-glass latency on loopback, 720p25, {what} ({} frames) | {median:.0} ms median (p95 {p95:.0}) | — | — | — | ≤ 150 ms {} |",
            figures.latencies.len(),
            if median <= 150.0 { "✔" } else { "✘" }
        ),
        _ => println!("| glass-to-glass latency, {what} | no timecode read | | | | ≤ 150 ms ✘ |"),
    }
}
