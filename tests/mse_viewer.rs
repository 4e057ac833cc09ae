//! The path that goes anywhere HTTP goes: fragmented MP4 over go2rtc's `/api/ws` (`mse`) and
//! `GET /api/stream.mp4`, read by real clients (a WebSocket client, ffprobe, ffmpeg), and the
//! viewer page in a real headless Chromium taking it by itself when WebRTC is missing or cannot
//! connect (the add-on in a network namespace whose UDP is dropped, reached through a TCP
//! forward, as through a tunnel).
mod common;
use common::browser::{Chromium, screenshot, videos};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// The MSE exchange as go2rtc's clients make it: the `mse` reply, then `seconds` of binary
/// segments.
fn mse_over_websocket(
    http_port: u16,
    codecs: &str,
    seconds: u64,
) -> Result<(String, Vec<u8>, usize), String> {
    let url = format!("ws://127.0.0.1:{http_port}/api/ws?src=cam");
    let (mut socket, _) = tungstenite::connect(url.as_str()).map_err(|e| e.to_string())?;
    let request = serde_json::json!({"type": "mse", "value": codecs});
    socket
        .send(tungstenite::Message::Text(request.to_string()))
        .map_err(|e| e.to_string())?;
    let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() else {
        return Err("not a plain socket".into());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let reply = socket.read().map_err(|e| e.to_string())?;
    let reply: serde_json::Value =
        serde_json::from_str(reply.to_text().map_err(|e| e.to_string())?).unwrap_or_default();
    if reply["type"] != "mse" {
        return Err(format!("the reply was {reply}"));
    }
    let mime = reply["value"].as_str().unwrap_or_default().to_string();
    let (mut bytes, mut segments) = (Vec::new(), 0);
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        match socket.read().map_err(|e| e.to_string())? {
            tungstenite::Message::Binary(data) => {
                bytes.extend_from_slice(&data);
                segments += 1;
            }
            other => return Err(format!("a message that is not a segment: {other:?}")),
        }
    }
    Ok((mime, bytes, segments))
}

/// ffprobe's codec names for the file, and ffmpeg's decoding errors.
fn probe_and_decode(path: &std::path::Path) -> (Vec<String>, String, usize) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    (
        codecs,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        frames,
    )
}

#[test]
fn mse_over_the_websocket_names_its_codecs_and_its_segments_demux_as_h264_and_aac() {
    // A G.711 camera, as most are: its audio arrives as AAC.
    let rig = Rig::start(&["--audio", "pcma"], "");
    let (mime, bytes, segments) = mse_over_websocket(
        rig.addon.http_port,
        "avc1.640029,avc1.64002A,mp4a.40.2,opus",
        4,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.addon.logs()));
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.") && mime.ends_with(",mp4a.40.2\""),
        "{mime}"
    );
    // 4 s at 25 fps, one fragment per frame after the init segment and the burst.
    assert!(segments > 50, "{segments} segments in 4 s");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mse.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let (codecs, errors, frames) = probe_and_decode(&path);
    assert_eq!(codecs, ["h264", "aac"]);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    assert!(frames > 50, "{frames} frames decoded");

    // A client that lists no AAC gets video alone; one that lists nothing, H.264 and AAC.
    let (mime, _, _) = mse_over_websocket(rig.addon.http_port, "avc1.640029", 1).unwrap();
    assert!(!mime.contains("mp4a"), "{mime}");
    let (mime, _, _) = mse_over_websocket(rig.addon.http_port, "", 1).unwrap();
    assert!(mime.contains("mp4a.40.2"), "{mime}");
}

