//! Media clients: ffprobe, ffmpeg, GStreamer and curl against the add-on's RTSP and HTTP.
use super::*;
use std::path::Path;
use std::process::Command;

/// A plain HTTP GET with curl, a real client: (status, body). `curl_args` add e.g. `-u user:pass`.
pub fn http_get_with(url: &str, curl_args: &[&str]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let output = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-o",
            body.to_str().unwrap(),
            "-w",
            "%{http_code}",
        ])
        .args(curl_args)
        .arg(url)
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&output.stdout).parse().unwrap_or(0);
    (status, std::fs::read(&body).unwrap_or_default())
}

pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    http_get_with(url, &[])
}

/// Decodes a JPEG with ffmpeg (a real decoder) and returns its size.
pub fn jpeg_size(jpeg: &[u8]) -> Result<(u32, u32), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.jpg");
    std::fs::write(&path, jpeg).unwrap();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    if !decode.status.success() || !decode.stderr.is_empty() {
        return Err(format!(
            "ffmpeg cannot decode it: {}",
            String::from_utf8_lossy(&decode.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (w, h) = text
        .trim()
        .split_once(',')
        .ok_or(format!("ffprobe gave {text:?}"))?;
    Ok((w.parse().unwrap(), h.parse().unwrap()))
}

/// The codecs ffprobe sees on an RTSP URL, e.g. `["h264", "aac"]`.
pub fn ffprobe_codecs(url: &str, transport: &str) -> Result<Vec<String>, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A GStreamer viewer over RTSP/TCP (as Home Assistant connects) that decodes until killed.
pub fn gst_viewer(url: &str) -> Proc {
    let tcp_url = url.replacen("rtsp://", "rtspt://", 1);
    Proc::spawn(Command::new("gst-launch-1.0").args([
        "-q",
        "playbin",
        &format!("uri={tcp_url}"),
        "video-sink=fakesink sync=false",
        "audio-sink=fakesink sync=false",
    ]))
}

/// `ffmpeg` reading `url` over RTSP/TCP, with `output_args` after the input.
pub fn ffmpeg_command(url: &str, output_args: &[&str]) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-v",
        "error",
        "-rtsp_transport",
        "tcp",
        "-i",
        url,
    ])
    .args(output_args);
    cmd
}

/// Runs ffmpeg to completion; its stdout, or its error output.
fn ffmpeg_output(url: &str, output_args: &[&str]) -> Result<Vec<u8>, String> {
    let out = ffmpeg_command(url, output_args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An ffmpeg viewer that decodes and reports its progress every `period` seconds, for
/// [`Proc::decoded_frames`].
pub fn counting_viewer(url: &str, period: &str) -> Proc {
    counting_viewer_with(url, period, &[])
}

/// [`counting_viewer`] with codec options, e.g. `["-c", "copy"]` to count without decoding.
pub fn counting_viewer_with(url: &str, period: &str, codec_args: &[&str]) -> Proc {
    let progress = [
        "-f",
        "null",
        "-",
        "-progress",
        "pipe:1",
        "-stats_period",
        period,
    ];
    Proc::spawn(&mut ffmpeg_command(url, &[codec_args, &progress].concat()))
}

/// Decodes `frames` video frames with ffmpeg; returns how many it decoded.
pub fn ffmpeg_decode_frames(url: &str, frames: u32) -> Result<u32, String> {
    let frames = frames.to_string();
    let progress = ffmpeg_output(
        url,
        &[
            "-frames:v",
            &frames,
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
            "-nostats",
        ],
    )?;
    Ok(String::from_utf8_lossy(&progress)
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
        .unwrap_or(0))
}

/// Writes an MP4 that ffmpeg makes from the lavfi `source`, with encoder `args`.
pub fn write_mp4(path: &Path, source: &str, args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", source])
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "ffmpeg could not write {}",
        path.display()
    );
}

/// Decodes `seconds` of a stream's audio with ffmpeg; returns (samples, RMS on a 0..1 scale).
pub fn ffmpeg_audio(url: &str, seconds: u32) -> Result<(usize, f64), String> {
    let seconds = seconds.to_string();
    let pcm = ffmpeg_output(
        url,
        &[
            "-vn", "-t", &seconds, "-f", "s16le", "-ac", "1", "-ar", "16000", "-",
        ],
    )?;
    let samples: Vec<f64> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f64 / 32768.0)
        .collect();
    let rms = (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    Ok((samples.len(), rms))
}

/// A realistic live camera for `Camera::start`: 720p25 at ~4.2 Mbit/s, a 2 s GOP, G.711.
pub const CAMERA_720P: [&str; 8] = [
    "--width",
    "1280",
    "--height",
    "720",
    "--gop",
    "50",
    "--bitrate",
    "4200",
];
