//! A viewer's RTSP session: where each track goes, and sending its frames and sender reports.

use super::rtp::{MAX_PAYLOAD, RtpStream};
use super::sdp::Video;
use crate::media::hub::{ConsumerLink, FrameQueue, Track};
use gstreamer as gst;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::net::tcp::OwnedWriteHalf;

/// A session's keep-alive: a UDP viewer must send RTCP or a request this often.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A viewer whose socket takes nothing for this long is gone.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Sender reports, so players line sound up with the picture from the first second.
const SENDER_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Where one set-up track goes.
pub enum Out {
    Tcp {
        rtp: u8,
        rtcp: u8,
    },
    Udp {
        rtp: UdpSocket,
        rtcp: Arc<UdpSocket>,
        to_rtp: SocketAddr,
        to_rtcp: SocketAddr,
    },
}

pub struct TrackOut {
    pub out: Out,
    pub stream: RtpStream,
}

/// A playing viewer's place in the hub, and how its media time maps to the wallclock.
pub struct Playing {
    pub queue: Arc<FrameQueue>,
    pub _link: ConsumerLink,
    /// A media time and when it was live: sender reports map the wallclock through it. Set
    /// once, so every report tells the same timeline (a report per frame arrival would carry
    /// its jitter, and a player would move one track against the other by it).
    pub anchor: Option<(Instant, gst::ClockTime)>,
    pub next_report: Instant,
}

pub struct Session {
    pub id: String,
    /// Video (`stream=0`) and audio (`stream=1`), once set up.
    pub tracks: [Option<TrackOut>; 2],
    pub playing: Option<Playing>,
    /// The last sign of life from a UDP viewer.
    pub alive: Instant,
}

impl Session {
    pub fn new() -> Self {
        Session {
            id: format!("{:016x}", rand::random::<u64>()),
            tracks: [None, None],
            playing: None,
            alive: Instant::now(),
        }
    }

    pub fn over_udp(&self) -> bool {
        self.tracks
            .iter()
            .flatten()
            .any(|t| matches!(t.out, Out::Udp { .. }))
    }

    /// The socket a UDP viewer's RTCP arrives on.
    pub fn udp_rtcp_socket(&self) -> Option<Arc<UdpSocket>> {
        self.tracks.iter().flatten().find_map(|t| match &t.out {
            Out::Udp { rtcp, .. } => Some(rtcp.clone()),
            Out::Tcp { .. } => None,
        })
    }

    /// Sends every queued frame: over TCP one write for them all.
    pub async fn send_frames(
        &mut self,
        video: &Video,
        writer: &mut OwnedWriteHalf,
    ) -> std::io::Result<()> {
        let Some(playing) = &mut self.playing else {
            return Ok(());
        };
        let frames = playing.queue.take();
        // Room for every packet at once: the frames, and per packet its headers.
        let bytes: usize = frames
            .iter()
            .filter_map(|(_, sample)| sample.buffer().map(|b| b.size()))
            .sum();
        let mut interleaved = Vec::with_capacity(bytes + (bytes / MAX_PAYLOAD + frames.len()) * 24);
        let mut datagram = Vec::new();
        for (track, sample) in frames {
            let index = if track == Track::Video { 0 } else { 1 };
            let (Some(buffer), Some(out)) = (sample.buffer(), self.tracks[index].as_mut()) else {
                continue;
            };
            let (Some(pts), Ok(data)) = (buffer.pts(), buffer.map_readable()) else {
                continue;
            };
            let TrackOut { out, stream } = out;
            let mut emit = |parts: &[&[u8]]| match out {
                Out::Tcp { rtp, .. } => frame_interleaved(&mut interleaved, *rtp, parts),
                Out::Udp { rtp, to_rtp, .. } => {
                    datagram.clear();
                    parts
                        .iter()
                        .for_each(|part| datagram.extend_from_slice(part));
                    // A full socket buffer drops the datagram, as the network would.
                    let _ = rtp.try_send_to(&datagram, *to_rtp);
                }
            };
            match track {
                Track::Video => {
                    stream.video_frame(video.codec, video.nal_length, &data, pts, &mut emit);
                    playing.anchor.get_or_insert_with(|| (Instant::now(), pts));
                }
                Track::Audio => stream.aac_frame(&data, pts, &mut emit),
            }
        }
        write_interleaved(writer, &interleaved).await
    }

    /// Sends a sender report per track, all from the same instant, if one is due.
    pub async fn send_reports(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        let Some(playing) = &mut self.playing else {
            return Ok(());
        };
        playing.next_report = Instant::now() + SENDER_REPORT_EVERY;
        let Some((live, pts)) = playing.anchor else {
            return Ok(());
        };
        let now = pts + gst::ClockTime::from_nseconds(live.elapsed().as_nanos() as u64);
        let wallclock = SystemTime::now();
        let cname = format!("ipcam-mqtt-{}", self.id);
        let mut interleaved = Vec::new();
        for track in self.tracks.iter().flatten() {
            let report = track
                .stream
                .sender_report(wallclock, track.stream.timestamp(now), &cname);
            match &track.out {
                Out::Tcp { rtcp, .. } => frame_interleaved(&mut interleaved, *rtcp, &[&report]),
                Out::Udp { rtcp, to_rtcp, .. } => {
                    let _ = rtcp.try_send_to(&report, *to_rtcp);
                }
            }
        }
        write_interleaved(writer, &interleaved).await
    }
}

/// One packet, given as its parts, framed for the RTSP connection (RFC 2326, 10.12).
fn frame_interleaved(out: &mut Vec<u8>, channel: u8, parts: &[&[u8]]) {
    let size: usize = parts.iter().map(|part| part.len()).sum();
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&(size as u16).to_be_bytes());
    parts.iter().for_each(|part| out.extend_from_slice(part));
}

async fn write_interleaved(writer: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    writer_timeout(writer.write_all(bytes)).await
}

/// A write to the viewer, given up after [`WRITE_STALL`] (a `TimedOut` error).
pub async fn writer_timeout(
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_STALL, write)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the viewer took nothing for 30 s",
            )
        })?
}

/// Waits for RTCP from a UDP viewer (its receiver reports keep the session alive); never
/// returns for a connection without one.
pub async fn udp_rtcp(socket: Option<Arc<UdpSocket>>, buffer: &mut [u8]) -> std::io::Result<usize> {
    match socket {
        Some(socket) => socket.recv(buffer).await,
        None => std::future::pending().await,
    }
}

/// Two UDP sockets on the connection's own address, for a track's RTP and RTCP.
pub async fn udp_pair(local: SocketAddr) -> std::io::Result<(UdpSocket, UdpSocket, u16, u16)> {
    let rtp = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let rtcp = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await?;
    let (rtp_port, rtcp_port) = (rtp.local_addr()?.port(), rtcp.local_addr()?.port());
    Ok((rtp, rtcp, rtp_port, rtcp_port))
}