/// go2rtc's clients (the WebRTC Camera card) ask for MSE and WebRTC on one socket and keep
/// whichever plays first: an offer on an MSE socket is answered, and the segments go on.
#[test]
fn an_mse_socket_still_takes_webrtc_messages() {
    let rig = Rig::start(&[], "");
    let url = format!("ws://127.0.0.1:{}/api/ws?src=cam", rig.addon.http_port);
    let (mut socket, _) = tungstenite::connect(url.as_str()).unwrap();
    let send = |socket: &mut tungstenite::WebSocket<_>, value: serde_json::Value| {
        socket
            .send(tungstenite::Message::Text(value.to_string()))
            .unwrap()
    };
    send(
        &mut socket,
        serde_json::json!({"type": "mse", "value": "avc1.640029"}),
    );
    // A malformed offer gets go2rtc's error reply, on the same socket, between segments.
    send(
        &mut socket,
        serde_json::json!({"type": "webrtc/offer", "value": "v=0"}),
    );
    let (mut texts, mut segments) = (Vec::new(), 0);
    // 4 s of a 25 fps stream: the replies come first, the segments go on after them.
    while segments < 100 {
        match socket.read().unwrap() {
            tungstenite::Message::Text(text) => {
                texts.push(serde_json::from_str::<serde_json::Value>(&text).unwrap())
            }
            tungstenite::Message::Binary(_) => segments += 1,
            _ => {}
        }
    }
    let kinds: Vec<&str> = texts
        .iter()
        .map(|t| t["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["mse", "error"], "{texts:?}");
}

#[test]
fn stream_mp4_plays_in_ffprobe_and_ffmpeg_and_never_ends_by_itself() {
    let rig = Rig::start(&["--audio", "aac"], "");
    let url = format!(
        "http://127.0.0.1:{}/api/stream.mp4?src=cam",
        rig.addon.http_port
    );
    let codecs = ffprobe_codecs(&url, "tcp")
        .unwrap_or_else(|e| panic!("ffprobe: {e}\n{}", rig.addon.logs()));
    assert_eq!(codecs, ["h264", "aac"]);
    // 3 s of it decoded by ffmpeg, which stops only because it was told to.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i", &url, "-t", "3", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("0,"))
        .count();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(frames >= 60, "{frames} frames in 3 s; ffmpeg: {errors}");
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
}

#[test]
fn an_h265_camera_goes_as_h265_to_a_client_that_lists_it_and_transcoded_to_others() {
    let rig = Rig::start(&["--video", "h265", "--audio", "aac"], "");
    let port = rig.addon.http_port;
    let dir = tempfile::tempdir().unwrap();
    for (codecs, expected, transcoded) in [
        ("avc1.640029,hvc1.1.6.L153.B0,mp4a.40.2", "hevc", 0),
        ("avc1.640029,mp4a.40.2", "h264", 1),
    ] {
        let (mime, bytes, _) = mse_over_websocket(port, codecs, 4)
            .unwrap_or_else(|e| panic!("{e}\n{}", rig.addon.logs()));
        let path = dir.path().join(format!("{expected}.mp4"));
        std::fs::write(&path, &bytes).unwrap();
        let (found, errors, frames) = probe_and_decode(&path);
        assert_eq!(found, [expected, "aac"], "{mime}");
        assert!(errors.trim().is_empty(), "{expected}: ffmpeg: {errors}");
        assert!(frames > 10, "{expected}: {frames} frames decoded");
        let logs = rig.addon.logs();
        assert_eq!(
            logs.matches("transcoding started").count(),
            transcoded,
            "{logs}"
        );
    }
}

#[test]
fn mqtt_off_ends_the_mse_stream_at_once() {
    let rig = Rig::start(&[], "");
    let url = format!("ws://127.0.0.1:{}/api/ws?src=cam", rig.addon.http_port);
    let (mut socket, _) = tungstenite::connect(url.as_str()).unwrap();
    let request = serde_json::json!({"type": "mse", "value": "avc1.640029,mp4a.40.2"});
    socket
        .send(tungstenite::Message::Text(request.to_string()))
        .unwrap();
    // Playing: the reply, the init segment and some fragments.
    for _ in 0..20 {
        socket.read().unwrap();
    }
    let off = Instant::now();
    rig.broker
        .publish("ipcam/cam/live_stream/command", "OFF", false);
    let closed = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break off.elapsed(),
            Ok(_) if off.elapsed() > Duration::from_secs(10) => {
                panic!("still streaming 10 s after OFF\n{}", rig.addon.logs())
            }
            Ok(_) => {}
        }
    };
    assert!(
        closed < Duration::from_secs(3),
        "closed {closed:?} after OFF"
    );
    wait_until("the camera to stop", Duration::from_secs(10), || {
        rig.mqtt.last("ipcam/cam/live_stream/state").as_deref() == Some("OFF")
    });
}

/// A raw request's status line and headers.
fn head(port: u16, path: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while !seen.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        seen.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&seen).into_owned())
}

