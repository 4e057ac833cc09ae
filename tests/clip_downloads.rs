//! Clip downloads stream from the file: Range requests work (players seek, downloads resume),
//! memory stays flat under parallel downloads of a large clip, and a fifth at once is told to
//! come back rather than queued in memory.
mod common;
use common::*;
use std::time::Duration;

const CLIP: &str = "manual-20261204-031500-000";

#[test]
fn large_clips_stream_with_ranges_and_parallel_downloads_keep_memory_flat() {
    let media = tempfile::tempdir().unwrap();
    let dir = media.path().join("cam");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join(format!("{CLIP}.mp4"));
    write_mp4(
        &clip,
        "testsrc2=size=1280x720:rate=25",
        &[
            "-t",
            "8",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "24M",
        ],
    );
    let size = std::fs::metadata(&clip).unwrap().len();
    assert!(size > 10_000_000, "a large clip: {size} bytes");
    let sidecar = serde_json::json!({
        "event_id": CLIP, "kind": "manual",
        "started_at": {"secs_since_epoch": 1_796_000_100u64, "nanos_since_epoch": 0},
        "duration_s": 8.0, "video": "h264", "audio": false, "complete": true
    });
    std::fs::write(dir.join(format!("{CLIP}.json")), sidecar.to_string()).unwrap();

    let rig_broker = Mosquitto::start();
    let camera = Camera::start(&[]);
    let yaml = config(rig_broker.port, free_port(), &[("cam", &camera.url(), "")])
        + &format!("media_dir: {}\n", media.path().display());
    let addon = AddOn::start(&yaml);
    let url = format!(
        "http://127.0.0.1:{}/api/clips/cam/{CLIP}.mp4",
        addon.http_port
    );

    let (status, head) = http_get_with(&url, &["-r", "0-99"]);
    assert_eq!((status, head.len()), (206, 100), "a Range request");
    let (status, whole) = http_get(&url);
    assert_eq!(status, 200);
    assert_eq!(whole.len() as u64, size);

    let pid = addon.proc.child.id();
    let before = rss_kb(pid);
    // Four clients that ask and then stop reading: their downloads stay in progress, with the
    // server blocked on full socket buffers (a 15 MB clip is more than they hold).
    let path = format!("/api/clips/cam/{CLIP}.mp4");
    let slow: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            use std::io::Write;
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", addon.http_port)).unwrap();
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
                .unwrap();
            stream
        })
        .collect();
    let mut fifth = (0, Vec::new());
    wait_until(
        "the four downloads to take every place",
        Duration::from_secs(20),
        || {
            fifth = http_get_with(&url, &["-r", "0-0"]);
            fifth.0 == 503
        },
    );
    assert!(String::from_utf8_lossy(&fifth.1).contains("try again"));
    std::thread::sleep(Duration::from_secs(3)); // let them stream for a while
    let during = rss_kb(pid);
    drop(slow);
    eprintln!(
        "RSS {before} kB before, {during} kB with 4 downloads of a {} MB clip",
        size / 1_000_000
    );
    assert!(
        during < before + 16_000,
        "memory grew by {} kB for 4 downloads of {size} bytes",
        during - before
    );
    wait_until("a place to come free", Duration::from_secs(10), || {
        http_get_with(&url, &["-r", "0-9"]).0 == 206
    });
}
