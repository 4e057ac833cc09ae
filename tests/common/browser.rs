//! A headless Chromium (Debian's) driven over the DevTools protocol, for the viewer page test
//! and the WebRTC benchmark.

use super::{Proc, free_port, http_get, wait_until};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// A headless Chromium with its DevTools socket; killed when dropped.
pub struct Chromium {
    _proc: Proc,
    _profile: tempfile::TempDir,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Chromium {
    pub fn start() -> Option<Chromium> {
        if Command::new("chromium").arg("--version").output().is_err() {
            eprintln!("SKIP: chromium is not installed (scripts/setup.sh installs it)");
            return None;
        }
        let port = free_port();
        let profile = tempfile::tempdir().unwrap();
        let proc = Proc::spawn(Command::new("chromium").args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--autoplay-policy=no-user-gesture-required",
            "--window-size=1280,720",
            &format!("--remote-debugging-port={port}"),
            &format!("--user-data-dir={}", profile.path().display()),
            "about:blank",
        ]));
        let mut page = None;
        wait_until("Chromium's DevTools", Duration::from_secs(20), || {
            let (status, body) = http_get(&format!("http://127.0.0.1:{port}/json/list"));
            page = (status == 200)
                .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .flatten()
                .and_then(|list| {
                    list.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                        .as_str()
                        .map(str::to_string)
                });
            page.is_some()
        });
        let (socket, _) = tungstenite::connect(page.unwrap()).unwrap();
        Some(Chromium {
            _proc: proc,
            _profile: profile,
            socket,
            next_id: 0,
        })
    }

    /// Sends a DevTools command and returns its result.
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = serde_json::json!({"id": id, "method": method, "params": params});
        self.socket
            .send(tungstenite::Message::Text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Ok(text) = reply.to_text() else { continue };
            let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    pub fn evaluate(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }
}

/// The video elements' playback: (currentTime, decoded frames, width).
pub fn videos(chromium: &mut Chromium) -> Vec<(f64, u64, u64)> {
    let value = chromium.evaluate(
        "JSON.stringify([...document.querySelectorAll('video')].map(v => \
         [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames, v.videoWidth]))",
    );
    let list: Vec<(f64, u64, u64)> =
        serde_json::from_str(value.as_str().unwrap_or("[]")).unwrap_or_default();
    list
}

/// The path each tile of the viewer page is on (`webrtc` or `mse`).
pub fn paths(chromium: &mut Chromium) -> Vec<String> {
    let value = chromium.evaluate(
        "JSON.stringify([...document.querySelectorAll('.cam')].map(c => c.dataset.path))",
    );
    serde_json::from_str(value.as_str().unwrap_or("[]")).unwrap_or_default()
}

/// The page as a PNG, checked not to be blank.
pub fn screenshot(chromium: &mut Chromium, what: &str) -> Vec<u8> {
    let shot = chromium.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64_decode(shot["data"].as_str().unwrap());
    let spread = grey_spread(&png);
    assert!(
        spread > 10.0,
        "{what}: the screenshot is blank (grey spread {spread:.1})"
    );
    png
}

/// Standard deviation of a PNG's grey levels: 0 for a blank page.
pub fn grey_spread(png: &[u8]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot.png");
    std::fs::write(&path, png).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", path.to_str().unwrap()])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    let pixels = &out.stdout;
    let mean = pixels.iter().map(|p| f64::from(*p)).sum::<f64>() / pixels.len() as f64;
    (pixels
        .iter()
        .map(|p| (f64::from(*p) - mean).powi(2))
        .sum::<f64>()
        / pixels.len() as f64)
        .sqrt()
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("DevTools sends valid base64")
}
