//! A viewer that stops reading never stalls the camera or the other viewers: its own queue is
//! bounded, frames are dropped for it alone, and the drops are counted.
mod common;
use common::*;
use socket2::{Domain, Socket, Type};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An RTSP/TCP client that sets up and plays both tracks, then never reads again.
fn stalled_viewer(url: &str, port: u16) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    // A tiny window makes the server's socket fill up in a fraction of a second.
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    rtsp_request(
        &mut stream,
        1,
        &format!("DESCRIBE {url}"),
        "Accept: application/sdp\r\n",
    );
    let session_header = rtsp_setup_both_tracks(&mut stream, url, 2);
    write!(
        stream,
        "PLAY {url} RTSP/1.0\r\nCSeq: 4\r\n{session_header}\r\n"
    )
    .unwrap();
    stream
}

#[test]
fn a_stalled_viewer_drops_its_own_frames_and_never_slows_the_others() {
    let Rig {
        addon,
        camera,
        mqtt,
        broker: _broker,
    } = Rig::start(&["--pattern", "snow", "--bitrate", "3000"], "");
    let url = addon.live_url("cam");
    let stalled = stalled_viewer(&url, addon.rtsp_port);
    // Let the stalled viewer's socket and queue fill up.
    std::thread::sleep(Duration::from_secs(3));

    // Meanwhile a normal viewer decodes at full speed: 8 s of 25 fps video in real time.
    let started = Instant::now();
    let frames = ffmpeg_decode_frames(&url, 200).unwrap();
    let took = started.elapsed();
    assert!(
        frames >= 200,
        "the healthy viewer decoded only {frames} frames"
    );
    assert!(
        took < Duration::from_secs(11),
        "200 frames at 25 fps took {took:?}: the stalled viewer slowed it"
    );

    let attributes =
        mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(35), |v| {
            v["dropped_frames"].as_u64().unwrap_or(0) > 0
        });
    println!(
        "dropped for the stalled viewer: {}",
        attributes["dropped_frames"]
    );
    assert_eq!(camera.connections(), 1);

    // The healthy viewer is gone; the stalled one still holds its socket open and reads
    // nothing. The server gives up on it once a write has made no progress for 30 s.
    let stalled_since = Instant::now();
    mqtt.wait_for_json("ipcam/cam/info/attributes", Duration::from_secs(60), |v| {
        v["viewers"] == 0
    });
    println!(
        "the stalled viewer was let go {:.0} s later",
        stalled_since.elapsed().as_secs_f64()
    );
    assert!(
        addon.logs().contains("left after") && addon.logs().contains("it took nothing for 30 s"),
        "{}",
        addon.logs()
    );
    drop(stalled);
}
