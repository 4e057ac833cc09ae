//! MSE beside WebRTC, on one 4 s-GOP camera in one run: the viewer page's time to first frame
//! and delay behind live (the camera's timecode read off each frame shown) over WebRTC and over
//! MSE (the same page with `RTCPeerConnection` removed, as where WebRTC is missing); then the
//! add-on's CPU for a camera's muxer and per further MSE viewer.

use super::CAMERA_720P;
use super::common::browser::Chromium;
use super::common::{Camera, Mosquitto};
use super::webrtc::{PageFigures, measure_page, streaming_addon, window};
use std::time::Duration;

/// Further MSE viewers, each a WebSocket client reading every segment.
const VIEWERS: usize = 10;

pub fn run(broker: &Mosquitto) {
    let Some(mut chromium) = Chromium::start() else {
        println!("MSE benchmark skipped: chromium is missing");
        return;
    };
    println!();
    println!("## MSE beside WebRTC (720p25 H.264 with a 4 s GOP, G.711 audio)");
    println!();
    println!("| measure | MSE | WebRTC | MSE/WebRTC | goal |");
    println!("|---|---|---|---|---|");
    let mut args = CAMERA_720P.to_vec();
    args[5] = "100";
    args.push("--timecode");
    let camera = Camera::start(&args);
    let addon = streaming_addon(broker, &camera);
    let webrtc = measure_page(&mut chromium, &addon);
    chromium.call("Page.enable", serde_json::json!({}));
    let without_webrtc = chromium.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({"source": "delete window.RTCPeerConnection;"}),
    );
    let mse = measure_page(&mut chromium, &addon);
    chromium.call(
        "Page.removeScriptToEvaluateOnNewDocument",
        serde_json::json!({"identifier": without_webrtc["identifier"]}),
    );
    chromium.call("Page.navigate", serde_json::json!({"url": "about:blank"}));
    compare(
        "time to first frame (page load → first decoded frame), median of 3",
        &mse,
        &webrtc,
        |f| Some(f.firsts[1]),
        1000.0,
    );
    compare(
        "delay behind live (glass to glass), median",
        &mse,
        &webrtc,
        |f| f.latency(0.5),
        500.0,
    );
    compare(
        "delay behind live, p95",
        &mse,
        &webrtc,
        |f| f.latency(0.95),
        500.0,
    );
    drop(chromium);

    std::thread::sleep(Duration::from_secs(5));
    let pid = addon.proc.child.id();
    let idle = window(pid, 2);
    let url = format!("ws://127.0.0.1:{}/api/ws?src=cam0", addon.http_port);
    let first = Reader::start(&url);
    let one = window(pid, 4);
    let more: Vec<Reader> = (0..VIEWERS).map(|_| Reader::start(&url)).collect();
    let many = window(pid, 4);
    let per_viewer = (many - one) / VIEWERS as f64;
    println!(
        "| CPU of a camera's first MSE viewer, its muxer included (minus the streaming add-on's idle) | {:.2} % of a core | — | — | — |",
        one - idle
    );
    println!(
        "| CPU per further MSE viewer ({VIEWERS} WebSocket readers) | {per_viewer:.3} % of a core | — | — | ≤ 0.2 % {} |",
        if per_viewer <= 0.2 { "✔" } else { "✘" }
    );
    let segments: usize = more.into_iter().chain([first]).map(Reader::stop).sum();
    assert!(segments > 0, "the MSE readers got nothing");
}

fn compare(
    what: &str,
    mse: &PageFigures,
    webrtc: &PageFigures,
    figure: impl Fn(&PageFigures) -> Option<f64>,
    goal_ms: f64,
) {
    let show = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0} ms"));
    let (m, w) = (figure(mse), figure(webrtc));
    let ratio = match (m, w) {
        (Some(m), Some(w)) if w > 0.0 => format!("{:.2}", m / w),
        _ => "—".into(),
    };
    let met = if m.is_some_and(|m| m <= goal_ms) {
        "✔"
    } else {
        "✘"
    };
    println!(
        "| {what} | {} | {} | {ratio} | MSE ≤ {goal_ms:.0} ms {met} |",
        show(m),
        show(w)
    );
}

/// A go2rtc-style MSE client in a thread, reading segments until stopped.
struct Reader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Reader {
    fn start(url: &str) -> Reader {
        let (mut socket, _) = tungstenite::connect(url).unwrap();
        let request = serde_json::json!({"type": "mse", "value": "avc1.640029,mp4a.40.2"});
        socket
            .send(tungstenite::Message::Text(request.to_string()))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut segments = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                match socket.read() {
                    Ok(tungstenite::Message::Binary(_)) => segments += 1,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            segments
        });
        Reader { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
