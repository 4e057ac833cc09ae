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

/// A viewer over TCP gets an RTCP sender report for each track about every second, interleaved
/// with the media, each counting the packets sent before it and naming an RTP time near the
/// track's newest packet: what players line sound up with the picture by.
#[test]
fn a_tcp_viewer_gets_sender_reports_for_both_tracks_every_second() {
    use std::io::Read;
    let broker = Mosquitto::start();
    let camera = Camera::start(&["--video", "h264", "--audio", "pcma"]);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[("cam", &camera.url(), "")],
    ));
    let url = addon.live_url("cam");
    let mut stream = rtsp_described(addon.rtsp_port, &url);
    let session = rtsp_setup_both_tracks(&mut stream, &url, 2);
    rtsp_request(&mut stream, 4, &format!("PLAY {url}"), &session);
    // Per track (RTP channel 0 video, 2 audio): packets seen, the newest RTP time, the reports.
    let mut seen = [0u32; 2];
    let mut newest = [0u32; 2];
    let mut reports: [Vec<Report>; 2] = Default::default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while reports.iter().any(|r| r.len() < 4) {
        assert!(
            std::time::Instant::now() < deadline,
            "reports so far: {reports:?}\n{}",
            addon.logs()
        );
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        assert_eq!(header[0], b'$', "interleaved data only");
        let mut packet = vec![0u8; u16::from_be_bytes([header[2], header[3]]) as usize];
        stream.read_exact(&mut packet).unwrap();
        let track = usize::from(header[1] / 2);
        let word = |at: usize| u32::from_be_bytes(packet[at..at + 4].try_into().unwrap());
        if header[1] % 2 == 0 {
            seen[track] += 1;
            newest[track] = word(4);
        } else {
            assert_eq!(
                packet[1], 200,
                "a sender report comes first in the compound packet"
            );
            reports[track].push(Report {
                // The wallclock the report was sent at (NTP): a reader that falls behind
                // would see them bunched.
                sent_at: f64::from(word(8)) + f64::from(word(12)) / 4_294_967_296.0,
                counted: word(20),
                received: seen[track],
                rtp_time: word(16),
                newest: newest[track],
            });
        }
    }
    for (track, rate) in [(0, 90_000.0), (1, 16_000.0)] {
        for pair in reports[track].windows(2) {
            let apart = pair[1].sent_at - pair[0].sent_at;
            assert!(
                (0.5..2.0).contains(&apart),
                "track {track}: reports {apart:.3} s apart"
            );
        }
        for report in &reports[track][1..] {
            assert_eq!(
                report.counted, report.received,
                "track {track}: the report counts what was sent"
            );
            // The audio's newest packet is its encoder's frame behind the picture's.
            let ahead = f64::from(report.rtp_time.wrapping_sub(report.newest) as i32) / rate;
            assert!(
                (-0.1..0.5).contains(&ahead),
                "track {track}: the report names a time {ahead:.3} s past the newest packet"
            );
        }
    }
}

/// A sender report as a viewer got it.
#[derive(Debug)]
struct Report {
    /// When it was sent, in seconds, by the wallclock it carries.
    sent_at: f64,
    /// The packets it says were sent.
    counted: u32,
    /// The packets the viewer had when it came.
    received: u32,
    /// The RTP time it maps to the wallclock.
    rtp_time: u32,
    /// The track's newest packet's RTP time when it came.
    newest: u32,
}
