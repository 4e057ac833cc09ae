//! Raw RTSP over a socket, for what no player does on purpose (probes, half-sent requests).
use std::io::Write;
use std::time::Duration;

/// A TCP connection to `port` from the loopback address `from` (127.0.0.0/8 is all ours).
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .unwrap();
    socket.into()
}

/// Sends one RTSP request on a raw connection and reads the reply (headers and body);
/// panics unless it is `200 OK`. Returns the reply's headers.
pub fn rtsp_request(
    stream: &mut std::net::TcpStream,
    cseq: u32,
    line: &str,
    headers: &str,
) -> String {
    let text = rtsp_exchange(stream, cseq, line, headers);
    assert!(text.starts_with("RTSP/1.0 200"), "{line}: {text}");
    text
}

/// Sends one RTSP request on a raw connection and reads the reply, whatever its status.
/// Returns the reply's headers.
pub fn rtsp_exchange(
    stream: &mut std::net::TcpStream,
    cseq: u32,
    line: &str,
    headers: &str,
) -> String {
    use std::io::Read;
    // One write: several small ones would wait on Nagle and the server's delayed ACK (40 ms).
    let request = format!("{line} RTSP/1.0\r\nCSeq: {cseq}\r\n{headers}\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    if let Some(length) = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
    {
        let mut body = vec![0u8; length.trim().parse().unwrap()];
        stream.read_exact(&mut body).unwrap();
    }
    text
}

/// A client that has sent DESCRIBE for `url` and nothing more: a viewer still negotiating.
pub fn rtsp_described(port: u16, url: &str) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rtsp_request(
        &mut socket,
        1,
        &format!("DESCRIBE {url}"),
        "Accept: application/sdp\r\n",
    );
    socket
}

/// Panics unless the server has closed `socket` (it reads end of stream, or a reset).
pub fn assert_closed_by_server(mut socket: std::net::TcpStream, what: &str) {
    use std::io::Read;
    let read = socket.read(&mut [0u8; 1]).map_err(|e| e.kind());
    assert!(
        matches!(read, Ok(0) | Err(std::io::ErrorKind::ConnectionReset)),
        "{what}: the connection is still open ({read:?})"
    );
}

/// SETUPs both tracks of `url` (video, then audio) interleaved on the connection, with CSeq
/// `cseq` and `cseq + 1`; returns the `Session:` header line for what follows.
pub fn rtsp_setup_both_tracks(stream: &mut std::net::TcpStream, url: &str, cseq: u32) -> String {
    let setup = rtsp_request(
        stream,
        cseq,
        &format!("SETUP {url}/stream=0"),
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
    );
    let session = setup
        .lines()
        .find_map(|l| l.strip_prefix("Session: "))
        .and_then(|s| s.split(';').next())
        .unwrap();
    let session = format!("Session: {session}\r\n");
    rtsp_request(
        stream,
        cseq + 1,
        &format!("SETUP {url}/stream=1"),
        &format!("{session}Transport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n"),
    );
    session
}
