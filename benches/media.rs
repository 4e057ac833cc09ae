//! Media benchmark: the add-on side by side with an ffmpeg relay, in one run, as tables.
//!
//! `cargo bench --bench media` (or `scripts/bench.sh`). Needs ffmpeg and mosquitto.
//! Figures are ratios against baselines measured in the same run, because these machines are noisy.
//!
//! Cameras are stand-ins looping realistic streams (`media/standins.rs`: 1080p H.264 with 2 s and
//! 4 s GOPs, all-intra, 4K H.265, G.711 audio). `BENCH_ONLY=<part>` runs one part:
//!
//! - `latency`: time to first frame joining a running 4 s-GOP stream against the same client on
//!   an all-intra camera, the joiner's lag behind live, and the cold-start overhead (goals 3, 4).
//! - `cpu` (`media/passthrough.rs`): CPU and RSS per passthrough stream against an ffmpeg relay
//!   and a direct ffmpeg client (goals 1, 2).
//! - `ingest` (`media/ingest.rs`): what reading the cameras costs with no viewer: our ingest,
//!   a retina reader and ffmpeg readers.
//! - `added` (`media/added_latency.rs`): latency the re-streamer adds, frame by frame (goal 5).
//! - `scale` (`media/scale.rs`): 32 cameras × 2 viewers with cry detection on 4 (goal 7).
//! - `snapshot` (`media/snapshot.rs`): `frame.jpeg` while streaming and cold, and the interval
//!   mode's CPU.
//! - `cry` (`media/cry.rs`): inference against Python ONNX Runtime, CPU per camera (goal 8), and
//!   the alert latency.
//! - `events` (`media/events.rs`): the pre-roll's CPU and RSS, and trigger to clip.
//! - `webrtc` (`media/webrtc.rs`): glass-to-glass in headless Chromium (goal 6) and CPU per
//!   WebRTC viewer.
//! - `aac` (`media/aac.rs`): the G.711 camera's AAC, our transcoder against the GStreamer branch
//!   it replaced: CPU per frame, delay, and closeness to the G.711 it came from.
//! - `mse` (`media/mse.rs`): MSE beside WebRTC on one 4 s-GOP camera: first frame and delay
//!   behind live in Chromium, CPU per camera muxer and per MSE viewer.

#[path = "media/aac.rs"]
mod aac;
#[path = "media/added_latency.rs"]
mod added_latency;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "media/cry.rs"]
mod cry;
#[path = "media/events.rs"]
mod events;
#[path = "media/ingest.rs"]
mod ingest;
#[cfg(feature = "webrtc")]
#[path = "media/mse.rs"]
mod mse;
#[path = "media/passthrough.rs"]
mod passthrough;
#[path = "media/scale.rs"]
mod scale;
#[path = "media/snapshot.rs"]
mod snapshot;
#[path = "media/standins.rs"]
mod standins;
#[cfg(feature = "webrtc")]
#[path = "media/webrtc.rs"]
mod webrtc;

use common::{AddOn, CAMERA_720P, Mosquitto, Proc, free_port};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WARMUP: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_secs(8);
/// Repeats of each side-by-side comparison, for median, min and max.
const RUNS: usize = 3;

/// The add-on with `n` cameras `cam0…`, all pulling `camera_url`, each with `extra` config lines.
fn addon(broker: &Mosquitto, camera_url: &str, n: usize, extra: &str) -> AddOn {
    addon_binary(common::BIN, broker, camera_url, n, extra)
}

/// [`addon`], running the binary at `bin`.
fn addon_binary(bin: &str, broker: &Mosquitto, camera_url: &str, n: usize, extra: &str) -> AddOn {
    let ids: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), camera_url, extra))
        .collect();
    AddOn::start_binary(
        bin,
        &common::config(broker.port, free_port(), &entries),
        &[],
    )
}

fn ffmpeg(url: &str, codec_args: &[&str]) -> Proc {
    Proc::spawn(&mut common::ffmpeg_command(
        url,
        &[codec_args, &["-f", "null", "-"]].concat(),
    ))
}

