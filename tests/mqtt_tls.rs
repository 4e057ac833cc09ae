//! MQTT over TLS against a real Mosquitto with a TLS listener and certificates made here by
//! openssl: the add-on connects with the home's own CA, and refuses a broker whose certificate
//! that CA did not sign (no plain fallback).
mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority `name`.pem (with its key) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} home CA"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// `server.pem` and `server.key` for 127.0.0.1, signed by the CA `ca`.
fn make_server_certificate(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=broker",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// Mosquitto with a TLS listener (its port returned) and a plain one for the test's watcher.
fn tls_broker(dir: &Path) -> (Mosquitto, u16) {
    // Run as root, Mosquitto reads its certificates after dropping to its own user.
    use std::os::unix::fs::PermissionsExt;
    for path in [dir, &dir.join("server.key")] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tls_port = free_port();
    let broker = Mosquitto::start_with(&format!(
        "listener {tls_port} 127.0.0.1\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        d = dir.display()
    ));
    wait_until("the TLS listener", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
    });
    (broker, tls_port)
}

fn options(tls_port: u16, ca_file: &Path) -> serde_json::Value {
    serde_json::json!({
        "mqtt": {"host": "127.0.0.1", "port": tls_port, "tls": true, "ca_file": ca_file},
        "rtsp": {"port": free_port()},
        "http": {"port": free_port()},
        "cameras": [{"id": "cam", "url": "rtsp://127.0.0.1:9/stream"}],
    })
}

#[test]
fn with_tls_the_add_on_talks_to_a_broker_its_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "home");
    make_server_certificate(dir.path(), "home");
    let (broker, tls_port) = tls_broker(dir.path());
    let mqtt = broker.watch();
    let addon = AddOn::start_as_addon(&options(tls_port, &dir.path().join("home.pem")), &[]);
    mqtt.wait_for("ipcam/status", "online", Duration::from_secs(15));
    // Commands come back over the same TLS connection.
    broker.publish("ipcam/cam/live_stream/command", "ON", false);
    mqtt.wait_for("ipcam/cam/live_stream/state", "ON", Duration::from_secs(15));
    let logs = addon.logs();
    assert!(
        logs.contains(&format!(
            "connected to the MQTT broker at 127.0.0.1:{}",
            tls_port
        )),
        "{logs}"
    );
}

#[test]
fn with_tls_a_broker_signed_by_another_ca_is_refused_and_nothing_goes_in_plain() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), "home");
    make_ca(dir.path(), "stranger");
    make_server_certificate(dir.path(), "stranger");
    let (broker, tls_port) = tls_broker(dir.path());
    let mqtt = broker.watch();
    let addon = AddOn::start_as_addon(&options(tls_port, &dir.path().join("home.pem")), &[]);
    wait_until("the refusal in the log", Duration::from_secs(15), || {
        addon.logs().contains("must be signed by mqtt.ca_file")
    });
    let logs = addon.logs();
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert!(!logs.contains("connected to the MQTT broker"), "{logs}");
    assert_eq!(
        mqtt.last("ipcam/status"),
        None,
        "nothing reached the broker"
    );
}

#[test]
fn a_ca_file_that_cannot_be_read_stops_the_add_on_with_the_option_named() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let missing = dir.path().join("missing.pem");
    let path = dir.path().join("options.json");
    std::fs::write(
        &path,
        supervisor::options_json(&options(broker.port, &missing)),
    )
    .unwrap();
    let mut addon = Proc::spawn(
        Command::new(BIN)
            .args(["--config", path.to_str().unwrap()])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()]),
    );
    let status = addon.wait_exit(Duration::from_secs(15));
    let logs = addon.output.text();
    assert!(status.is_some_and(|s| !s.success()), "{logs}");
    assert!(
        logs.contains(&format!("cannot read mqtt.ca_file {}", missing.display())),
        "{logs}"
    );
}
