//! The G.711 camera's AAC: our transcoder (`camera::g711_aac`) against the GStreamer branch it
//! replaced (alawdec, audioresample, voaacenc, at the same 32 kbit/s), on the 20 test clips made
//! G.711 by ffmpeg, clean and under a noise machine's pink noise. CPU per AAC frame (this
//! process's, GStreamer's threads included); the priming, audio a decoder plays before the
//! first sample went in (the add-on's times take it off); and how close a player's decoder
//! (avdec_aac) gets to ffmpeg's own decoding of the G.711 at 16 kHz. Then the shipped cry
//! model's verdict on each clip heard three ways: that G.711 decoding (what the model was
//! trained on), and each encoder's AAC.

use super::common::{cry_model, onnxruntime_library, shared_file};
use super::cpu_time;
use gstreamer as gst;
use gstreamer::prelude::*;
use ipcam_mqtt::audio::yamnet::Yamnet;
use ipcam_mqtt::audio::{HOP_SAMPLES, PATCH_SAMPLES};
use ipcam_mqtt::camera::g711::Law;
use ipcam_mqtt::camera::g711_aac::G711ToAac;
use ipcam_mqtt::media::pipeline::app_pipeline;
use std::path::Path;
use std::process::Command;

/// 20 ms packets, as cameras send.
const PACKET: usize = 160;
/// Each clip is encoded this many times for the CPU figure.
const ROUNDS: usize = 5;
/// Packet times start here, so the upsampler's delay has room before them.
const START_NS: u64 = 1_000_000_000;

struct Clip {
    crying: bool,
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
        "| condition | encoder | CPU per AAC frame, µs | ours/GStreamer | priming, ms | SNR against ffmpeg's decoding, dB (median, min) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut heard = Vec::new();
    for (condition, noise) in [("clean", false), ("noise machine", true)] {
        let clips: Vec<Clip> = paths.iter().map(|path| clip(path, noise)).collect();
        let ours = measure(&clips, ours);
        let theirs = measure(&clips, gstreamer_branch);
        for (name, result) in [("ours", &ours), ("GStreamer (voaacenc)", &theirs)] {
            println!(
                "| {condition} | {name} | {:.1} | {:.2} | {:.1} | {:.1}, {:.1} |",
                result.us_per_frame,
                result.us_per_frame / theirs.us_per_frame,
                result.priming_ms,
                result.snr_median,
                result.snr_min
            );
        }
        heard.push(Heard {
            condition,
            clips,
            ours: ours.decoded,
            theirs: theirs.decoded,
        });
    }
    cry_verdicts(&heard);
}

/// The shipped model on each clip: cry scores per patch, and the verdict at the default
/// sensitivity (the mean of 3 patches reaching 0.5), as `audio/detector.rs` decides.
/// One condition's clips, and each as a player decodes each encoder's AAC.
struct Heard {
    condition: &'static str,
    clips: Vec<Clip>,
    ours: Vec<Vec<f32>>,
    theirs: Vec<Vec<f32>>,
}

fn cry_verdicts(heard: &[Heard]) {
    let Some(library) = onnxruntime_library() else {
        println!("cry verdicts skipped: ONNX Runtime is missing");
        return;
    };
    // SAFETY: set before any ONNX Runtime thread exists.
    unsafe { std::env::set_var("ORT_DYLIB_PATH", library) };
    let mut yamnet = Yamnet::load(&cry_model()).unwrap();
    let mut scores = |audio: &[f32]| -> Vec<f32> {
        (0..)
            .map(|i| i * HOP_SAMPLES)
            .take_while(|start| start + PATCH_SAMPLES <= audio.len())
            .map(|start| {
                yamnet
                    .score(&audio[start..start + PATCH_SAMPLES])
                    .unwrap()
                    .cry
            })
            .collect()
    };
    println!();
    println!("Cry verdicts (the shipped model, default sensitivity: the mean of 3 patches ≥ 0.5):");
    println!();
    println!(
        "| condition | audio heard | cry clips heard as crying | other clips heard as crying | cry score per patch, mean distance from the G.711's |"
    );
    println!("|---|---|---|---|---|");
    for Heard {
        condition,
        clips,
        ours,
        theirs,
    } in heard
    {
        let reference: Vec<Vec<f32>> = clips.iter().map(|c| scores(&c.reference)).collect();
        let versions = [
            ("G.711 (ffmpeg)", reference.clone()),
            ("ours", ours.iter().map(|a| scores(a)).collect()),
            (
                "GStreamer (voaacenc)",
                theirs.iter().map(|a| scores(a)).collect(),
            ),
        ];
        let cries = clips.iter().filter(|c| c.crying).count();
        for (name, version) in &versions {
            let crying = |want: bool| {
                clips
                    .iter()
                    .zip(version)
                    .filter(|(clip, s)| clip.crying == want && verdict(s))
                    .count()
            };
            let (sum, count) = version
                .iter()
                .zip(&reference)
                .fold((0.0, 0), |acc, (s, r)| {
                    let d: f32 = s.iter().zip(r).map(|(a, b)| (a - b).abs()).sum();
                    (acc.0 + d, acc.1 + s.len().min(r.len()))
                });
            println!(
                "| {condition} | {name} | {} of {cries} | {} of {} | {:.3} |",
                crying(true),
                crying(false),
                clips.len() - cries,
                sum / count.max(1) as f32
            );
        }
    }
}

fn verdict(scores: &[f32]) -> bool {
    scores
        .windows(3)
        .any(|w| w.iter().sum::<f32>() / 3.0 >= 0.5)
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
    let crying = path.parent().is_some_and(|dir| dir.ends_with("cry"));
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
        crying,
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
    /// Where the clip starts in the decoded audio (median over the clips).
    priming_ms: f64,
    snr_median: f64,
    snr_min: f64,
    /// Each clip as a player decodes it, from where the clip starts.
    decoded: Vec<Vec<f32>>,
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
    let mut aligned = Vec::new();
    for (clip, frames) in clips.iter().zip(&encoded) {
        let decoded = decode(frames);
        let (delay, snr) = best_alignment(&clip.reference, &decoded);
        delays.push(delay as f64 / 16.0);
        snrs.push(snr);
        aligned.push(decoded[delay..].to_vec());
    }
    delays.sort_by(f64::total_cmp);
    snrs.sort_by(f64::total_cmp);
    Result {
        us_per_frame: cpu.as_secs_f64() * 1e6 / frames.max(1) as f64,
        priming_ms: delays[delays.len() / 2],
        snr_median: snrs[snrs.len() / 2],
        snr_min: snrs[0],
        decoded: aligned,
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
    let (pipeline, src, sink) = app_pipeline(description, "benchmark pipeline").unwrap();
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
