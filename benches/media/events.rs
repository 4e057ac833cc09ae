//! Event clips: what the pre-roll buffer costs per camera (against the same cameras with a
//! zero pre-roll, which keeps only the current GOP), and the time from a trigger to the clip's
//! file appearing.

use super::common::{self, Camera, Mosquitto, free_port};
use super::{CAMERA_720P, measure};
use std::time::{Duration, Instant};

const CAMERAS: usize = 8;
const PRE_ROLL_S: u64 = 5;
/// The camera's video bitrate and GOP (`CAMERA_720P`).
const BITRATE_MBIT: f64 = 4.2;
const GOP_S: f64 = 2.0;

pub fn run(broker: &Mosquitto) {
    println!();
    println!("## Event clips");
    println!();
    println!("| measure | ipcam-mqtt | baseline | baseline value | ratio | goal |");
    println!("|---|---|---|---|---|---|");
    // Noise, so the encoder really spends the 4.2 Mbit/s the RSS figure is measured against.
    let camera = Camera::start(&[&CAMERA_720P[..], &["--pattern", "snow"]].concat());
    preroll_cost(broker, &camera.url());
    trigger_to_file(broker, &camera.url());
}

fn addon(broker: &Mosquitto, url: &str, extra: &str, data: &std::path::Path) -> common::AddOn {
    let ids: Vec<String> = (0..CAMERAS).map(|i| format!("cam{i}")).collect();
    let entries: Vec<(&str, &str, &str)> = ids.iter().map(|id| (id.as_str(), url, extra)).collect();
    let mut yaml = common::config(broker.port, free_port(), &entries);
    yaml.push_str(&format!("data_dir: {}\n", data.display()));
    let addon = common::AddOn::start(&yaml);
    for id in &ids {
        broker.publish(&format!("ipcam/{id}/live_stream/command"), "ON", false);
    }
    addon
}

fn preroll_cost(broker: &Mosquitto, url: &str) {
    let data = tempfile::tempdir().unwrap();
    let without = addon(broker, url, "pre_roll: 0", data.path());
    let (cpu_without, rss_without) = measure(&[without.proc.child.id()]);
    drop(without);
    let with = addon(broker, url, &format!("pre_roll: {PRE_ROLL_S}"), data.path());
    let (cpu_with, rss_with) = measure(&[with.proc.child.id()]);
    drop(with);
    let cpu = (cpu_with - cpu_without) / CAMERAS as f64;
    let rss = (rss_with - rss_without) / CAMERAS as f64;
    // A pre-roll of N seconds holds N s plus up to one GOP; the zero pre-roll holds the GOP.
    let expected = BITRATE_MBIT / 8.0 * PRE_ROLL_S as f64;
    println!(
        "| CPU per camera of a {PRE_ROLL_S} s pre-roll, 720p 4.2 Mbit/s, {CAMERAS} cameras | {cpu:+.2} % of a core ({cpu_with:.1} % in all) | the same cameras with `pre_roll: 0` | {cpu_without:.1} % | {:.2} | passthrough, no decode |",
        cpu_with / cpu_without
    );
    println!(
        "| RSS per camera of a {PRE_ROLL_S} s pre-roll | {rss:+.1} MB ({rss_with:.0} MB in all) | bitrate × pre-roll = {BITRATE_MBIT} Mbit/s × {PRE_ROLL_S} s (+ up to a {GOP_S} s GOP) | {expected:.1} MB | {:.2} | ≈ 1 |",
        rss / expected
    );
}

fn trigger_to_file(broker: &Mosquitto, url: &str) {
    let data = tempfile::tempdir().unwrap();
    let ours = addon(broker, url, "pre_roll: 5\npost_roll: 0", data.path());
    std::thread::sleep(Duration::from_secs(8));
    let dir = data.path().join("media/cam0");
    let count = || {
        std::fs::read_dir(&dir).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
                .count()
        })
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let before = count();
        let asked = Instant::now();
        broker.publish("ipcam/cam0/record_clip/command", "1", false);
        while count() == before && asked.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        times.push(asked.elapsed().as_secs_f64() * 1000.0);
        // Let the 1 s clip finish before the next one.
        std::thread::sleep(Duration::from_secs(3));
    }
    drop(ours);
    times.sort_by(f64::total_cmp);
    println!(
        "| trigger (MQTT `record_clip`) → clip file on disk, streaming camera | {:.0} ms median ({:.0}–{:.0}) | — | — | — | — |",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
