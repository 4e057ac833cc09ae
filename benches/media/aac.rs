//! The G.711 camera's AAC: our transcoder (`camera::g711_aac`) against the GStreamer branch it
//! replaced (alawdec, audioresample, voaacenc, at the same 32 kbit/s), on the 20 test clips made
//! G.711 by ffmpeg, clean and under a noise machine's pink noise. CPU per AAC frame (this
//! process's, GStreamer's threads included), the delay, and how close a player's decoder
//! (avdec_aac) gets to ffmpeg's own decoding of the G.711 at 16 kHz.

use super::common::shared_file;
use super::cpu_time;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use ipcam_mqtt::camera::g711::Law;
use ipcam_mqtt::camera::g711_aac::G711ToAac;
use std::path::Path;
use std::process::Command;

/// 20 ms packets, as cameras send.
const PACKET: usize = 160;
/// Each clip is encoded this many times for the CPU figure.
const ROUNDS: usize = 5;
/// Packet times start here, so the upsampler's delay has room before them.
const START_NS: u64 = 1_000_000_000;

struct Clip {
    alaw: Vec<u8>,
    /// ffmpeg's decoding of `alaw`, resampled to 16 kHz: the reference.
    reference: Vec<f32>,
}

pub fn run() {
    let Some(dir) = shared_file("fixtures/audio") else {
        println!("AAC benchmark skipped: the audio fixtures are missing");
        return;
    };
    let mut paths: Vec<_> = ["cry", "other"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).unwrap().flatten())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "wav"))
        .collect();
    paths.sort();
    println!();
    println!(
        "## G.711 to AAC ({} clips, 32 kbit/s, 16 kHz mono)",
        paths.len()
    );
    println!();
    println!(
        "| condition | encoder | CPU per AAC frame, µs | ours/GStreamer | delay, ms | SNR against ffmpeg's decoding, dB (median, min) |"
    );
    println!("|---|---|---|---|---|---|");
    for (condition, noise) in [("clean", false), ("noise machine", true)] {
        let clips: Vec<Clip> = paths.iter().map(|path| clip(path, noise)).collect();
        let ours = measure(&clips, ours);
        let theirs = measure(&clips, gstreamer_branch);
        for (name, result) in [("ours", &ours), ("GStreamer (voaacenc)", &theirs)] {
            println!(
                "| {condition} | {name} | {:.1} | {:.2} | {:.1} | {:.1}, {:.1} |",
                result.us_per_frame,
                result.us_per_frame / theirs.us_per_frame,
                result.delay_ms,
                result.snr_median,
                result.snr_min
            );
        }
    }
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(output.status.success(), "ffmpeg {args:?}");
    output.stdout
}

