//! Goal 7: 32 cameras × 2 viewers each, with cry detection on 4 of them, on this machine: the
//! add-on's share of the machine's CPU, and whether any viewer misses frames.

use super::common::{self, AddOn, Mosquitto, Proc, shared_file};
use super::standins::H264_1080P_GOP2;
use super::{cpu_ticks, rss_mb};
use std::time::{Duration, Instant};

const CAMERAS: usize = 32;
const VIEWERS_EACH: usize = 2;
const LISTENING: usize = 4;
const WINDOW: Duration = Duration::from_secs(20);
const FPS: f64 = 25.0;

pub fn run(broker: &Mosquitto) {
    let camera = H264_1080P_GOP2.start();
    let url = camera.url();
    let model = shared_file("models/yamnet.onnx");
    let ids: Vec<String> = (0..CAMERAS).map(|i| format!("cam{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let cry = model.is_some() && i < LISTENING;
            (
                id.as_str(),
                url.as_str(),
                if cry { "cry_detection: true" } else { "" },
            )
        })
        .collect();
    let config = match &model {
        Some(model) => common::cry_config(broker.port, &entries, model),
        None => common::config(broker.port, common::free_port(), &entries),
    };
    let addon = AddOn::start(&config);
    let viewers: Vec<Proc> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(addon.live_url(id), VIEWERS_EACH))
        .map(|url| common::counting_viewer_with(&url, "1", &["-c", "copy"]))
        .collect();
    common::wait_until("every viewer receiving", Duration::from_secs(60), || {
        viewers.iter().all(|v| v.decoded_frames() > 50)
    });
    std::thread::sleep(Duration::from_secs(5));

    let pid = addon.proc.child.id();
    let dropped_before = dropped_frames(&addon);
    let frames_before: Vec<u64> = viewers.iter().map(Proc::decoded_frames).collect();
    let (busy_before, total_before) = machine_ticks();
    let ours_before = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let seconds = started.elapsed().as_secs_f64();
    let ours = (cpu_ticks(pid) - ours_before) as f64 / 100.0 / seconds * 100.0;
    let (busy_after, total_after) = machine_ticks();
    let machine = (busy_after - busy_before) as f64 / (total_after - total_before) as f64 * 100.0;
    let frames: Vec<f64> = viewers
        .iter()
        .zip(&frames_before)
        .map(|(v, before)| (v.decoded_frames() - before) as f64)
        .collect();
    let dropped = dropped_frames(&addon) - dropped_before;
    let rss = rss_mb(pid);
    let listening = if model.is_some() { LISTENING } else { 0 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = ours / cores;
    let slowest = frames.iter().cloned().fold(f64::MAX, f64::min);
    // ffmpeg's progress comes once a second, so a viewer's count is ±1 s of frames.
    let expected = FPS * seconds;
    let no_drops = dropped == 0 && slowest >= expected - 2.0 * FPS;
    println!(
        "\n## Scale: {CAMERAS} cameras × {VIEWERS_EACH} viewers, cry detection on {listening} ({}, {:.0} s)\n",
        H264_1080P_GOP2.label,
        WINDOW.as_secs_f64()
    );
    println!("| measure | value | goal |");
    println!("|---|---|---|");
    println!(
        "| add-on CPU | {ours:.0} % of one core = {share:.1} % of the machine's {cores:.0} cores | < 50 % of the machine {} |",
        if share < 50.0 { "✔" } else { "✘" }
    );
    println!(
        "| whole machine busy (stand-in and {} ffmpeg viewers included) | {machine:.0} % | — |",
        viewers.len()
    );
    println!("| add-on RSS | {rss:.0} MB | — |");
    println!(
        "| frames per viewer in the window | slowest {slowest:.0}, expected {expected:.0}; hub drops {dropped} | no drops {} |",
        if no_drops { "✔" } else { "✘" }
    );
    if model.is_none() {
        println!("\n(cry detection left out: ../shared/models/yamnet.onnx is missing)");
    }
}

/// Busy and total jiffies of all CPUs, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Frames the hub dropped for slow viewers, over every camera (`/api/streams`).
fn dropped_frames(addon: &AddOn) -> u64 {
    let (_, body) = common::http_get(&format!("http://127.0.0.1:{}/api/streams", addon.http_port));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    json.as_object()
        .map(|cameras| {
            cameras
                .values()
                .filter_map(|c| c["dropped_frames"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}
