//! The home network, with the add-on's default network settings (host networking): the add-on on
//! the Home Assistant host's address, in a network namespace this test makes; a browser and a
//! player on another address (this namespace), joined by a veth pair; and Home Assistant's
//! ingress proxy at its fixed address 172.30.32.2 in a third namespace, forwarding the sidebar to
//! the add-on's ingress port. Needs root (`ip netns`); skips with a message without it.
mod common;
use common::browser::{Chromium, paths, videos};
use common::*;
use std::process::Command;
use std::time::Duration;

/// Namespaces and links made by this test, removed when dropped (the veths go with them).
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

fn ip(args: &str) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A veth pair with `near` in namespace `near_ns` (or this one) and `far` in `far_ns`.
fn link(name: &str, near: (Option<&str>, &str), far: (&str, &str)) -> Result<(), String> {
    let (a, b) = (format!("{name}a"), format!("{name}b"));
    ip(&format!("link add {a} type veth peer name {b}"))?;
    ip(&format!("link set {b} netns {}", far.0))?;
    ip(&format!("-n {} addr add {} dev {b}", far.0, far.1))?;
    ip(&format!("-n {} link set {b} up", far.0))?;
    match near.0 {
        Some(ns) => {
            ip(&format!("link set {a} netns {ns}"))?;
            ip(&format!("-n {ns} addr add {} dev {a}", near.1))?;
            ip(&format!("-n {ns} link set {a} up"))
        }
        None => {
            ip(&format!("addr add {} dev {a}", near.1))?;
            ip(&format!("link set {a} up"))
        }
    }
}

/// The add-on's host at 10.231.N.1 (this namespace is 10.231.N.2), the Supervisor's ingress
/// proxy at 172.30.32.2 beside the host's 172.30.32.1, reachable from here at 10.232.N.1.
fn home(tag: u32) -> Result<(Netns, String, String), String> {
    let (host, supervisor) = (format!("ipcam-host-{tag}"), format!("ipcam-sup-{tag}"));
    ip(&format!("netns add {host}"))?;
    let mut made = Netns(vec![host.clone()]);
    ip(&format!("netns add {supervisor}"))?;
    made.0.push(supervisor.clone());
    let n = tag % 200 + 20;
    ip(&format!("-n {host} link set lo up"))?;
    ip(&format!("-n {supervisor} link set lo up"))?;
    link(
        &format!("il{n}"),
        (None, &format!("10.231.{n}.2/24")),
        (&host, &format!("10.231.{n}.1/24")),
    )?;
    link(
        &format!("is{n}"),
        (Some(&host), "172.30.32.1/24"),
        (&supervisor, "172.30.32.2/24"),
    )?;
    link(
        &format!("ip{n}"),
        (None, &format!("10.232.{n}.2/24")),
        (&supervisor, &format!("10.232.{n}.1/24")),
    )?;
    Ok((made, format!("10.231.{n}.1"), format!("10.232.{n}.1")))
}

/// A stand-in for the Supervisor's ingress proxy (the real one cannot run here): it strips
/// `/api/hassio_ingress/<token>` and forwards to the add-on's ingress port with the browser's
/// headers, `X-Forwarded-Host` and `X-Ingress-Path`, as the Supervisor does.
const INGRESS_PROXY: &str = r#"
import http.server, sys, urllib.request
listen, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PREFIX = "/api/hassio_ingress/t0ken"
class Proxy(http.server.BaseHTTPRequestHandler):
    def forward(self):
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404); return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        request = urllib.request.Request(upstream + self.path[len(PREFIX):], data=body, method=self.command)
        # As the Supervisor does: the browser's headers go on (Origin among them), with the host
        # it reached in X-Forwarded-Host and the ingress path.
        for name in ("Content-Type", "Accept", "Origin", "User-Agent"):
            if self.headers.get(name): request.add_header(name, self.headers[name])
        request.add_header("X-Forwarded-Host", self.headers.get("Host", ""))
        request.add_header("X-Ingress-Path", PREFIX)
        try:
            reply = urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            reply = error
        data = reply.read()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_DELETE = forward
http.server.ThreadingHTTPServer((listen, port), Proxy).serve_forever()
"#;

fn in_netns(ns: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]);
    command
}

