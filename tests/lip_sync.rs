//! A viewer hears the camera's sound with its picture: a clip whose flashes and beeps happen
//! together still has them together at `<cam>_live`, from the first flash on, with the camera
//! reached over TCP and over UDP.
mod common;
use common::*;
use std::path::Path;

/// Flashes and beeps: 0.2 s of white picture and of a 1 kHz tone, together, every 2 s from 1 s.
fn flashes_and_beeps(path: &Path) {
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=black:s=640x360:r=25:d=16,drawbox=c=white:t=fill:enable='between(mod(t,2),1,1.199)'")
        .args(["-f", "lavfi", "-i"])
        .arg("aevalsrc='if(between(mod(t,2),1,1.199),0.5*sin(2*PI*1000*t),0)':s=8000:d=16")
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "pcm_alaw", "-shortest"])
        .arg(path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test clip");
}

/// Plays `url` for 11 s; for each flash, the time from its first bright frame to the start of
/// the beep nearest to it, in ms (positive: the sound comes late).
fn beep_after_flash(url: &str, dir: &Path, name: &str) -> Vec<f64> {
    let video = dir.join(format!("{name}-video.txt"));
    let audio = dir.join(format!("{name}-audio.txt"));
    let out = ffmpeg_command(url, &["-t", "11", "-vf"])
        .arg(format!(
            "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file={}",
            video.display()
        ))
        .arg("-af")
        .arg(format!(
            "silencedetect=n=-25dB:d=0.1,ametadata=print:key=lavfi.silence_end:file={}",
            audio.display()
        ))
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "playing {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let times = |path: &Path, key: &str| -> Vec<(f64, f64)> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut pts = 0.0;
        let mut values = Vec::new();
        for line in text.lines() {
            if let Some(at) = line.split("pts_time:").nth(1) {
                pts = at.trim().parse().unwrap_or(pts);
            } else if let Some(value) = line.strip_prefix(&format!("{key}=")) {
                values.push((pts, value.trim().parse().unwrap_or(0.0)));
            }
        }
        values
    };
    let mut flashes = Vec::new();
    let mut bright = false;
    for (pts, luma) in times(&video, "lavfi.signalstats.YAVG") {
        if luma > 100.0 && !bright {
            flashes.push(pts);
        }
        bright = luma > 100.0;
    }
    let beeps: Vec<f64> = times(&audio, "lavfi.silence_end")
        .into_iter()
        .map(|(_, end)| end)
        .collect();
    flashes
        .iter()
        .filter_map(|flash| {
            beeps
                .iter()
                .map(|beep| (beep - flash) * 1000.0)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .filter(|offset| offset.abs() < 1000.0)
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[test]
fn sound_stays_with_the_picture_over_tcp_and_udp_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("flashes-and-beeps.mkv");
    flashes_and_beeps(&clip);
    let broker = Mosquitto::start();
    let camera = Camera::start(&["--file", clip.to_str().unwrap(), "--audio", "pcma"]);
    let addon = AddOn::start(&config(
        broker.port,
        free_port(),
        &[
            ("tcp", &camera.url(), ""),
            ("udp", &camera.url(), "transport: udp"),
        ],
    ));
    // The camera plays the clip from its start to each client, so the three run side by side.
    let measured: Vec<(&str, Vec<f64>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = [
            ("camera", camera.url()),
            ("tcp", addon.live_url("tcp")),
            ("udp", addon.live_url("udp")),
        ]
        .into_iter()
        .map(|(name, url)| {
            let dir = dir.path();
            scope.spawn(move || (name, beep_after_flash(&url, dir, name)))
        })
        .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    // What viewers can notice (ITU-R BT.1359): sound 45 ms early, 125 ms late.
    let noticeable = -45.0..=125.0;
    for (name, offsets) in &measured {
        eprintln!("{name}: beep after flash, ms: {offsets:.1?}");
        assert!(
            offsets.len() >= 4,
            "{name}: too few flashes with a beep: {offsets:?}\n{}",
            addon.logs()
        );
        assert!(
            offsets.iter().all(|o| noticeable.contains(o)),
            "{name}: sound and picture apart: {offsets:?}"
        );
    }
    let [camera, tcp, udp] = [0, 1, 2].map(|i| measured[i].1.clone());
    assert!(
        median(&camera).abs() <= 10.0,
        "the clip itself is off: {camera:?}"
    );
    // A session's tracks share one timeline from the PLAY reply's RTP-Info, so they are in step
    // from the first flash; over UDP arrivals vary more.
    let steady = median(&tcp);
    assert!(
        tcp.iter().all(|o| (o - steady).abs() <= 10.0),
        "TCP ingest: the offset moves: {tcp:?}\n{}",
        addon.logs()
    );
    assert!(
        (steady - median(&udp)).abs() <= 25.0,
        "TCP ingest {tcp:?} against UDP ingest {udp:?}"
    );
    // The AAC encoder's priming (100 ms at 16 kHz, which players do not remove from RTP) is
    // taken off: sound is with the picture, not 100 ms after it.
    assert!(steady.abs() <= 20.0, "TCP ingest: sound {steady} ms after");
}
