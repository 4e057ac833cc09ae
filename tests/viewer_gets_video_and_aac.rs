//! A viewer of `<cam>_live` gets the camera's video passed through and the audio as AAC,
//! whatever the camera sends.
mod common;
use common::*;

fn serves(camera_args: &[&str], expected_video: &str) {
    let broker = Mosquitto::start();
    let camera = Camera::start(camera_args);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "")],
    ));
    let url = addon.live_url("cam");
    for transport in ["tcp", "udp"] {
        let mut codecs = ffprobe_codecs(&url, transport)
            .unwrap_or_else(|e| panic!("ffprobe over {transport}: {e}\n{}", addon.logs()));
        codecs.sort();
        let mut expected = vec![expected_video.to_string(), "aac".to_string()];
        expected.sort();
        assert_eq!(codecs, expected, "over {transport}");
    }
    let frames = ffmpeg_decode_frames(&url, 25).unwrap();
    assert!(frames >= 25, "decoded {frames} frames");
    // The camera's 440 Hz tone (amplitude 0.3, RMS ~0.21) survives the trip as AAC.
    let (samples, rms) = ffmpeg_audio(&url, 2).unwrap();
    assert!(samples >= 16000, "decoded {samples} audio samples in 2 s");
    assert!((0.1..0.4).contains(&rms), "audio RMS {rms:.3}");
}

#[test]
fn h264_camera_with_g711_alaw_gives_h264_and_aac() {
    serves(&["--video", "h264", "--audio", "pcma"], "h264");
}

#[test]
fn h264_camera_with_g711_ulaw_gives_h264_and_aac() {
    serves(&["--video", "h264", "--audio", "pcmu"], "h264");
}

#[test]
fn h264_camera_with_aac_gives_h264_and_aac() {
    serves(&["--video", "h264", "--audio", "aac"], "h264");
}

#[test]
fn h264_camera_with_latm_framed_aac_gives_h264_and_aac() {
    serves(&["--video", "h264", "--audio", "aac-latm"], "h264");
}

#[test]
fn h265_camera_with_aac_gives_h265_and_aac() {
    serves(&["--video", "h265", "--audio", "aac"], "hevc");
}

#[test]
fn h264_camera_with_opus_gives_h264_and_aac() {
    serves(&["--video", "h264", "--audio", "opus"], "h264");
}

#[test]
fn camera_without_audio_gives_video_only() {
    let Rig {
        addon,
        camera: _camera,
        mqtt: _mqtt,
        broker: _broker,
    } = Rig::start(&["--audio", "none"], "");
    assert_eq!(
        ffprobe_codecs(&addon.live_url("cam"), "tcp").unwrap(),
        ["h264"]
    );
}

#[test]
fn gstreamer_rtspsrc_viewer_decodes_the_stream() {
    let Rig {
        addon,
        camera: _camera,
        mqtt: _mqtt,
        broker: _broker,
    } = Rig::start(&[], "");
    let out = std::process::Command::new("gst-launch-1.0")
        .args([
            "-q",
            "rtspsrc",
            &format!("location={}", addon.live_url("cam")),
            "name=s",
            // The video pad, whichever of the two the server's packets open first.
            "s.",
            "!",
            "application/x-rtp,media=video",
            "!",
            "queue",
            "!",
            "decodebin",
            "!",
            "video/x-raw",
            "!",
            "identity",
            "eos-after=20",
            "!",
            "fakesink",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gst-launch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PyAV is the library Home Assistant plays RTSP with: it must decode at once, mid-GOP.
fn pyav_decodes_at_once(video: &str, expected_codec: &str) {
    let Rig {
        addon,
        camera: _camera,
        mqtt: _mqtt,
        broker: _broker,
    } = Rig::start(&["--gop", "100", "--video", video, "--audio", "aac"], "");
    // Warm the camera, then join mid-GOP as Home Assistant would.
    ffprobe_codecs(&addon.live_url("cam"), "tcp").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/pyav_first_frame.py"
    );
    let out = std::process::Command::new("python3")
        .args([script, &addon.live_url("cam")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PyAV: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("PyAV: {result}");
    assert_eq!(
        result["streams"],
        serde_json::json!([expected_codec, "aac"])
    );
    assert_eq!(result["width"], 320);
    // Mid-GOP of a 4 s GOP, yet the first picture comes at once from the cached GOP.
    assert!(result["first_video_s"].as_f64().unwrap() < 1.5, "{result}");
}

#[test]
fn pyav_as_used_by_home_assistant_decodes_h264_and_audio_at_once() {
    pyav_decodes_at_once("h264", "h264");
}

#[test]
fn pyav_as_used_by_home_assistant_decodes_h265_and_audio_at_once() {
    pyav_decodes_at_once("h265", "hevc");
}
