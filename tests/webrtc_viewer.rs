//! The viewer page in a real headless Chromium (Debian's), driven over the DevTools protocol:
//! live WebRTC video from a camera stand-in plays, and a screenshot shows it. WHEP answers and
//! auth are checked with plain HTTP.
mod common;
use common::*;
use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A headless Chromium with its DevTools socket; killed when dropped.
struct Chromium {
    _proc: Proc,
    _profile: tempfile::TempDir,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Chromium {
    fn start() -> Option<Chromium> {
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
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
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

    fn evaluate(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        result["result"]["value"].clone()
    }
}

/// The video elements' playback: (currentTime, decoded frames, width).
fn videos(chromium: &mut Chromium) -> Vec<(f64, u64, u64)> {
    let value = chromium.evaluate(
        "JSON.stringify([...document.querySelectorAll('video')].map(v => \
         [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames, v.videoWidth]))",
    );
    let list: Vec<(f64, u64, u64)> =
        serde_json::from_str(value.as_str().unwrap_or("[]")).unwrap_or_default();
    list
}

/// Standard deviation of a PNG's grey levels: 0 for a blank page.
fn grey_spread(png: &[u8]) -> f64 {
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

#[test]
fn the_viewer_page_plays_live_webrtc_video_in_chromium() {
    let Some(mut chromium) = Chromium::start() else {
        return;
    };
    let rig = Rig::start(&[], "");
    let page = format!("http://127.0.0.1:{}/", rig.addon.http_port);
    chromium.call("Page.navigate", serde_json::json!({"url": page}));
    let started = Instant::now();
    let mut first = None;
    wait_until("the video to play", Duration::from_secs(20), || {
        let playing = videos(&mut chromium);
        if first.is_none() && playing.first().is_some_and(|v| v.1 > 0) {
            first = Some(started.elapsed());
        }
        playing.first().is_some_and(|v| v.0 > 1.0 && v.1 > 10)
    });
    let before = videos(&mut chromium)[0];
    std::thread::sleep(Duration::from_secs(2));
    let after = videos(&mut chromium)[0];
    assert!(
        after.0 > before.0 + 1.0,
        "currentTime advances: {before:?} → {after:?}"
    );
    assert!(
        after.1 > before.1 + 20,
        "frames are decoded: {before:?} → {after:?}"
    );
    assert_eq!(after.2, 320, "the camera's width");
    eprintln!("first frame in the browser after {:?}", first.unwrap());

    let shot = chromium.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64_decode(shot["data"].as_str().unwrap());
    let spread = grey_spread(&png);
    assert!(
        spread > 10.0,
        "the screenshot is not blank (grey spread {spread:.1})"
    );

    let streams: serde_json::Value = serde_json::from_slice(
        &http_get(&format!(
            "http://127.0.0.1:{}/api/streams",
            rig.addon.http_port
        ))
        .1,
    )
    .unwrap();
    assert_eq!(streams["cam"]["viewers"]["webrtc"], 1, "{streams}");
    assert_eq!(streams["cam"]["status"], "active");
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.wait().unwrap();
    out
}

#[test]
fn signalling_answers_clearly_and_needs_credentials_when_set() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let yaml = config(broker.port, free_port(), &[("cam", &camera.url(), "")]).replacen(
        "http:\n  port:",
        "http:\n  username: viewer\n  password: s3cret\n  port:",
        1,
    );
    let addon = AddOn::start(&yaml);
    let base = format!("http://127.0.0.1:{}", addon.http_port);
    let post = |path: &str, body: &str, auth: bool| {
        let mut args = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/sdp",
            "--data-binary",
            body,
        ];
        if auth {
            args.extend(["-u", "viewer:s3cret"]);
        }
        http_get_with(&format!("{base}{path}"), &args)
    };
    assert_eq!(post("/api/webrtc?src=cam", "v=0", false).0, 401);
    assert_eq!(http_get(&format!("{base}/")).0, 401, "the viewer page too");
    assert_eq!(http_get(&format!("{base}/api/streams")).0, 401);
    let (status, body) = post("/api/webrtc?src=cam", "hello", true);
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("offer"),
        "one line naming the problem"
    );
    assert_eq!(post("/api/webrtc?src=nope", "v=0", true).0, 404);
    let (status, about) = http_get_with(&format!("{base}/api"), &["-u", "viewer:s3cret"]);
    assert_eq!(status, 200);
    let about: serde_json::Value = serde_json::from_slice(&about).unwrap();
    assert_eq!(about["name"], "ipcam-mqtt");
    let (status, _) = http_get_with(&format!("{base}/"), &["-I", "-u", "viewer:s3cret"]);
    assert_eq!(status, 200, "HEAD / answers, for clients that probe");
}

