//! No port (RTSP, HTTP) is reachable without credentials unless the user chose that.
mod common;
use common::*;

/// The local addresses a TCP port listens on, read from the socket table (no traffic sent).
fn listen_addresses(port: u16) -> Vec<String> {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// An add-on whose `section` (`rtsp` or `http`) needs `viewer:<password>`, with its broker and
/// camera.
fn with_password(section: &str, password: &str) -> (Mosquitto, Camera, AddOn) {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let yaml = config(broker.port, free_port(), &[("cam", &camera.url(), "")]).replacen(
        &format!("{section}:\n"),
        &format!("{section}:\n  username: viewer\n  password: {password}\n"),
        1,
    );
    let addon = AddOn::start(&yaml);
    (broker, camera, addon)
}

/// An add-on whose RTSP server needs `viewer:s3cret-view`.
fn with_rtsp_password() -> (Mosquitto, Camera, AddOn) {
    with_password("rtsp", "s3cret-view")
}

/// An add-on whose HTTP API needs `viewer:s3cret-http`.
fn with_http_password() -> (Mosquitto, Camera, AddOn) {
    with_password("http", "s3cret-http")
}

#[test]
fn with_credentials_every_client_must_authenticate() {
    let (_broker, camera, addon) = with_rtsp_password();
    let url = addon.live_url("cam");
    let refused = ffprobe_codecs(&url, "tcp").unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    assert_eq!(
        camera.connections(),
        0,
        "an unauthenticated client started the camera"
    );
    let with_credentials = url.replacen("rtsp://", "rtsp://viewer:s3cret-view@", 1);
    assert_eq!(ffprobe_codecs(&with_credentials, "tcp").unwrap().len(), 2);
    assert!(!addon.logs().contains("s3cret-view"));
    assert_eq!(
        listen_addresses(addon.rtsp_port),
        [format!("0.0.0.0:{}", addon.rtsp_port)]
    );
}

#[test]
fn without_credentials_the_server_listens_on_loopback_only() {
    let Rig {
        addon,
        camera: _camera,
        mqtt: _mqtt,
        broker: _broker,
    } = Rig::start(&[], "");
    assert!(addon.logs().contains("loopback only"), "{}", addon.logs());
    assert_eq!(
        listen_addresses(addon.rtsp_port),
        [format!("127.0.0.1:{}", addon.rtsp_port)]
    );
    assert_eq!(
        listen_addresses(addon.http_port),
        [format!("127.0.0.1:{}", addon.http_port)]
    );
}

#[test]
fn with_credentials_the_http_api_needs_them_and_listens_on_every_interface() {
    let (_broker, camera, addon) = with_http_password();
    let url = format!(
        "http://127.0.0.1:{}/api/frame.jpeg?src=cam",
        addon.http_port
    );
    let (status, body) = http_get(&url);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _) = http_get_with(&url, &["-u", "viewer:wrong"]);
    assert_eq!(status, 401);
    // The MSE stream too, which would otherwise start the camera.
    let mp4 = format!(
        "http://127.0.0.1:{}/api/stream.mp4?src=cam",
        addon.http_port
    );
    let (status, _) = http_get_with(&mp4, &["-u", "viewer:wrong", "--max-time", "5"]);
    assert_eq!(status, 401, "stream.mp4 with a wrong password");
    assert_eq!(
        camera.connections(),
        0,
        "an unauthenticated request started the camera"
    );
    let (status, jpeg) = http_get_with(&url, &["-u", "viewer:s3cret-http"]);
    assert_eq!(status, 200);
    assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
    assert_eq!(
        listen_addresses(addon.http_port),
        [format!("0.0.0.0:{}", addon.http_port)]
    );
    assert!(!addon.logs().contains("s3cret-http"));
}

