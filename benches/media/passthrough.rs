//! Goals 1 and 2: CPU and RSS per passthrough stream with one viewer, against one ffmpeg relay
//! per stream (`-c:v copy -c:a aac`, ring-mqtt's per-stream work) and one ffmpeg client straight
//! to the camera (`-c copy`, the floor). The three take turns within each run.
//!
//! The cameras send G.711, which the add-on transcodes to AAC and the floor copies, except the
//! row marked AAC: that camera's audio is passed through, as the floor's is.
//!
//! `BENCH_BEFORE=<path to an older ipcam-mqtt>` adds that build as a fourth turn of every run,
//! and a table of before and after from the same runs.

use super::common::Mosquitto;
use super::standins::{H264_1080P_GOP2, H264_1080P_GOP2_AAC, H265_4K, StandIn};
use super::{RUNS, addon_binary, ffmpeg, measure, median, pids, rss_mb, spread};
use std::time::Duration;

pub fn run(broker: &Mosquitto) {
    println!(
        "\n## CPU and RSS per passthrough stream, one `ffmpeg -c copy` viewer each ({RUNS} runs: median (min–max))\n"
    );
    println!(
        "| camera | streams | ours CPU % | relay CPU % | floor CPU % | ours/relay | ours/floor | ours idle RSS MB | ours RSS MB | RSS over idle per stream MB | RSS per further stream MB | relay RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let before_bin = std::env::var("BENCH_BEFORE").ok();
    let mut before_rows = Vec::new();
    for (standin, counts) in [
        (&H264_1080P_GOP2, &[1usize, 8][..]),
        (&H264_1080P_GOP2_AAC, &[8][..]),
        (&H265_4K, &[1, 4][..]),
    ] {
        let camera = standin.start();
        // The first stream also loads the media libraries; what each further one costs is the
        // step from the previous row.
        let mut previous: Option<(usize, f64)> = None;
        for &n in counts {
            let (rss, before) = compare(
                broker,
                standin,
                &camera.url(),
                n,
                previous,
                before_bin.as_deref(),
            );
            previous = Some((n, rss));
            before_rows.extend(before);
        }
    }
    if let Some(bin) = before_bin {
        println!("\n### Before (`{bin}`) and after, from the same runs\n");
        println!(
            "| camera | streams | before CPU % | after CPU % | after/before | before RSS MB | after RSS MB |"
        );
        println!("|---|---|---|---|---|---|---|");
        for row in before_rows {
            println!("{row}");
        }
    }
}

/// Prints one row; returns our median RSS, and the before-and-after row when `before_bin` is set.
fn compare(
    broker: &Mosquitto,
    standin: &StandIn,
    camera_url: &str,
    n: usize,
    previous: Option<(usize, f64)>,
    before_bin: Option<&str>,
) -> (f64, Option<String>) {
    let (mut before, mut before_rss) = (Vec::new(), Vec::new());
    let mut ours = Vec::new();
    let mut relay = Vec::new();
    let mut floor = Vec::new();
    let mut idle_rss = Vec::new();
    let mut our_rss = Vec::new();
    let mut relay_rss = Vec::new();
    for _ in 0..RUNS {
        if let Some(bin) = before_bin {
            let (cpu, rss) = with_viewers(bin, broker, camera_url, n);
            before.push(cpu);
            before_rss.push(rss);
        }
        let addon = addon_binary(super::common::BIN, broker, camera_url, n, "close_after: 2");
        std::thread::sleep(Duration::from_secs(1));
        let pid = addon.proc.child.id();
        idle_rss.push(rss_mb(pid));
        let viewers: Vec<_> = (0..n)
            .map(|i| ffmpeg(&addon.live_url(&format!("cam{i}")), &["-c", "copy"]))
            .collect();
        let (cpu, rss) = measure(&[pid]);
        ours.push(cpu);
        our_rss.push(rss);
        drop(viewers);
        drop(addon);
        let relays: Vec<_> = (0..n)
            .map(|_| ffmpeg(camera_url, &["-c:v", "copy", "-c:a", "aac"]))
            .collect();
        let (cpu, rss) = measure(&pids(&relays));
        relay.push(cpu);
        relay_rss.push(rss);
        drop(relays);
        let floors: Vec<_> = (0..n)
            .map(|_| ffmpeg(camera_url, &["-c", "copy"]))
            .collect();
        floor.push(measure(&pids(&floors)).0);
    }
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let per_stream: Vec<f64> = our_rss
        .iter()
        .zip(&idle_rss)
        .map(|(rss, idle)| (rss - idle) / n as f64)
        .collect();
    let rss = median(our_rss.clone()).0;
    let further = previous
        .map(|(m, before)| format!("{:.2}", (rss - before) / (n - m) as f64))
        .unwrap_or_else(|| "—".into());
    println!(
        "| {} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {further} | {} |",
        standin.label,
        spread(&ours, 1),
        spread(&relay, 1),
        spread(&floor, 1),
        spread(&ratio(&ours, &relay), 2),
        spread(&ratio(&ours, &floor), 2),
        spread(&idle_rss, 1),
        spread(&our_rss, 1),
        spread(&per_stream, 2),
        spread(&relay_rss, 1),
    );
    let before_row = before_bin.map(|_| {
        format!(
            "| {} | {n} | {} | {} | {} | {} | {} |",
            standin.label,
            spread(&before, 1),
            spread(&ours, 1),
            spread(&ratio(&ours, &before), 2),
            spread(&before_rss, 1),
            spread(&our_rss, 1),
        )
    });
    (rss, before_row)
}

/// The build at `bin` with `n` streams and an `ffmpeg -c copy` viewer each: (CPU %, RSS MB).
fn with_viewers(bin: &str, broker: &Mosquitto, camera_url: &str, n: usize) -> (f64, f64) {
    let addon = addon_binary(bin, broker, camera_url, n, "close_after: 2");
    std::thread::sleep(Duration::from_secs(1));
    let viewers: Vec<_> = (0..n)
        .map(|i| ffmpeg(&addon.live_url(&format!("cam{i}")), &["-c", "copy"]))
        .collect();
    let measured = measure(&[addon.proc.child.id()]);
    drop(viewers);
    measured
}