/// A WHEP peer that is not a browser: webrtcbin receiving H.264 + Opus and decoding the video.
struct WhepClient {
    pipeline: gstreamer::Pipeline,
    frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
    location: String,
}

impl WhepClient {
    /// WHEP: the offer is POSTed as SDP; the answer comes back with a `Location`.
    fn connect(url: &str) -> Result<WhepClient, String> {
        Self::signal(|offer| {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-D",
                    "-",
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/sdp",
                ])
                .args(["--data-binary", offer, url])
                .output()
                .unwrap();
            let reply = String::from_utf8_lossy(&out.stdout).to_string();
            let (head, answer) = reply.split_once("\r\n\r\n").ok_or("no HTTP reply")?;
            if !head.starts_with("HTTP/1.1 201") {
                return Err(reply);
            }
            let location = head
                .lines()
                .find_map(|l| l.strip_prefix("location: "))
                .ok_or("no Location")?
                .to_string();
            Ok((answer.to_string(), location))
        })
    }

    /// go2rtc's WebSocket API; the socket closes when the returned guard drops.
    fn connect_ws(url: &str) -> Result<(WhepClient, impl Drop), String> {
        let (socket, _) = tungstenite::connect(url).map_err(|e| e.to_string())?;
        let socket = std::cell::RefCell::new(socket);
        let client = Self::signal(|offer| {
            let mut socket = socket.borrow_mut();
            let message = serde_json::json!({"type": "webrtc/offer", "value": offer});
            socket
                .send(tungstenite::Message::Text(message.to_string()))
                .map_err(|e| e.to_string())?;
            let reply = socket.read().map_err(|e| e.to_string())?;
            let reply: serde_json::Value =
                serde_json::from_str(reply.to_text().unwrap_or_default()).unwrap_or_default();
            if reply["type"] != "webrtc/answer" {
                return Err(reply.to_string());
            }
            Ok((
                reply["value"].as_str().unwrap_or_default().to_string(),
                String::new(),
            ))
        })?;
        struct Socket(tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>);
        impl Drop for Socket {
            fn drop(&mut self) {
                let _ = self.0.close(None);
                let _ = self.0.flush();
            }
        }
        Ok((client, Socket(socket.into_inner())))
    }

    fn signal(
        exchange: impl FnOnce(&str) -> Result<(String, String), String>,
    ) -> Result<WhepClient, String> {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        use gstreamer_webrtc as gst_webrtc;
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .unwrap();
        pipeline.add(&webrtc).unwrap();
        let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = frames.clone();
        let weak = pipeline.downgrade();
        webrtc.connect_pad_added(move |_, pad| {
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let decode = gst::ElementFactory::make("decodebin").build().unwrap();
            pipeline.add(&decode).unwrap();
            decode.sync_state_with_parent().unwrap();
            pad.link(&decode.static_pad("sink").unwrap()).unwrap();
            let counted = counted.clone();
            let weak = pipeline.downgrade();
            decode.connect_pad_added(move |_, pad| {
                let Some(pipeline) = weak.upgrade() else {
                    return;
                };
                let video = pad.current_caps().is_some_and(|c| {
                    c.structure(0)
                        .is_some_and(|s| s.name().starts_with("video/"))
                });
                let sink = gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build()
                    .unwrap();
                pipeline.add(&sink).unwrap();
                sink.sync_state_with_parent().unwrap();
                pad.link(&sink.static_pad("sink").unwrap()).unwrap();
                if video {
                    let counted = counted.clone();
                    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        gst::PadProbeReturn::Ok
                    });
                }
            });
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        for caps in [
            "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f",
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000",
        ] {
            let caps = gst::Caps::from_str(caps).unwrap();
            let _: gst_webrtc::WebRTCRTPTransceiver = webrtc.emit_by_name(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let promise = gst::Promise::with_change_func(move |reply| {
            let offer = reply.ok().flatten().and_then(|s| {
                s.value("offer")
                    .ok()?
                    .get::<gst_webrtc::WebRTCSessionDescription>()
                    .ok()
            });
            let _ = tx.send(offer);
        });
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        let offer = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        webrtc.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
        wait_until("ICE gathering", Duration::from_secs(5), || {
            webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                == gst_webrtc::WebRTCICEGatheringState::Complete
        });
        let offer = webrtc
            .property::<gst_webrtc::WebRTCSessionDescription>("local-description")
            .sdp()
            .as_text()
            .unwrap();
        let (answer, location) = exchange(&offer)?;
        let answer = gstreamer_sdp::SDPMessage::parse_buffer(answer.as_bytes()).unwrap();
        let answer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, answer);
        webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &None::<gst::Promise>]);
        Ok(WhepClient {
            pipeline,
            frames,
            location,
        })
    }

    fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for WhepClient {
    fn drop(&mut self) {
        use gstreamer::prelude::*;
        let _ = self.pipeline.set_state(gstreamer::State::Null);
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn go2rtc_websocket_signalling_plays_and_closing_the_socket_ends_the_session() {
    let rig = Rig::start(&[], "");
    let streams_url = format!("http://127.0.0.1:{}/api/streams", rig.addon.http_port);
    let webrtc_viewers = || {
        let streams: serde_json::Value =
            serde_json::from_slice(&http_get(&streams_url).1).unwrap_or_default();
        streams["cam"]["viewers"]["webrtc"].as_u64().unwrap_or(99)
    };
    let url = format!("ws://127.0.0.1:{}/api/ws?src=cam", rig.addon.http_port);
    let (client, socket) = WhepClient::connect_ws(&url).unwrap();
    wait_until(
        "decoded frames over the WebSocket API",
        Duration::from_secs(15),
        || client.frames() > 25,
    );
    assert_eq!(webrtc_viewers(), 1);
    drop(socket);
    wait_until(
        "the session to end with its socket",
        Duration::from_secs(5),
        || webrtc_viewers() == 0,
    );
}

#[test]
fn whep_peers_decode_video_and_ten_joining_and_leaving_leak_nothing() {
    let rig = Rig::start(&[], "");
    let url = format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        rig.addon.http_port
    );
    let first = WhepClient::connect(&url).unwrap();
    wait_until("decoded frames over WHEP", Duration::from_secs(15), || {
        first.frames() > 25
    });
    // WHEP's DELETE ends the session.
    let session = format!(
        "http://127.0.0.1:{}/api/{}",
        rig.addon.http_port, first.location
    );
    assert_eq!(http_get_with(&session, &["-X", "DELETE"]).0, 200);
    drop(first);

    let pid = rig.addon.proc.child.id();
    let mut samples = Vec::new();
    for round in 0..4 {
        let viewers: Vec<WhepClient> = (0..10)
            .map(|_| WhepClient::connect(&url).unwrap())
            .collect();
        wait_until("ten viewers decoding", Duration::from_secs(20), || {
            viewers.iter().all(|v| v.frames() > 5)
        });
        drop(viewers);
        // Leaving viewers are noticed by their connection state; let the sessions go.
        wait_until("the viewers to be gone", Duration::from_secs(40), || {
            let streams: serde_json::Value = serde_json::from_slice(
                &http_get(&format!(
                    "http://127.0.0.1:{}/api/streams",
                    rig.addon.http_port
                ))
                .1,
            )
            .unwrap_or_default();
            streams["cam"]["viewers"]["webrtc"] == 0
        });
        std::thread::sleep(Duration::from_secs(1));
        samples.push((open_fds(pid), rss_kb(pid)));
        eprintln!(
            "round {round}: {} fds, {} kB RSS",
            samples[round].0, samples[round].1
        );
    }
    // After the first round has warmed everything up, nothing grows.
    let (fds, rss) = (samples[1], samples[3]);
    assert!(rss.0 <= fds.0 + 2, "fds grew: {samples:?}");
    assert!(
        rss.1 <= fds.1 + 8 * 1024,
        "RSS grew more than 8 MB over two rounds: {samples:?}"
    );
}