#[test]
fn bound_to_the_network_without_credentials_gets_generated_ones_and_anonymous_is_a_warning() {
    let broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let data_dir = tempfile::tempdir().unwrap();
    let yaml = config(broker.port, free_port(), &[("cam", &camera.url(), "")])
        .replacen("rtsp:\n", "rtsp:\n  bind: 0.0.0.0\n", 1)
        .replacen("http:\n", "http:\n  allow_anonymous: true\n", 1)
        + &format!("data_dir: {}\n", data_dir.path().display());
    let addon = AddOn::start(&yaml);
    let url = addon.live_url("cam");
    let refused = ffprobe_codecs(&url, "tcp").unwrap_err();
    assert!(refused.contains("401"), "{refused}");

    let file = data_dir.path().join("credentials.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the add-on's user may read it");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let user = kept["rtsp"]["username"].as_str().unwrap();
    let password = kept["rtsp"]["password"].as_str().unwrap();
    assert!(password.len() >= 32, "a strong password");
    assert!(kept.get("http").is_none(), "anonymous was chosen for http");
    let with_credentials = url.replacen("rtsp://", &format!("rtsp://{user}:{password}@"), 1);
    assert_eq!(ffprobe_codecs(&with_credentials, "tcp").unwrap().len(), 2);

    let logs = addon.logs();
    assert!(!logs.contains(password), "the password was logged");
    assert!(logs.contains("credentials.json"), "{logs}");
    let warning = logs
        .lines()
        .find(|l| l.contains("HTTP API listening"))
        .unwrap();
    assert!(
        warning.contains("WARN") && warning.contains("allow_anonymous"),
        "{warning}"
    );
    let (status, _) = http_get(&format!("http://127.0.0.1:{}/api/streams", addon.http_port));
    assert_eq!(status, 200, "anonymous, as chosen");
}

