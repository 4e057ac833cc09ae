//! A camera that answers RTSP from a script, for the ways real cameras bend the protocol that no
//! RTSP server library does on purpose. It speaks RTSP over TCP with interleaved RTP, as most
//! cameras do: an H.264 track (the 4-frame fixture, looped at 25 fps) and a G.711 µ-law track
//! (silence), with a LIVE555-style SDP and `trackID=N` controls as Reolink's cameras give.
use base64::Engine;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How this camera bends RTSP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// RTP-Info names a `seq` this many packets ahead of the first packet sent, as a shared
    /// gst-rtsp-server stream does when packets are already in flight as a client joins.
    pub rtp_info_seq_ahead: u16,
    /// RTP-Info has no `rtptime` for any track.
    pub rtp_info_without_rtptime: bool,
    /// Each SETUP is answered with a new session id.
    pub new_session_id_per_setup: bool,
}

pub struct ScriptedCamera {
    pub port: u16,
}

impl ScriptedCamera {
    /// Serves until the test process ends; every connection gets its own thread.
    pub fn start(quirks: Quirks) -> ScriptedCamera {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream, port, quirks));
            }
        });
        ScriptedCamera { port }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/stream", self.port)
    }
}

const VIDEO_SSRC: u32 = 0x1d2c_3b4a;
const AUDIO_SSRC: u32 = 0x5e6f_7081;
const FIRST_VIDEO_SEQ: u16 = 24104;
const FIRST_AUDIO_SEQ: u16 = 39409;
const FIRST_VIDEO_TIME: u32 = 1_070_938_629;
const FIRST_AUDIO_TIME: u32 = 3_075_976_528;

/// The fixture's access units, each a list of NAL units (no start codes).
fn access_units() -> Vec<Vec<Vec<u8>>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/h264-64x48-4-frames.h264"
    );
    let stream = std::fs::read(path).unwrap();
    let mut nals: Vec<Vec<u8>> = Vec::new();
    let mut i = 0;
    let mut start = None;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            if let Some(s) = start {
                let mut nal: Vec<u8> = stream[s..i].to_vec();
                while nal.last() == Some(&0) {
                    nal.pop();
                }
                nals.push(nal);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    nals.push(stream[start.unwrap()..].to_vec());
    // A slice (types 1 and 5) ends an access unit: the fixture has one slice per frame.
    let mut units = vec![Vec::new()];
    for nal in nals {
        let slice = matches!(nal[0] & 0x1f, 1 | 5);
        units.last_mut().unwrap().push(nal);
        if slice {
            units.push(Vec::new());
        }
    }
    units.pop();
    units
}

fn sdp(sps: &[u8], pps: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "v=0\r\no=- 1619813458434609 1 IN IP4 127.0.0.1\r\ns=Session streamed by \"preview\"\r\n\
         t=0 0\r\na=tool:LIVE555 Streaming Media v2013.04.08\r\na=type:broadcast\r\na=control:*\r\n\
         a=range:npt=0-\r\nm=video 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={},{}\r\n\
         a=control:trackID=1\r\nm=audio 0 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=control:trackID=2\r\n",
        sps[1],
        sps[2],
        sps[3],
        b64.encode(sps),
        b64.encode(pps)
    )
}

/// Reads one request's head; `None` when the client is gone.
fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).ok()?;
        // Interleaved RTCP from the client ('$', channel, length, data) is skipped.
        if head.is_empty() && byte[0] == b'$' {
            let mut header = [0u8; 3];
            stream.read_exact(&mut header).ok()?;
            let mut skip = vec![0u8; u16::from_be_bytes([header[1], header[2]]) as usize];
            stream.read_exact(&mut skip).ok()?;
            continue;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    request.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn reply(stream: &Mutex<TcpStream>, cseq: &str, headers: &str, body: &str) -> bool {
    let text = format!(
        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nServer: Rtsp Server/2.0\r\n{headers}{}\r\n{body}",
        if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
                body.len()
            )
        }
    );
    stream.lock().unwrap().write_all(text.as_bytes()).is_ok()
}

