//! Nobody holds the HTTP port hostage: connections that never finish their headers are closed,
//! and one address cannot take more than its share, while good clients are served throughout.
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// Whether the server has closed the connection (a read gives end of file or an error).
fn closed(stream: &mut TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 512];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn unfinished_headers_are_closed_and_one_address_cannot_take_every_connection() {
    let rig = Rig::start(&[], "");
    let port = rig.addon.http_port;
    let pid = rig.addon.proc.child.id();
    let api = format!("http://127.0.0.1:{port}/api");
    assert_eq!(http_get(&api).0, 200);
    let fds_before = open_fds(pid);

    // 100 requests that never finish their headers, from 50 addresses.
    let mut stalled: Vec<TcpStream> = (0..100u8)
        .map(|i| {
            let mut stream = connect_from(Ipv4Addr::new(127, 0, 1, 2 + i % 50), port);
            stream
                .write_all(b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .unwrap();
            stream
        })
        .collect();
    assert_eq!(http_get(&api).0, 200, "a good client is served meanwhile");
    wait_until(
        "the server to close every unfinished request",
        Duration::from_secs(30),
        || stalled.iter_mut().all(closed),
    );

    // One address: at most 32 connections; the 33rd is closed at once.
    let from = Ipv4Addr::new(127, 0, 2, 7);
    let mut held: Vec<TcpStream> = (0..40).map(|_| connect_from(from, port)).collect();
    let mut refused = 0;
    wait_until(
        "the connections over the address's share to be refused",
        Duration::from_secs(15),
        || {
            refused = held.iter_mut().map(closed).filter(|c| *c).count();
            refused >= 8
        },
    );
    assert_eq!(refused, 8, "32 held, the rest refused");
    assert_eq!(http_get(&api).0, 200, "other addresses are still served");
    drop(held);
    drop(stalled);
    wait_until(
        "file descriptors back to where they were",
        Duration::from_secs(20),
        || open_fds(pid) <= fds_before + 2,
    );
}

/// RTSP too: 50 connections that send OPTIONS and then say nothing, from 25 addresses, are
/// closed once they have idled without a stream; a viewer plays on throughout, a connection
/// costs a socket and no thread, and the sockets are given back.
#[test]
fn rtsp_connections_that_ask_for_nothing_and_idle_are_closed() {
    let rig = Rig::start(&[], "");
    let pid = rig.addon.proc.child.id();
    let viewer = counting_viewer(&rig.addon.live_url("cam"), "1");
    wait_until("the viewer to play", Duration::from_secs(15), || {
        viewer.decoded_frames() > 10
    });
    let threads_before = threads(pid);
    let fds_before = open_fds(pid);
    let url = rig.addon.live_url("cam");
    let mut idle: Vec<TcpStream> = (0..50u8)
        .map(|i| {
            let mut stream =
                connect_from(Ipv4Addr::new(127, 0, 3, 2 + i % 25), rig.addon.rtsp_port);
            rtsp_request(&mut stream, 1, &format!("OPTIONS {url}"), "");
            stream
        })
        .collect();
    assert!(
        open_fds(pid) >= fds_before + 50,
        "each connection is open: {fds_before} → {}",
        open_fds(pid)
    );
    assert!(
        threads(pid) <= threads_before + 2,
        "connections are tasks, not threads: {threads_before} → {}",
        threads(pid)
    );
    wait_until(
        "the server to close every connection that asked for nothing",
        Duration::from_secs(40),
        || idle.iter_mut().all(closed),
    );
    let frames = viewer.decoded_frames();
    wait_until("the viewer to play on", Duration::from_secs(10), || {
        viewer.decoded_frames() > frames + 10
    });
    wait_until(
        "the sockets to be given back",
        Duration::from_secs(20),
        || open_fds(pid) <= fds_before + 2,
    );
}
