//! Goal 5: the latency the re-streamer adds to RTSP passthrough. Two identical clients in this
//! process, one straight to the camera and one through the add-on, stamp each encoded frame as it
//! leaves their parser; the same frame's two stamps differ by what the add-on adds.

use super::common::Mosquitto;
use super::standins::H264_1080P_GOP2;
use super::{RUNS, addon, signed_ms, viewer};
use std::time::Duration;

pub fn run(broker: &Mosquitto) {
    let camera = H264_1080P_GOP2.start();
    let ours = addon(broker, &camera.url(), 1, "close_after: 2");
    let mut added = Vec::new();
    for _ in 0..RUNS {
        let through = viewer(&ours.live_url("cam0"));
        let direct = viewer(&camera.url());
        through.wait_first_frame();
        direct.wait_first_frame();
        std::thread::sleep(Duration::from_secs(2));
        through.arrived_at.lock().unwrap().clear();
        direct.arrived_at.lock().unwrap().clear();
        // Shorter than the stand-in's 8 s loop, so no frame is seen twice.
        std::thread::sleep(Duration::from_secs(6));
        let straight = direct.arrived_at.lock().unwrap().clone();
        added.extend(
            through
                .arrived_at
                .lock()
                .unwrap()
                .iter()
                .filter_map(|(frame, at)| straight.get(frame).map(|s| signed_ms(*at, *s))),
        );
    }
    added.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| added[((added.len() - 1) as f64 * q).round() as usize];
    let p99 = at(0.99);
    println!(
        "\n## Latency added by the re-streamer ({}, {RUNS} runs of 6 s, {} frames; ms)\n",
        H264_1080P_GOP2.label,
        added.len()
    );
    println!("| p50 | p90 | p99 | max | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {p99:.1} | {:.1} | p99 ≤ 10 ms {} |",
        at(0.5),
        at(0.9),
        added[added.len() - 1],
        if p99 <= 10.0 { "✔" } else { "✘" }
    );
}