#[test]
fn mse_takes_the_apis_limits_and_refuses_other_sites_and_a_viewer_too_many() {
    let rig = Rig::start(&[], "");
    let port = rig.addon.http_port;
    // Another site's page may not open the stream (a WebSocket, or a video tag's request).
    let (_, reply) = head(
        port,
        "/api/stream.mp4?src=cam",
        "Origin: http://evil.example\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    // Nor embed it in a video tag, which sends no Origin but says where it comes from.
    let (_, reply) = head(
        port,
        "/api/stream.mp4?src=cam",
        "Sec-Fetch-Site: cross-site\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    let (_, reply) = head(port, "/api/stream.mp4?src=nope", "");
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    // The cap: 16 viewers of a camera play; the 17th is told why it is refused.
    let mut held = Vec::new();
    for i in 0..16 {
        let (stream, reply) = head(port, "/api/stream.mp4?src=cam", "");
        assert!(reply.starts_with("HTTP/1.1 200"), "viewer {i}: {reply}");
        held.push(stream);
    }
    let (mut refused, reply) = head(port, "/api/stream.mp4?src=cam", "Connection: close\r\n");
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    let mut body = String::new();
    let _ = refused.read_to_string(&mut body);
    assert!(body.contains("16 MSE viewers"), "{body}");
    let streams: serde_json::Value =
        serde_json::from_slice(&http_get(&format!("http://127.0.0.1:{port}/api/streams")).1)
            .unwrap();
    assert_eq!(streams["cam"]["viewers"]["mse"], 16);
    // One muxer for them all.
    assert_eq!(rig.addon.logs().matches("MSE muxer started").count(), 1);
    drop(held);
    wait_until("the viewers to be gone", Duration::from_secs(10), || {
        let streams: serde_json::Value =
            serde_json::from_slice(&http_get(&format!("http://127.0.0.1:{port}/api/streams")).1)
                .unwrap_or_default();
        streams["cam"]["viewers"]["mse"] == 0
    });
}

/// Where screenshots go: kept as test artifacts, never committed.
fn artifact(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The page at `url` plays through MSE: its tile says so, and its video's `currentTime` moves
/// on by more than 2 s from where its first frame put it (MSE times are the camera's, not 0).
fn plays_over_mse(chromium: &mut Chromium, url: &str, logs: &dyn Fn() -> String) {
    chromium.call("Page.navigate", serde_json::json!({"url": url}));
    let mut last = (Vec::new(), serde_json::Value::Null);
    let mut first: Option<(f64, u64)> = None;
    let playing = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let path = chromium.evaluate(
            "JSON.stringify([...document.querySelectorAll('.cam')].map(c => [c.dataset.path, c.dataset.status]))",
        );
        last = (videos(chromium), path);
        let on_mse = last.1.as_str().is_some_and(|p| p.contains("[\"mse\",\"MSE\"]"));
        let Some(&(time, frames, _)) = last.0.first().filter(|v| v.1 > 0 && on_mse) else {
            return false;
        };
        let (start, start_frames) = *first.get_or_insert((time, frames));
        time - start > 2.0 && frames > start_frames + 25
    });
    assert!(
        playing,
        "{url} did not play over MSE within 30 s: {last:?}\n{}",
        logs()
    );
    eprintln!("{url}: playing over MSE {last:?}, from {first:?}");
}

/// The page at phone or desktop size, kept as a test artifact.
fn screenshot_at(chromium: &mut Chromium, width: u32, height: u32, name: &str) {
    chromium.call(
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
    );
    std::thread::sleep(Duration::from_millis(800));
    let png = screenshot(chromium, name);
    std::fs::write(artifact(name), &png).unwrap();
}

#[test]
fn the_viewer_page_plays_over_mse_in_chromium_without_webrtc() {
    let Some(mut chromium) = Chromium::start() else {
        return;
    };
    let rig = Rig::start(&[], "");
    chromium.call("Page.enable", serde_json::json!({}));
    chromium.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({"source": "delete window.RTCPeerConnection; delete window.webkitRTCPeerConnection;"}),
    );
    let page = format!("http://127.0.0.1:{}/", rig.addon.http_port);
    plays_over_mse(&mut chromium, &page, &|| rig.addon.logs());
    screenshot_at(&mut chromium, 390, 844, "viewer-mse-phone.png");
    screenshot_at(&mut chromium, 1280, 720, "viewer-mse-desktop.png");
}