fn serve(stream: TcpStream, port: u16, quirks: Quirks) {
    let units = access_units();
    let base = format!("rtsp://127.0.0.1:{port}/stream/");
    let writer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut reader = stream;
    let mut setups = 0u32;
    let mut channels = Vec::new();
    while let Some(request) = read_request(&mut reader) {
        let cseq = header(&request, "CSeq").unwrap_or("0").to_string();
        let method = request.split_whitespace().next().unwrap_or("");
        let ok = match method {
            "OPTIONS" | "GET_PARAMETER" | "SET_PARAMETER" => reply(
                &writer,
                &cseq,
                "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n",
                "",
            ),
            "DESCRIBE" => {
                let (sps, pps) = (&units[0][0], &units[0][1]);
                reply(
                    &writer,
                    &cseq,
                    &format!("Content-Base: {base}\r\n"),
                    &sdp(sps, pps),
                )
            }
            "SETUP" => {
                setups += 1;
                let transport = header(&request, "Transport").unwrap_or("");
                let interleaved = transport
                    .split(';')
                    .find_map(|p| p.strip_prefix("interleaved="))
                    .unwrap_or("0-1")
                    .to_string();
                channels.push(
                    interleaved
                        .split('-')
                        .next()
                        .unwrap()
                        .parse::<u8>()
                        .unwrap(),
                );
                let session = if quirks.new_session_id_per_setup {
                    format!("F8F8E42{setups}")
                } else {
                    "F8F8E425".to_string()
                };
                reply(
                    &writer,
                    &cseq,
                    &format!(
                        "Session: {session};timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved={interleaved}\r\n"
                    ),
                    "",
                )
            }
            "PLAY" => {
                let seq = |first: u16| first.wrapping_add(quirks.rtp_info_seq_ahead);
                let time = |t: u32| {
                    if quirks.rtp_info_without_rtptime {
                        String::new()
                    } else {
                        format!(";rtptime={t}")
                    }
                };
                let info = format!(
                    "RTP-Info: url={base}trackID=1;seq={}{},url={base}trackID=2;seq={}{}\r\n",
                    seq(FIRST_VIDEO_SEQ),
                    time(FIRST_VIDEO_TIME),
                    seq(FIRST_AUDIO_SEQ),
                    time(FIRST_AUDIO_TIME)
                );
                let session = header(&request, "Session")
                    .unwrap_or("F8F8E425")
                    .to_string();
                let ok = reply(
                    &writer,
                    &cseq,
                    &format!("Session: {session}\r\nRange: npt=0.000-\r\n{info}"),
                    "",
                );
                let (writer, units, channels) = (writer.clone(), units.clone(), channels.clone());
                std::thread::spawn(move || send_media(&writer, &units, &channels));
                ok
            }
            "TEARDOWN" => {
                reply(&writer, &cseq, "", "");
                false
            }
            _ => false,
        };
        if !ok {
            break;
        }
    }
}

fn rtp(
    channel: u8,
    pt: u8,
    marker: bool,
    seq: u16,
    time: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let length = (12 + payload.len()) as u16;
    let mut packet = vec![b'$', channel];
    packet.extend(length.to_be_bytes());
    packet.extend([0x80, pt | if marker { 0x80 } else { 0 }]);
    packet.extend(seq.to_be_bytes());
    packet.extend(time.to_be_bytes());
    packet.extend(ssrc.to_be_bytes());
    packet.extend(payload);
    packet
}

/// 25 frames a second of video, each frame's NAL units as single-NAL packets, and 40 ms of
/// µ-law silence with each frame, until the client is gone.
fn send_media(writer: &Mutex<TcpStream>, units: &[Vec<Vec<u8>>], channels: &[u8]) {
    let (video, audio) = (channels[0], channels.get(1).copied());
    let (mut vseq, mut aseq) = (FIRST_VIDEO_SEQ, FIRST_AUDIO_SEQ);
    let silence = [0xffu8; 320];
    for frame in 0u32.. {
        let mut out = Vec::new();
        let unit = &units[frame as usize % units.len()];
        for (i, nal) in unit.iter().enumerate() {
            let time = FIRST_VIDEO_TIME.wrapping_add(frame * 3600);
            out.extend(rtp(
                video,
                96,
                i + 1 == unit.len(),
                vseq,
                time,
                VIDEO_SSRC,
                nal,
            ));
            vseq = vseq.wrapping_add(1);
        }
        if let Some(channel) = audio {
            // 40 ms of audio per video frame.
            let time = FIRST_AUDIO_TIME.wrapping_add(frame * 320);
            out.extend(rtp(channel, 0, false, aseq, time, AUDIO_SSRC, &silence));
            aseq = aseq.wrapping_add(1);
        }
        if writer.lock().unwrap().write_all(&out).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}
