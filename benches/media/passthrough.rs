//! Goals 1 and 2: CPU and RSS per passthrough stream with one viewer, against one ffmpeg relay
//! per stream (`-c:v copy -c:a aac`, ring-mqtt's per-stream work) and one ffmpeg client straight
//! to the camera (`-c copy`, the floor). The three take turns within each run.

use super::common::Mosquitto;
use super::standins::{H264_1080P_GOP2, H265_4K, StandIn};
use super::{RUNS, addon, ffmpeg, measure, median, pids, rss_mb, spread};
use std::time::Duration;

pub fn run(broker: &Mosquitto) {
    println!(
        "\n## CPU and RSS per passthrough stream, one `ffmpeg -c copy` viewer each ({RUNS} runs: median (min–max))\n"
    );
    println!(
        "| camera | streams | ours CPU % | relay CPU % | floor CPU % | ours/relay | ours/floor | ours idle RSS MB | ours RSS MB | RSS over idle per stream MB | RSS per further stream MB | relay RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (standin, counts) in [
        (&H264_1080P_GOP2, &[1usize, 8][..]),
        (&H265_4K, &[1, 4][..]),
    ] {
        let camera = standin.start();
        // The first stream also loads the media libraries; what each further one costs is the
        // step from the previous row.
        let mut previous: Option<(usize, f64)> = None;
        for &n in counts {
            let rss = compare(broker, standin, &camera.url(), n, previous);
            previous = Some((n, rss));
        }
    }
}

/// Prints one row; returns our median RSS.
fn compare(
    broker: &Mosquitto,
    standin: &StandIn,
    camera_url: &str,
    n: usize,
    previous: Option<(usize, f64)>,
) -> f64 {
    let mut ours = Vec::new();
    let mut relay = Vec::new();
    let mut floor = Vec::new();
    let mut idle_rss = Vec::new();
    let mut our_rss = Vec::new();
    let mut relay_rss = Vec::new();
    for _ in 0..RUNS {
        let addon = addon(broker, camera_url, n, "close_after: 2");
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
    rss
}
