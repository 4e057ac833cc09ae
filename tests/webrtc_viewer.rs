//! The viewer page in a real headless Chromium (Debian's), driven over the DevTools protocol:
//! live WebRTC video from a camera stand-in plays, and a screenshot shows it. WHEP answers and
//! auth are checked with plain HTTP, and a webrtcbin peer checks WHEP, the WebSocket API and
//! churn.
#![cfg(feature = "webrtc")]
mod common;
use common::browser::{Chromium, paths, screenshot, videos};
use common::whep::{self, WhepClient};
use common::*;
use std::time::{Duration, Instant};

#[test]
fn the_viewer_page_plays_live_webrtc_video_in_chromium() {
    if let Some(chromium) = Chromium::start() {
        plays_in_chromium(chromium, &Rig::start(&[], ""));
    }
}

/// Chromium offers no H.265 for WebRTC: it gets the camera transcoded to H.264.
#[test]
fn the_viewer_page_plays_an_h265_camera_in_chromium() {
    if let Some(chromium) = Chromium::start() {
        let rig = Rig::start(&["--video", "h265"], "");
        plays_in_chromium(chromium, &rig);
        let logs = rig.addon.logs();
        assert!(logs.contains("H.264 transcoded from H.265"), "{logs}");
    }
}

fn plays_in_chromium(mut chromium: Chromium, rig: &Rig) {
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
    // It played over WebRTC, not over the MSE fallback.
    assert_eq!(paths(&mut chromium), ["webrtc"]);
    eprintln!("first frame in the browser after {:?}", first.unwrap());

    screenshot(&mut chromium, "the viewer page");

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
    let (status, body) = post("/api/webrtc?src=cam", "", true);
    assert_eq!(status, 400);
    assert_eq!(String::from_utf8_lossy(&body).trim(), "the offer is empty");
    assert_eq!(post("/api/webrtc?src=nope", "v=0", true).0, 404);
    let (status, about) = http_get_with(&format!("{base}/api"), &["-u", "viewer:s3cret"]);
    assert_eq!(status, 200);
    let about: serde_json::Value = serde_json::from_slice(&about).unwrap();
    assert_eq!(about["name"], "ipcam-mqtt");
    let (status, _) = http_get_with(&format!("{base}/"), &["-I", "-u", "viewer:s3cret"]);
    assert_eq!(status, 200, "HEAD / answers, for clients that probe");
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
        Duration::from_secs(15),
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
    wait_until(
        "decoded Opus audio over WHEP",
        Duration::from_secs(15),
        || first.audio_frames() > 10,
    );
    // Another client cannot end it by guessing: the ids are not small sequential numbers.
    for guess in 1..=20 {
        let other = format!(
            "http://127.0.0.1:{}/api/webrtc/{guess}",
            rig.addon.http_port
        );
        assert_eq!(
            http_get_with(&other, &["-X", "DELETE"]).0,
            404,
            "guessed {guess}"
        );
    }
    let frames = first.frames();
    wait_until("the session to play on", Duration::from_secs(15), || {
        first.frames() > frames + 10
    });
    // WHEP's DELETE, with the Location its creator was given, ends the session.
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

fn webrtc_viewers(rig: &Rig) -> u64 {
    let url = format!("http://127.0.0.1:{}/api/streams", rig.addon.http_port);
    let streams: serde_json::Value = serde_json::from_slice(&http_get(&url).1).unwrap_or_default();
    streams["cam"]["viewers"]["webrtc"].as_u64().unwrap_or(99)
}

/// An H.265 camera: a peer that offers H.265 gets it passed through; one that offers only H.264
/// gets the shared transcoder, which runs only while such a peer watches.
#[test]
fn h265_cameras_pass_h265_through_and_transcode_only_for_peers_without_it() {
    let rig = Rig::start(&["--video", "h265", "--audio", "aac"], "");
    let url = format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        rig.addon.http_port
    );
    let h265 = WhepClient::connect_offering(&url, &[whep::H265, whep::OPUS]).unwrap();
    assert!(h265.answer.contains("H265/90000"), "{}", h265.answer);
    wait_until("decoded H.265 over WebRTC", Duration::from_secs(15), || {
        h265.frames() > 25
    });
    assert_eq!(rig.addon.logs().matches("transcoding started").count(), 0);

    let h264 = WhepClient::connect_offering(&url, &[whep::H264, whep::OPUS])
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.addon.logs()));
    assert!(h264.answer.contains("H264/90000"), "{}", h264.answer);
    wait_until(
        "decoded H.264 transcoded from H.265",
        Duration::from_secs(15),
        || h264.frames() > 25,
    );
    wait_until("Opus from the AAC camera", Duration::from_secs(15), || {
        h264.audio_frames() > 10
    });
    let second = WhepClient::connect_offering(&url, &[whep::H264]).unwrap();
    wait_until(
        "a second H.264 peer decoding from the shared transcoder",
        Duration::from_secs(15),
        || second.frames() > 10,
    );
    let logs = rig.addon.logs();
    assert_eq!(logs.matches("transcoding started").count(), 1, "{logs}");
    assert!(logs.contains("H.264 transcoded from H.265"), "{logs}");

    for session in [&h264.location, &second.location] {
        let session = format!("http://127.0.0.1:{}/api/{session}", rig.addon.http_port);
        assert_eq!(http_get_with(&session, &["-X", "DELETE"]).0, 200);
    }
    drop((h264, second));
    wait_until(
        "the transcoder to stop with its last viewer",
        Duration::from_secs(15),
        || rig.addon.logs().contains("transcoding stopped"),
    );
    assert_eq!(webrtc_viewers(&rig), 1, "the H.265 peer stays");
    let before = h265.frames();
    std::thread::sleep(Duration::from_secs(1));
    assert!(h265.frames() > before, "the H.265 peer still plays");
}