/// A process's own CPU time, all its threads, to the nanosecond (its CPU-time clock). The
/// ticks of `/proc/<pid>/stat` count in hundredths of a second: a reader at 0.3 % of a core
/// moves 2 or 3 of them in a window, so summing eight such processes was off by a third.
fn cpu_time(pid: u32) -> Duration {
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write through the pointers they are given, to live locals.
    let read = unsafe {
        libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0
            && libc::clock_gettime(clock, &mut now) == 0
    };
    if !read {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU of a process's finished children (`cutime + cstime` in `/proc/<pid>/stat`, in ticks
/// of 10 ms).
fn children_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let values: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [13, 14]
        .iter()
        .filter_map(|&i| values.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU (% of one core, summed) and RSS (MB, summed) of `pids` over the window.
fn measure(pids: &[u32]) -> (f64, f64) {
    let cpu = cpu_percent(pids, cpu_time, WARMUP, WINDOW);
    let rss = pids.iter().map(|p| rss_mb(*p)).sum();
    (cpu, rss)
}

/// CPU (% of one core, summed over `pids`) over `window`, after `warmup`.
fn cpu_percent(pids: &[u32], cpu: fn(u32) -> Duration, warmup: Duration, window: Duration) -> f64 {
    std::thread::sleep(warmup);
    let before: Duration = pids.iter().map(|p| cpu(*p)).sum();
    let start = Instant::now();
    std::thread::sleep(window);
    let after: Duration = pids.iter().map(|p| cpu(*p)).sum();
    (after - before).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0
}

fn pids(procs: &[Proc]) -> Vec<u32> {
    procs.iter().map(|p| p.child.id()).collect()
}

/// What one viewer saw: time to first decoded frame, and decode times keyed by the encoded frame.
struct Viewer {
    pipeline: gst::Pipeline,
    first_frame: Arc<Mutex<Option<Duration>>>,
    decoded_at: Arc<Mutex<HashMap<u64, Instant>>>,
    /// When each encoded frame left the client's parser, before decoding.
    arrived_at: Arc<Mutex<HashMap<u64, Instant>>>,
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// `rtspsrc ! depay ! parse ! avdec_h264 ! appsink`, timing each frame at the decoder's output.
fn viewer(url: &str) -> Viewer {
    client(url, "avdec_h264 ! ")
}

/// A viewer that only stamps the encoded frames: a decoder in its streaming thread would delay
/// the next frame's stamp by however long the last decode waited for a core.
fn stamping_viewer(url: &str) -> Viewer {
    client(url, "")
}

fn client(url: &str, decoder: &str) -> Viewer {
    let pipeline = gst::parse::launch(&format!(
        "rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay wait-for-keyframe=true ! h264parse ! identity name=tap ! {decoder}appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let started = Instant::now();
    let first_frame = Arc::new(Mutex::new(None));
    let decoded_at = Arc::new(Mutex::new(HashMap::new()));
    let pts_to_hash: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let arrived_at = Arc::new(Mutex::new(HashMap::new()));
    let tap = pipeline.by_name("tap").unwrap();
    {
        let pts_to_hash = pts_to_hash.clone();
        let arrived_at = arrived_at.clone();
        tap.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(buffer) = info.buffer() {
                    if let (Some(pts), Ok(map)) = (buffer.pts(), buffer.map_readable()) {
                        let frame = hash(map.as_slice());
                        arrived_at.lock().unwrap().insert(frame, Instant::now());
                        pts_to_hash.lock().unwrap().insert(pts.nseconds(), frame);
                    }
                }
                gst::PadProbeReturn::Ok
            });
    }
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    {
        let first_frame = first_frame.clone();
        let decoded_at = decoded_at.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let now = Instant::now();
                    first_frame.lock().unwrap().get_or_insert(now - started);
                    if let Some(pts) = sample.buffer().and_then(|b| b.pts()) {
                        if let Some(h) = pts_to_hash.lock().unwrap().get(&pts.nseconds()) {
                            decoded_at.lock().unwrap().insert(*h, now);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    Viewer {
        pipeline,
        first_frame,
        decoded_at,
        arrived_at,
    }
}

impl Viewer {
    fn wait_first_frame(&self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(d) = *self.first_frame.lock().unwrap() {
                return d;
            }
            assert!(Instant::now() < deadline, "no frame within 15 s");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// `a − b` in milliseconds, either sign.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    ms(a.saturating_duration_since(b)) - ms(b.saturating_duration_since(a))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// `median (min–max)` with `decimals`.
fn spread(values: &[f64], decimals: usize) -> String {
    let (m, lo, hi) = median(values.to_vec());
    format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

fn start_latency(broker: &Mosquitto) {
    const RUNS: usize = 7;
    let gop4 = standins::H264_1080P_GOP4.start();
    let intra = standins::H264_1080P_INTRA.start();
    let (gop4_url, intra_url) = (gop4.url(), intra.url());
    let addon_proc = addon(broker, &gop4_url, 1, "close_after: 2");
    let live = addon_proc.live_url("cam0");
    // Warm cameras for the direct joins, as our ingest keeps the 4 s-GOP one warm.
    let _warm_intra = viewer(&intra_url);

    // Keep the camera streaming with a steady viewer: it is also the reference for "live".
    let steady = viewer(&live);
    steady.wait_first_frame();
    std::thread::sleep(Duration::from_secs(3));

    let mut joined_ttff = Vec::new();
    let mut lag_extra = Vec::new();
    let mut direct_gop4 = Vec::new();
    let mut direct_intra = Vec::new();
    for run in 0..RUNS {
        // Join at different points of the 4 s GOP.
        std::thread::sleep(Duration::from_millis(530 * (run as u64 % 7)));
        let joiner = viewer(&live);
        let ttff = joiner.wait_first_frame();
        joined_ttff.push(ms(ttff));
        std::thread::sleep(Duration::from_secs(2));
        // The same encoded frames, decoded by the joiner and by the steady viewer.
        let recent = Instant::now() - Duration::from_millis(500);
        let steady_times = steady.decoded_at.lock().unwrap().clone();
        let extra: Vec<f64> = joiner
            .decoded_at
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| **t > recent)
            .filter_map(|(h, t)| steady_times.get(h).map(|s| signed_ms(*t, *s)))
            .collect();
        if !extra.is_empty() {
            lag_extra.push(extra.iter().sum::<f64>() / extra.len() as f64);
        }
        drop(joiner);
        direct_gop4.push(ms(viewer(&gop4_url).wait_first_frame()));
        direct_intra.push(ms(viewer(&intra_url).wait_first_frame()));
    }
    drop(steady);

    // Cold start: the camera idle (its grace period over), first frame through us vs straight.
    let mut cold_ours = Vec::new();
    let mut cold_direct = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(4));
        cold_ours.push(ms(viewer(&live).wait_first_frame()));
        std::thread::sleep(Duration::from_secs(4));
        cold_direct.push(ms(viewer(&gop4_url).wait_first_frame()));
    }
    drop(addon_proc);

    let row = |name: &str, v: &[f64]| {
        let (m, lo, hi) = median(v.to_vec());
        println!("| {name} | {m:.0} | {lo:.0} | {hi:.0} |");
    };
    println!(
        "\n## Start latency (1080p25 H.264, gst rtspsrc ! avdec_h264 client over TCP, {RUNS} runs; ms)\n"
    );
    println!("| measure | median | min | max |");
    println!("|---|---|---|---|");
    row(
        "first frame, joining our running 4 s-GOP stream",
        &joined_ttff,
    );
    row(
        "first frame, same client straight to an all-intra camera (floor)",
        &direct_intra,
    );
    row(
        "first frame, same client straight to the 4 s-GOP camera",
        &direct_gop4,
    );
    row(
        "joiner's extra delay behind a steady viewer, 2 s after joining",
        &lag_extra,
    );
    row(
        "cold start: first frame through us, camera idle",
        &cold_ours,
    );
    row(
        "cold start: first frame straight from the idle camera",
        &cold_direct,
    );
    let (j, _, _) = median(joined_ttff);
    let (f, _, _) = median(direct_intra);
    let (co, _, _) = median(cold_ours);
    let (cd, _, _) = median(cold_direct);
    println!(
        "\njoin − floor: {:.0} ms (goal ≤ 50); cold-start overhead: {:.0} ms (goal ≤ 100)",
        j - f,
        co - cd
    );
}

fn main() {
    if let Ok(spec) = std::env::var(ingest::READER_ENV) {
        ingest::read_with_retina(&spec);
    }
    // `cargo test --all-targets` runs this binary without `--bench`: measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "media benchmark: run it with `cargo bench --bench media` (skipped under cargo test)"
        );
        return;
    }
    gst::init().unwrap();
    let broker = Mosquitto::start();
    println!(
        "# ipcam-mqtt media benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "latency" {
        start_latency(&broker);
    }
    if only.is_empty() || only == "cpu" {
        passthrough::run(&broker);
    }
    if only.is_empty() || only == "ingest" {
        ingest::run(&broker);
    }
    if only.is_empty() || only == "added" {
        added_latency::run(&broker);
    }
    if only.is_empty() || only == "scale" {
        scale::run(&broker);
    }
    if only.is_empty() || only == "snapshot" {
        snapshot::run(&broker);
    }
    if only.is_empty() || only == "cry" {
        cry::run(&broker);
    }
    if only.is_empty() || only == "aac" {
        aac::run();
    }
    if only.is_empty() || only == "events" {
        events::run(&broker);
    }
    #[cfg(feature = "webrtc")]
    if only.is_empty() || only == "webrtc" {
        webrtc::run(&broker);
    }
    #[cfg(feature = "webrtc")]
    if only.is_empty() || only == "mse" {
        mse::run(&broker);
    }
}
