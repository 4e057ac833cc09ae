//! Goal 5: the latency the re-streamer adds to RTSP passthrough. Identical clients in this
//! process stamp each encoded frame as it leaves their parser: one through the add-on and two
//! straight to the camera. The same frame's stamps through us and straight differ by what the
//! add-on adds; the two straight clients differ by the measurement's own noise (the scheduler,
//! and the CPU the VM's host takes), the baseline. The clients do not decode: a viewer's decoder
//! runs on another machine, not on the add-on's two cores.

use super::common::Mosquitto;
use super::standins::H264_1080P_GOP2;
use super::{RUNS, addon, signed_ms, stamping_viewer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// 3 runs of 6 s give ~450 frames: p99 is the 5th worst.
const RUN: Duration = Duration::from_secs(6);

pub fn run(broker: &Mosquitto) {
    let camera = H264_1080P_GOP2.start();
    let ours = addon(broker, &camera.url(), 1, "close_after: 2");
    let mut added = Vec::new();
    let mut noise = Vec::new();
    let steal_before = steal_ticks();
    let started = Instant::now();
    for _ in 0..RUNS {
        let through = stamping_viewer(&ours.live_url("cam0"));
        let direct = stamping_viewer(&camera.url());
        let other = stamping_viewer(&camera.url());
        for viewer in [&through, &direct, &other] {
            viewer.wait_first_frame();
        }
        std::thread::sleep(Duration::from_secs(2));
        for viewer in [&through, &direct, &other] {
            viewer.arrived_at.lock().unwrap().clear();
        }
        // Shorter than the stand-in's 8 s loop, so no frame is seen twice.
        std::thread::sleep(RUN);
        let straight = direct.arrived_at.lock().unwrap().clone();
        added.extend(differences(&through.arrived_at.lock().unwrap(), &straight));
        noise.extend(differences(&other.arrived_at.lock().unwrap(), &straight));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let steal = (steal_ticks() - steal_before) as f64 / (cpus * started.elapsed().as_secs_f64());
    let added = Percentiles::of(added);
    let noise = Percentiles::of(noise);
    println!(
        "\n## Latency added by the re-streamer ({}, {RUNS} runs of {} s, {} frames; ms)\n",
        H264_1080P_GOP2.label,
        RUN.as_secs(),
        added.count
    );
    println!("| frame stamped by | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!("| a client through us, minus one straight to the camera | {added} |");
    println!(
        "| a second client straight to the camera, minus the first (the noise floor) | {noise} |"
    );
    println!(
        "\nGoal p99 ≤ 10 ms: {}. CPU the VM's host took (steal) during the runs: {steal:.1} % of the machine.",
        if added.p99 <= 10.0 { "✔" } else { "✘" }
    );
}

/// How much later each frame `b` saw was stamped than the same frame in `a`, in ms.
fn differences(b: &HashMap<u64, Instant>, a: &HashMap<u64, Instant>) -> Vec<f64> {
    b.iter()
        .filter_map(|(frame, at)| a.get(frame).map(|first| signed_ms(*at, *first)))
        .collect()
}

struct Percentiles {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut values: Vec<f64>) -> Percentiles {
        assert!(!values.is_empty(), "no frame was seen by both clients");
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            count: values.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "{:.1} | {:.1} | {:.1} | {:.1}",
            self.p50, self.p90, self.p99, self.max
        )
    }
}

/// Steal ticks of all CPUs (`/proc/stat`, 100 per second per CPU).
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            stat.lines()
                .next()
                .and_then(|cpu| cpu.split_whitespace().nth(8))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
