//! A camera stand-in served by a third-party RTSP server (VLC), replaying camera-like files from
//! `../shared/fixtures/media/`. VLC serves RTSP to UDP clients only, so the camera uses `transport: udp`.
mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

/// VLC refuses to run as root, so it runs as `nobody`.
fn vlc_camera(file: &std::path::Path, port: u16) -> Proc {
    let proc = Proc::spawn(Command::new("runuser").args([
        "-u",
        "nobody",
        "--",
        "cvlc",
        "-I",
        "dummy",
        file.to_str().unwrap(),
        "--sout",
        &format!("#rtp{{sdp=rtsp://127.0.0.1:{port}/stream}}"),
        "--sout-keep",
        "--loop",
    ]));
    wait_until("VLC to serve RTSP", Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    proc
}

fn relays_file_as_h264_and_aac(fixture: &str) {
    let Some(file) = shared_file(fixture) else {
        return;
    };
    let broker = Mosquitto::start();
    let vlc_port = free_port();
    let _vlc = vlc_camera(&file, vlc_port);
    let camera_url = format!("rtsp://127.0.0.1:{vlc_port}/stream");
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("vlc", &camera_url, "transport: udp")],
    ));
    let codecs = ffprobe_codecs(&addon.live_url("vlc"), "tcp")
        .unwrap_or_else(|e| panic!("ffprobe: {e}\n{}", addon.logs()));
    assert!(
        codecs.contains(&"h264".to_string()) && codecs.contains(&"aac".to_string()),
        "{codecs:?}"
    );
}

#[test]
fn vlc_camera_with_g711_alaw_is_relayed_as_h264_and_aac() {
    relays_file_as_h264_and_aac("fixtures/media/cry_h264_pcma.mkv");
}

#[test]
fn vlc_camera_with_aac_is_relayed_as_h264_and_aac() {
    relays_file_as_h264_and_aac("fixtures/media/quiet_h264_aac.mp4");
}