/// Namespaces made by this test, removed when dropped (their veths go with them).
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The add-on's host at 10.233.N.1, this namespace at 10.233.N.2; in the host, every UDP
/// datagram and every TCP connection but to `open_port` is dropped.
fn host_without_udp(tag: u32, open_port: u16) -> Result<(Netns, String), String> {
    let ns = format!("ipcam-noudp-{tag}");
    let n = tag % 200 + 20;
    run("ip", &["netns", "add", &ns])?;
    let made = Netns(ns.clone());
    let (near, far) = (format!("nu{n}a"), format!("nu{n}b"));
    for args in [
        vec!["-n", &ns, "link", "set", "lo", "up"],
        vec!["link", "add", &near, "type", "veth", "peer", "name", &far],
        vec!["link", "set", &far, "netns", &ns],
    ] {
        run("ip", &args)?;
    }
    let (host, here) = (format!("10.233.{n}.1"), format!("10.233.{n}.2"));
    run(
        "ip",
        &["-n", &ns, "addr", "add", &format!("{host}/24"), "dev", &far],
    )?;
    run("ip", &["-n", &ns, "link", "set", &far, "up"])?;
    run("ip", &["addr", "add", &format!("{here}/24"), "dev", &near])?;
    run("ip", &["link", "set", &near, "up"])?;
    let rules = format!(
        "table inet tunnel {{\n\
         chain input {{ type filter hook input priority 0; policy accept; iifname \"lo\" accept; \
         meta l4proto udp drop; tcp dport != {open_port} drop; }}\n\
         chain output {{ type filter hook output priority 0; policy accept; oifname \"lo\" accept; \
         meta l4proto udp drop; }}\n}}\n"
    );
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), rules).map_err(|e| e.to_string())?;
    let path = file.path().to_str().unwrap_or_default();
    // Past this point the namespace exists: a rule that does not load is a failure, not a skip.
    if let Err(e) = run("ip", &["netns", "exec", &ns, "nft", "-f", path]) {
        panic!("the firewall of the namespace without UDP: {e}");
    }
    Ok((made, host))
}

/// A TCP forward beside the add-on to its HTTP port on loopback, as a tunnel's connector is.
const TCP_FORWARD: &str = r#"
import socket, sys, threading
listen = socket.socket(); listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listen.bind(("0.0.0.0", int(sys.argv[3]))); listen.listen(64)
print("forwarding", flush=True)
def pipe(a, b):
    try:
        while data := a.recv(65536): b.sendall(data)
    except OSError: pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
while True:
    client, _ = listen.accept()
    upstream = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"#;

#[test]
fn the_viewer_page_falls_back_to_mse_when_webrtc_cannot_connect() {
    let (http_port, forward_port) = (free_port(), free_port());
    let tag = std::process::id();
    let (netns, host_ip) = match host_without_udp(tag, forward_port) {
        Ok(made) => made,
        Err(e) => {
            eprintln!(
                "SKIP: cannot make a network namespace without UDP ({e}); this test needs root and nftables"
            );
            return;
        }
    };
    let Some(mut chromium) = Chromium::start() else {
        return;
    };
    let in_host = |program: &str| {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &netns.0, program]);
        command
    };
    let camera_port = free_port();
    let _camera = Proc::spawn(in_host(BIN).args(small_camera_args(camera_port)));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cameras.yaml");
    std::fs::write(
        &config,
        format!(
            "mqtt:\n  host: 127.0.0.1\n  port: {}\nrtsp:\n  port: {}\nhttp:\n  port: {http_port}\ndata_dir: {}\n\
             cameras:\n  - id: cam\n    name: Nursery\n    url: rtsp://127.0.0.1:{camera_port}/stream\n",
            free_port(),
            free_port(),
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let addon = Proc::spawn(
        in_host(BIN)
            .args(["--config", config.to_str().unwrap()])
            .env("NO_COLOR", "1"),
    );
    let _forward = Proc::spawn(in_host("python3").args([
        "-c",
        TCP_FORWARD,
        "127.0.0.1",
        &http_port.to_string(),
        &forward_port.to_string(),
    ]));
    let base = format!("http://{host_ip}:{forward_port}");
    wait_until(
        "the add-on through the forward",
        Duration::from_secs(30),
        || http_get(&format!("{base}/api/streams")).0 == 200,
    );
    // Nothing else gets through: the add-on's own HTTP port, for one.
    let direct: std::net::SocketAddr = format!("{host_ip}:{http_port}").parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&direct, Duration::from_secs(1)).is_err(),
        "only the forward is reachable"
    );
    let page = format!("{base}/");
    plays_over_mse(&mut chromium, &page, &|| addon.output.text());
    let logs = addon.output.text();
    assert!(
        logs.contains("WebRTC viewer") && logs.contains("MSE viewer joined"),
        "the page tried WebRTC first, then took MSE:\n{logs}"
    );
}