/// A page on another site must not ride a browser's cached credentials into live video: the
/// WebSocket and WHEP refuse a foreign `Origin`, with the right password and all.
#[cfg(feature = "webrtc")]
#[test]
fn cross_origin_requests_are_refused_even_with_credentials() {
    let (_broker, camera, addon) = with_http_password();
    let base = format!("http://127.0.0.1:{}", addon.http_port);
    let upgrade = |origin: &str| {
        let (status, _) = http_get_with(
            &format!("{base}/api/ws?src=cam"),
            &[
                "-u",
                "viewer:s3cret-http",
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: websocket",
                "-H",
                "Sec-WebSocket-Version: 13",
                "-H",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "-H",
                &format!("Origin: {origin}"),
                "--max-time",
                "2",
            ],
        );
        status
    };
    assert_eq!(
        upgrade("http://evil.example"),
        403,
        "a foreign page's WebSocket"
    );
    assert_eq!(upgrade("null"), 403, "a sandboxed page's WebSocket");
    assert_eq!(upgrade(&base), 101, "the viewer's own page");
    let (status, body) = http_get_with(
        &format!("{base}/api/webrtc?src=cam"),
        &[
            "-u",
            "viewer:s3cret-http",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/sdp",
            "-H",
            "Origin: http://evil.example",
            "--data-binary",
            "v=0",
        ],
    );
    assert_eq!(
        status,
        403,
        "a foreign page's WHEP offer: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("cross-origin requests are refused"));
    assert_eq!(
        camera.connections(),
        0,
        "nothing foreign reached the camera"
    );
}

/// Guessing gets nowhere: after 10 wrong passwords an address gets 429 for a while, even with
/// the right one; other addresses, and a browser's bare first request, are not affected.
#[test]
fn wrong_passwords_are_throttled_per_address() {
    let (_broker, _camera, addon) = with_http_password();
    let api = format!("http://127.0.0.1:{}/api", addon.http_port);
    let from = |address: &str, login: Option<&str>| {
        let mut args = vec!["--interface", address];
        if let Some(login) = login {
            args.extend(["-u", login]);
        }
        http_get_with(&api, &args).0
    };
    for _ in 0..10 {
        assert_eq!(from("127.0.0.5", Some("viewer:guess")), 401);
    }
    assert_eq!(from("127.0.0.5", Some("viewer:guess")), 429);
    assert_eq!(
        from("127.0.0.5", Some("viewer:s3cret-http")),
        429,
        "even the right one waits"
    );
    assert_eq!(
        from("127.0.0.5", None),
        401,
        "a bare request is asked for a password"
    );
    assert_eq!(
        from("127.0.0.6", Some("viewer:s3cret-http")),
        200,
        "other addresses"
    );
    for _ in 0..20 {
        assert_eq!(from("127.0.0.7", None), 401, "bare requests are not tries");
    }
    assert_eq!(from("127.0.0.7", Some("viewer:s3cret-http")), 200);
}

/// The `Authorization` header of an RTSP Digest login (RFC 2617 without qop, as
/// gst-rtsp-server asks for it) answering the challenge `www_authenticate`.
fn digest_login(
    www_authenticate: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> String {
    use md5::{Digest, Md5};
    let field = |name: &str| {
        regex::Regex::new(&format!(r#"{name}="([^"]*)""#))
            .unwrap()
            .captures(www_authenticate)
            .unwrap_or_else(|| panic!("no {name} in {www_authenticate}"))[1]
            .to_string()
    };
    let (realm, nonce) = (field("realm"), field("nonce"));
    let hex = |text: String| format!("{:x}", Md5::digest(text.as_bytes()));
    let ha1 = hex(format!("{user}:{realm}:{password}"));
    let ha2 = hex(format!("{method}:{uri}"));
    let response = hex(format!("{ha1}:{nonce}:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\"\r\n"
    )
}

/// RTSP asks for Digest only (a Basic login, which carries the password itself, is refused), and
/// guessing gets nowhere: after 10 wrong passwords an address is refused a while even with the
/// right one, while other addresses log in.
#[test]
fn rtsp_logins_are_digest_only_and_wrong_passwords_are_throttled_per_address() {
    let (_broker, _camera, addon) = with_rtsp_password();
    let url = addon.live_url("cam");
    let describe = format!("DESCRIBE {url}");
    // One connection per try, as a client that reconnects would make; the challenge comes from
    // that connection's bare first request.
    let login = |from: [u8; 4], password: &str| {
        let mut rtsp = connect_from(from.into(), addon.rtsp_port);
        let challenge = rtsp_exchange(&mut rtsp, 1, &describe, "");
        assert!(challenge.starts_with("RTSP/1.0 401"), "{challenge}");
        let header = challenge
            .lines()
            .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
            .unwrap_or_else(|| panic!("no challenge: {challenge}"))
            .to_string();
        let authorization = digest_login(&header, "viewer", password, "DESCRIBE", &url);
        let reply = rtsp_exchange(&mut rtsp, 2, &describe, &authorization);
        (header, reply.lines().next().unwrap_or_default().to_string())
    };

    let (challenge, answer) = login([127, 0, 0, 5], "s3cret-view");
    assert!(challenge.starts_with("Digest "), "{challenge}");
    assert!(!challenge.contains("Basic"), "{challenge}");
    assert_eq!(answer, "RTSP/1.0 200 OK");

    let mut rtsp = connect_from([127, 0, 0, 5].into(), addon.rtsp_port);
    let basic = format!(
        "Authorization: Basic {}\r\n",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "viewer:s3cret-view"
        )
    );
    let reply = rtsp_exchange(&mut rtsp, 1, &describe, &basic);
    assert!(
        reply.starts_with("RTSP/1.0 401"),
        "Basic was accepted: {reply}"
    );

    for _ in 0..10 {
        assert_eq!(
            login([127, 0, 0, 6], "guess").1,
            "RTSP/1.0 401 Unauthorized"
        );
    }
    assert_eq!(
        login([127, 0, 0, 6], "s3cret-view").1,
        "RTSP/1.0 401 Unauthorized",
        "even the right one waits"
    );
    assert_eq!(
        login([127, 0, 0, 7], "s3cret-view").1,
        "RTSP/1.0 200 OK",
        "other addresses"
    );
    let logs = addon.logs();
    assert!(
        logs.contains("wrong RTSP username or password from 127.0.0.6"),
        "{logs}"
    );
    assert!(
        logs.contains(
            "127.0.0.6 asks for password tries of the RTSP server faster than 1 a minute"
        ),
        "{logs}"
    );
    assert!(!logs.contains("s3cret-view"));
}