#[test]
fn a_browser_and_a_player_elsewhere_on_the_lan_play_the_sidebar_viewer_and_the_live_stream() {
    let tag = std::process::id();
    let (netns, host_ip, proxy_ip) = match home(tag) {
        Ok(made) => made,
        Err(e) => {
            eprintln!("SKIP: cannot make network namespaces ({e}); this test needs root");
            return;
        }
    };
    let host_ns = &netns.0[0];
    let supervisor_ns = &netns.0[1];
    let Some(mut chromium) = Chromium::start() else {
        return;
    };
    let (camera_port, rtsp_port, http_port, ingress_port, proxy_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _camera = Proc::spawn(in_netns(host_ns, BIN).args(small_camera_args(camera_port)));
    let dir = tempfile::tempdir().unwrap();
    // The add-on's defaults, as the Supervisor writes them, with the camera and a broker.
    let saved = serde_json::json!({
        "media_dir": dir.path().join("media"),
        "ha_cameras": false,
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
        "rtsp": {"port": rtsp_port},
        "http": {"port": http_port},
        "cameras": [{"id": "cam", "name": "Camera", "url": format!("rtsp://127.0.0.1:{camera_port}/stream")}],
    });
    let options = dir.path().join("options.json");
    std::fs::write(&options, common::supervisor::options_json(&saved)).unwrap();
    let data = dir.path().join("data");
    let addon = Proc::spawn(
        in_netns(host_ns, BIN)
            .args(["--config", options.to_str().unwrap()])
            .args(["--data-dir", data.to_str().unwrap()])
            .args(["--ingress-port", &ingress_port.to_string()])
            .args(["--addon-slug", "local_ipcam_mqtt"])
            .env("SUPERVISOR_TOKEN", "a-supervisor-token")
            .env("NO_COLOR", "1"),
    );
    let _proxy = Proc::spawn(in_netns(supervisor_ns, "python3").args([
        "-c",
        INGRESS_PROXY,
        &proxy_ip,
        &proxy_port.to_string(),
        &format!("http://172.30.32.1:{ingress_port}"),
    ]));
    wait_until(
        "the add-on to listen on the LAN",
        Duration::from_secs(30),
        || std::net::TcpStream::connect((host_ip.as_str(), http_port)).is_ok(),
    );
    let credentials: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("credentials.json")).unwrap())
            .unwrap();
    let login = |section: &str| {
        format!(
            "{}:{}",
            credentials[section]["username"].as_str().unwrap(),
            credentials[section]["password"].as_str().unwrap()
        )
    };

    // A LAN player, with the RTSP credentials DOCS points to.
    let live = format!("rtsp://{}@{host_ip}:{rtsp_port}/cam_live", login("rtsp"));
    let codecs =
        ffprobe_codecs(&live, "tcp").unwrap_or_else(|e| panic!("{e}\n{}", addon.output.text()));
    assert_eq!(codecs, ["h264", "aac"]);
    // The LAN never gets in without credentials, the ingress port included.
    for port in [http_port, ingress_port] {
        let (status, _) = http_get(&format!("http://{host_ip}:{port}/api/streams"));
        assert_eq!(status, 401, "port {port} from the LAN without credentials");
    }

    // The sidebar: a browser on the LAN, through the ingress proxy; WebRTC then goes straight
    // to the add-on's LAN address.
    let sidebar = format!("http://{proxy_ip}:{proxy_port}/api/hassio_ingress/t0ken/");
    plays(&mut chromium, &sidebar, &addon);
    // The viewer on the add-on's own port, with the HTTP credentials, as the browser sends them
    // once the user has answered its Basic-auth prompt.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(login("http"));
    chromium.call("Network.enable", serde_json::json!({}));
    chromium.call(
        "Network.setExtraHTTPHeaders",
        serde_json::json!({"headers": {"Authorization": format!("Basic {basic}")}}),
    );
    plays(
        &mut chromium,
        &format!("http://{host_ip}:{http_port}/"),
        &addon,
    );
    let logs = addon.output.text();
    assert!(
        !logs.contains(credentials["rtsp"]["password"].as_str().unwrap()),
        "no password in the log"
    );
}

fn plays(chromium: &mut Chromium, page: &str, addon: &Proc) {
    chromium.call("Page.navigate", serde_json::json!({"url": page}));
    let mut last = Vec::new();
    let playing = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        last = videos(chromium);
        last.first().is_some_and(|v| v.0 > 1.0 && v.1 > 10)
    });
    assert!(
        playing,
        "{page} did not play within 20 s: {last:?}\n{}",
        addon.output.text()
    );
    // At home WebRTC connects: the page did not need the MSE fallback.
    assert_eq!(paths(chromium), ["webrtc"], "{page}");
    eprintln!("{page}: playing {last:?}");
}

/// go2rtc and Frigate also want 8554 and 1984 on the host: a taken port is one clear line that
/// names the option, and the add-on stops instead of looping.
#[test]
fn a_port_already_taken_is_one_clear_line_naming_the_option() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (section, other) in [("rtsp", "http"), ("http", "rtsp")] {
        let dir = tempfile::tempdir().unwrap();
        let saved = serde_json::json!({
            "media_dir": dir.path().join("media"),
            "mqtt": {"host": "127.0.0.1", "port": free_port()},
            section: {"port": port, "username": "u", "password": "a-long-password"},
            other: {"port": free_port(), "username": "u", "password": "a-long-password"},
        });
        let options = dir.path().join("options.json");
        std::fs::write(&options, common::supervisor::options_json(&saved)).unwrap();
        let mut addon = Proc::spawn(
            Command::new(BIN)
                .args(["--config", options.to_str().unwrap()])
                .args(["--data-dir", dir.path().join("data").to_str().unwrap()]),
        );
        let status = addon
            .wait_exit(Duration::from_secs(20))
            .expect("the add-on stops rather than loop");
        assert!(!status.success());
        let text = addon.output.text();
        let line = format!("set {section}.port to a free port");
        assert_eq!(text.matches(&line).count(), 1, "{text}");
        assert!(
            text.contains(&format!("port {port} is already in use")),
            "{text}"
        );
    }
}
