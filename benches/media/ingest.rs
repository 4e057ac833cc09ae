//! What reading a camera costs before anything is served, per RTSP client.
//!
//! - ours: the add-on's ingest (retina, video frames timed in the reading task, G.711 → AAC in
//!   the audio branch), held on by MQTT `ON` with no viewer;
//! - retina alone (scottlamb's async RTSP client, Moonfire NVR's): whole frames of both tracks
//!   on a two-thread tokio runtime, in a child process of this bench, nothing transcoded;
//! - the floor: one `ffmpeg -c copy` reader per camera.
//!
//! All read the 1080p 2 s-GOP stand-in with G.711 over TCP, taking turns within each run.

use super::common::{Mosquitto, Proc};
use super::standins::H264_1080P_GOP2;
use super::{RUNS, addon, ffmpeg, measure, pids, spread};

const CAMERAS: usize = 8;
/// Set in the child this bench starts as its retina reader: `<url> <sessions>`.
pub const READER_ENV: &str = "BENCH_RETINA_READER";

pub fn run(broker: &Mosquitto) {
    println!(
        "\n## Reading the camera: {CAMERAS} × 1080p H.264 + G.711 over TCP, no viewer ({RUNS} runs: median (min–max))\n"
    );
    println!("| reader | CPU % of a core | × ffmpeg floor |");
    println!("|---|---|---|");
    let camera = H264_1080P_GOP2.start();
    let url = camera.url();
    let (mut ours, mut retina, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let addon = addon(broker, &url, CAMERAS, "close_after: 2");
        for i in 0..CAMERAS {
            broker.publish(&format!("ipcam/cam{i}/live_stream/command"), "ON", false);
        }
        ours.push(measure(&[addon.proc.child.id()]).0);
        drop(addon);
        let mut reader = Proc::spawn(
            std::process::Command::new(std::env::current_exe().expect("the bench's own path"))
                .arg("--bench")
                .env(READER_ENV, format!("{url} {CAMERAS}")),
        );
        retina.push(measure(&[reader.child.id()]).0);
        assert!(
            reader.child.try_wait().unwrap().is_none(),
            "the retina reader stopped: see its error above"
        );
        drop(reader);
        let readers: Vec<_> = (0..CAMERAS)
            .map(|_| ffmpeg(&url, &["-c", "copy"]))
            .collect();
        floor.push(measure(&pids(&readers)).0);
    }
    let over_floor = |v: &[f64]| -> Vec<f64> { v.iter().zip(&floor).map(|(x, f)| x / f).collect() };
    for (name, values) in [
        ("ours (retina + G.711 → AAC)", &ours),
        ("retina, whole frames (G.711 not transcoded)", &retina),
        ("ffmpeg `-c copy`, one per camera", &floor),
    ] {
        println!(
            "| {name} | {} | {} |",
            spread(values, 1),
            spread(&over_floor(values), 2)
        );
    }
}

/// The child: `sessions` retina sessions on `url`, video and G.711, read until killed. Any error
/// ends the process, which the parent notices.
pub fn read_with_retina(spec: &str) -> ! {
    let (url, sessions) = spec.split_once(' ').expect("<url> <sessions>");
    let url = reqwest::Url::parse(url).expect("an RTSP URL");
    let sessions: usize = sessions.parse().expect("a number of sessions");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut readers = tokio::task::JoinSet::new();
        for _ in 0..sessions {
            readers.spawn(read_one(url.clone()));
        }
        let ended = readers.join_next().await;
        eprintln!("retina reader: a session ended: {ended:?}");
        std::process::exit(1)
    })
}

async fn read_one(url: reqwest::Url) -> Result<(), retina::Error> {
    use futures_util::StreamExt;
    use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
    let mut session = Session::describe(url, SessionOptions::default()).await?;
    let wanted: Vec<usize> = (0..session.streams().len())
        .filter(|&i| {
            matches!(
                session.streams()[i].encoding_name(),
                "h264" | "h265" | "pcma" | "pcmu"
            )
        })
        .collect();
    for i in wanted {
        session
            .setup(
                i,
                SetupOptions::default().transport(Transport::Tcp(Default::default())),
            )
            .await?;
    }
    let mut frames = session.play(PlayOptions::default()).await?.demuxed()?;
    while let Some(item) = frames.next().await {
        if let retina::codec::CodecItem::VideoFrame(frame) = item? {
            std::hint::black_box(frame.data().len());
        }
    }
    Ok(())
}