#[test]
fn h265_to_h264_never_refuses_a_browser_without_h265_clearly() {
    let rig = Rig::start(&["--video", "h265"], "    h265_to_h264: never\n");
    let url = format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        rig.addon.http_port
    );
    let refused = WhepClient::connect_offering(&url, &[whep::H264])
        .err()
        .unwrap();
    assert!(refused.starts_with("HTTP/1.1 415"), "{refused}");
    assert!(refused.contains("h265_to_h264 is \"never\""), "{refused}");
    assert!(!rig.addon.logs().contains("transcoding started"));
}

/// A G.711 camera's audio goes to a peer that offers PCMA untouched: no Opus encoder runs.
#[test]
fn g711_audio_is_passed_through_to_a_peer_that_offers_it() {
    let rig = Rig::start(&["--audio", "pcma"], "");
    let url = format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        rig.addon.http_port
    );
    let peer = WhepClient::connect_offering(&url, &[whep::H264, whep::PCMA, whep::OPUS]).unwrap();
    assert!(peer.answer.contains("PCMA/8000"), "{}", peer.answer);
    wait_until("decoded PCMA audio", Duration::from_secs(15), || {
        peer.audio_frames() > 25 && peer.frames() > 10
    });
    assert!(
        rig.addon.logs().contains("PCMA audio passed through"),
        "{}",
        rig.addon.logs()
    );
}

/// An H.265 camera held on by MQTT and streaming for `seconds` (the scenario, not a wait for
/// readiness: a transcoder that joins it starts from the hub's cached GOP), and its WHEP URL.
fn h265_camera_streaming_for(seconds: u64) -> (Rig, String) {
    let rig = Rig::start(
        &[&CAMERA_720P[..], &["--video", "h265", "--timecode"]].concat(),
        "",
    );
    rig.broker
        .publish("ipcam/cam/live_stream/command", "ON", false);
    std::thread::sleep(Duration::from_secs(seconds));
    let url = format!(
        "http://127.0.0.1:{}/api/webrtc?src=cam",
        rig.addon.http_port
    );
    (rig, url)
}

/// Waits until `peer` has decoded more than 50 transcoded frames; panics after 15 s.
fn wait_for_transcoded_frames(rig: &Rig, peer: &WhepClient, round: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while peer.frames() <= 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "round {round}: {} frames of H.264 transcoded from H.265 in 15 s\n{}",
            peer.frames(),
            rig.addon.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The transcoder on a camera that has been streaming for a while (held on by MQTT), started,
/// stopped and started again: each time its H.264 peer decodes frames.
#[test]
fn the_transcoder_starts_again_on_a_camera_that_keeps_streaming() {
    let (rig, url) = h265_camera_streaming_for(5);
    for round in 1..=2 {
        let peer = WhepClient::connect_offering(&url, &[whep::H264, whep::PCMA])
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", rig.addon.logs()));
        wait_for_transcoded_frames(&rig, &peer, round);
        let session = format!(
            "http://127.0.0.1:{}/api/{}",
            rig.addon.http_port, peer.location
        );
        assert_eq!(http_get_with(&session, &["-X", "DELETE"]).0, 200);
        drop(peer);
        wait_until("the transcoder to stop", Duration::from_secs(15), || {
            rig.addon.logs().matches("transcoding stopped").count() == round as usize
        });
    }
}

/// Three browser tabs on an H.265 camera are closed; a new viewer comes half a minute into the
/// camera's session. x265 starts its GOPs with CRA pictures: taken as delta frames, the hub had
/// no keyframe after the first, its GOP cache was full after 600 frames (24 s), and the new
/// transcoder waited for a keyframe that never came (503 after 10 s).
#[test]
fn the_transcoder_starts_again_after_its_viewers_went_silent() {
    let (rig, url) = h265_camera_streaming_for(3);
    let tabs: Vec<_> = (0..3)
        .map(|_| {
            WhepClient::connect_offering(&url, &[whep::H264, whep::PCMA])
                .unwrap_or_else(|e| panic!("round 1: {e}\n{}", rig.addon.logs()))
        })
        .collect();
    for tab in &tabs {
        wait_for_transcoded_frames(&rig, tab, 1);
    }
    // The scenario: the tabs stay open a while, so the session is past 24 s by the next viewer.
    std::thread::sleep(Duration::from_secs(12));
    // Gone without a word, as closed browser tabs.
    drop(tabs);
    wait_until("the transcoder to stop", Duration::from_secs(60), || {
        rig.addon.logs().contains("transcoding stopped")
    });
    std::thread::sleep(Duration::from_secs(10));
    let peer = WhepClient::connect_offering(&url, &[whep::H264, whep::OPUS])
        .unwrap_or_else(|e| panic!("round 2: {e}\n{}", rig.addon.logs()));
    wait_for_transcoded_frames(&rig, &peer, 2);
}
