//! Bad RTSP from raw sockets: garbage, a huge header, many slow half-sent requests. The server
//! survives, a viewer playing meanwhile keeps its frames coming, and a new viewer still gets in.
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `bytes` and reads what comes back until the server answers or closes.
fn send_and_read(port: u16, bytes: &[u8]) -> String {
    let mut stream = connect(port);
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..n]);
        if reply.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn garbage_huge_headers_and_slow_clients_do_not_hurt_other_viewers() {
    let mut rig = Rig::start(&[], "");
    let port = rig.addon.rtsp_port;
    let mut viewer = ffmpeg_command(
        &rig.addon.live_url("cam"),
        &["-c", "copy", "-f", "null", "-"],
    );
    let viewer = Proc::spawn(viewer.args(["-progress", "pipe:1"]));
    let frames = || viewer.decoded_frames();
    wait_until("the viewer to play", Duration::from_secs(15), || {
        frames() > 10
    });

    let started = Instant::now();
    // Binary garbage, and a request line that is not RTSP.
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = send_and_read(port, &garbage);
    eprintln!("garbage: {:.1} s", started.elapsed().as_secs_f64());
    let reply = send_and_read(port, b"HELLO /cam_live HTTP/9.9\r\n\r\n");
    eprintln!(
        "odd request line answered: {:?} at {:.1} s",
        reply.lines().next(),
        started.elapsed().as_secs_f64()
    );
    // A 1 MiB header.
    let huge = format!(
        "OPTIONS rtsp://127.0.0.1:{port}/cam_live RTSP/1.0\r\nCSeq: 1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let reply = send_and_read(port, huge.as_bytes());
    eprintln!(
        "1 MiB header answered: {:?} at {:.1} s",
        reply.lines().next(),
        started.elapsed().as_secs_f64()
    );
    // Slowloris: 300 connections that each send half a request and then wait. One address may
    // hold 256 connections: the rest are closed at once, and the others once they have sent no
    // complete request for 10 s.
    let slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(port);
            let _ = s.write_all(b"DESCRIBE rtsp://127.0.0.1/cam_live RTSP/1.0\r\nCSeq: 1\r\n");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let closed = |slow: &[TcpStream]| {
        slow.iter()
            // Closed: end of stream, or a reset (the server did not read the half request).
            .filter(|s| match (&**s).read(&mut [0u8; 16]) {
                Ok(n) => n == 0,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            })
            .count()
    };
    let before = frames();
    std::thread::sleep(Duration::from_secs(2));
    let at_once = closed(&slow);
    let after = frames();
    eprintln!(
        "abuse took {:.1} s; {at_once} of 300 slow connections closed at once; the playing viewer decoded {} frames in the 2 s after",
        started.elapsed().as_secs_f64(),
        after - before
    );
    assert!(
        at_once >= 300 - 256,
        "the connections beyond the limit are closed: {at_once}"
    );
    assert!(
        after >= before + 30,
        "the viewer kept playing: {before} → {after}"
    );
    wait_until(
        "the slow connections to be closed",
        Duration::from_secs(15),
        || closed(&slow) == 300,
    );
    eprintln!(
        "all 300 slow connections closed {:.1} s after the abuse began",
        started.elapsed().as_secs_f64()
    );
    let playing = frames();
    std::thread::sleep(Duration::from_secs(1));
    assert!(frames() > playing, "the viewer still plays");
    assert_eq!(
        ffprobe_codecs(&rig.addon.live_url("cam"), "tcp")
            .unwrap()
            .len(),
        2
    );
    drop(slow);
    assert!(rig.addon.logs().lines().all(|l| !l.contains("panicked")));
    assert_eq!(rig.addon.proc.exited(), None, "the add-on is still running");
}