/// The clip as a camera would send it: 8 kHz A-law, with pink noise at -30 dBFS under it.
fn clip(path: &Path, noise: bool) -> Clip {
    let path = path.to_str().unwrap();
    let mut args = vec!["-i", path];
    if noise {
        args.extend([
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=pink:amplitude=0.05:sample_rate=16000",
            "-filter_complex",
            "[0][1]amix=inputs=2:duration=first:normalize=0",
        ]);
    }
    args.extend(["-ac", "1", "-ar", "8000", "-f", "alaw", "-"]);
    let alaw = ffmpeg(&args);
    let file = std::env::temp_dir().join(format!("aac-bench-{}.alaw", std::process::id()));
    std::fs::write(&file, &alaw).unwrap();
    let reference = ffmpeg(&[
        "-f",
        "alaw",
        "-ar",
        "8000",
        "-ac",
        "1",
        "-i",
        file.to_str().unwrap(),
        "-ar",
        "16000",
        "-f",
        "f32le",
        "-",
    ]);
    let _ = std::fs::remove_file(&file);
    Clip {
        alaw,
        reference: floats(&reference),
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

struct Result {
    us_per_frame: f64,
    delay_ms: f64,
    snr_median: f64,
    snr_min: f64,
}

/// Encodes every clip `ROUNDS` times for the CPU, then decodes the last round's frames.
fn measure(clips: &[Clip], encode: fn(&[u8]) -> Vec<Vec<u8>>) -> Result {
    let me = std::process::id();
    let before = cpu_time(me);
    let mut frames = 0;
    let mut encoded = Vec::new();
    for _ in 0..ROUNDS {
        encoded = clips.iter().map(|clip| encode(&clip.alaw)).collect();
        frames += encoded.iter().map(Vec::len).sum::<usize>();
    }
    let cpu = cpu_time(me) - before;
    let mut delays = Vec::new();
    let mut snrs = Vec::new();
    for (clip, frames) in clips.iter().zip(&encoded) {
        let decoded = decode(frames);
        let (delay, snr) = best_alignment(&clip.reference, &decoded);
        delays.push(delay as f64 / 16.0);
        snrs.push(snr);
    }
    delays.sort_by(f64::total_cmp);
    snrs.sort_by(f64::total_cmp);
    Result {
        us_per_frame: cpu.as_secs_f64() * 1e6 / frames.max(1) as f64,
        delay_ms: delays[delays.len() / 2],
        snr_median: snrs[snrs.len() / 2],
        snr_min: snrs[0],
    }
}

fn ours(alaw: &[u8]) -> Vec<Vec<u8>> {
    let mut transcoder = G711ToAac::new(Law::A, 8000).unwrap();
    alaw.chunks(PACKET)
        .enumerate()
        .flat_map(|(i, payload)| transcoder.push(payload, START_NS + i as u64 * 20_000_000, false))
        .map(|frame| frame.data)
        .collect()
}

/// The branch G.711 cameras had before, packet by packet as the add-on fed it.
fn gstreamer_branch(alaw: &[u8]) -> Vec<Vec<u8>> {
    run_pipeline(
        "appsrc name=src format=time caps=audio/x-alaw,rate=8000,channels=1 ! alawdec \
         ! audioresample ! audio/x-raw,rate=16000,channels=1 ! voaacenc bitrate=32000 \
         ! appsink name=sink sync=false",
        alaw.chunks(PACKET).map(<[u8]>::to_vec).collect(),
    )
}

fn decode(frames: &[Vec<u8>]) -> Vec<f32> {
    let out = run_pipeline(
        "appsrc name=src format=time caps=audio/mpeg,mpegversion=4,stream-format=raw,\
         rate=16000,channels=1,codec_data=(buffer)1408 \
         ! avdec_aac ! audioconvert ! audio/x-raw,format=F32LE,channels=1 \
         ! appsink name=sink sync=false",
        frames.to_vec(),
    );
    floats(&out.concat())
}

/// Pushes `buffers` 20 ms apart and returns what the sink got.
fn run_pipeline(description: &str, buffers: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let by_name = |name| pipeline.by_name(name).unwrap();
    let src = by_name("src").downcast::<gst_app::AppSrc>().unwrap();
    let sink = by_name("sink").downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let feeder = std::thread::spawn(move || {
        for (i, bytes) in buffers.into_iter().enumerate() {
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            let pts = gst::ClockTime::from_nseconds(START_NS + i as u64 * 20_000_000);
            buffer.get_mut().unwrap().set_pts(pts);
            src.push_buffer(buffer).unwrap();
        }
        src.end_of_stream().unwrap();
    });
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        out.push(sample.buffer().unwrap().map_readable().unwrap().to_vec());
    }
    feeder.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// The delay (in 16 kHz samples, up to 150 ms) at which `decoded` best matches `reference`,
/// and the signal-to-noise ratio there.
fn best_alignment(reference: &[f32], decoded: &[f32]) -> (usize, f64) {
    let snr = |delay: usize, length: usize| {
        let pairs = reference.iter().zip(&decoded[delay..]).take(length);
        let (signal, noise) = pairs.fold((0.0f64, 0.0f64), |(s, n), (x, y)| {
            (s + f64::from(*x).powi(2), n + f64::from(x - y).powi(2))
        });
        10.0 * (signal / noise.max(1e-12)).log10()
    };
    let usable = decoded.len().saturating_sub(2400).min(reference.len());
    let delay = (0..2400.min(decoded.len()))
        .max_by(|&a, &b| snr(a, usable.min(32_000)).total_cmp(&snr(b, usable.min(32_000))))
        .unwrap_or(0);
    (delay, snr(delay, usable))
}
