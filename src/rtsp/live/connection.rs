//! One RTSP connection to the live streams: its requests, its session, and the frames it sends.
//!
//! One task per connection does it all: it reads requests, and once playing takes whole frames
//! from its [`FrameQueue`] and sends each as one write of interleaved packets (TCP) or a few
//! datagrams (UDP). No GStreamer element and no other thread is between the hub and the socket.

use super::digest::{DigestLogin, Verdict};
use super::message::{self, BadRequest, Incoming, Request, Response, Status};
use super::rtp::RtpStream;
use super::sdp::{AUDIO_PT, Description, VIDEO_CLOCK, VIDEO_PT};
use super::session::{
    Out, Playing, SESSION_TIMEOUT, Session, TrackOut, udp_pair, udp_rtcp, writer_timeout,
};
use super::transport::{self, Asked};
use super::{Live, LiveMount};
use crate::camera::demand::{Lease, Purpose};
use crate::media::hub::{FrameQueue, Track};
use crate::rtsp::limits::{FIRST_REQUEST_TIMEOUT, IDLE_WITHOUT_STREAM};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// How a connection ended, for the log.
type Ending = &'static str;

/// Waits for the deadline and tells how the connection ended; never returns without one.
async fn until(deadline: Option<(Instant, Ending)>) -> Ending {
    match deadline {
        Some((at, ending)) => {
            tokio::time::sleep_until(at.into()).await;
            ending
        }
        None => std::future::pending().await,
    }
}

/// The connection is given to the event server (gst-rtsp-server) with what it sent so far.
pub struct Handoff {
    pub stream: TcpStream,
    pub sent: Vec<u8>,
}

struct Watched {
    mount: Arc<LiveMount>,
    description: Description,
    _lease: Lease,
}

pub struct Connection {
    live: Arc<Live>,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    nonce: String,
    input: Vec<u8>,
    watched: Option<Watched>,
    session: Option<Session>,
    opened: Instant,
    last_request: Option<Instant>,
    cancel: CancellationToken,
    /// When the next sender reports are due: one timer for the connection, reset when the time
    /// moves, rather than a new one on every wake.
    report_timer: Pin<Box<Sleep>>,
}

impl Connection {
    pub fn new(
        live: Arc<Live>,
        peer: SocketAddr,
        local: SocketAddr,
        id: u64,
        cancel: CancellationToken,
    ) -> Self {
        Connection {
            live,
            peer,
            local,
            id,
            nonce: format!("{:032x}", rand::random::<u128>()),
            input: Vec::new(),
            watched: None,
            session: None,
            opened: Instant::now(),
            last_request: None,
            cancel,
            report_timer: Box::pin(tokio::time::sleep(SESSION_TIMEOUT)),
        }
    }

    /// Serves the connection until it ends, or until it asks for a stream that is not ours.
    pub async fn run(mut self, stream: TcpStream) -> Option<Handoff> {
        let (mut reader, mut writer) = stream.into_split();
        let ending = loop {
            match self.step(&mut reader, &mut writer).await {
                Ok(Step::Go) => {}
                Ok(Step::End(ending)) => break ending,
                Ok(Step::Handoff) => {
                    let stream = reader.reunite(writer).ok()?;
                    self.end("handed to the event server");
                    return Some(Handoff {
                        stream,
                        sent: std::mem::take(&mut self.input),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    break "it took nothing for 30 s";
                }
                Err(e) => {
                    tracing::debug!("RTSP connection from {}: {e}", self.peer);
                    break "its connection failed";
                }
            }
        };
        let _ = writer.shutdown().await;
        self.end(ending);
        None
    }

    fn end(&mut self, ending: Ending) {
        if let (Some(session), Some(watched)) = (&self.session, &self.watched)
            && session.playing.is_some()
        {
            tracing::info!(
                camera = %watched.mount.camera,
                "RTSP viewer {} left after {:.0} s: {ending}",
                self.peer,
                self.opened.elapsed().as_secs_f64()
            );
        } else {
            tracing::debug!("RTSP connection from {} closed: {ending}", self.peer);
        }
        self.session = None;
        self.watched = None;
        self.live.forget(self.id);
    }

    /// When the connection must have done something by, or be closed. A TCP viewer that is
    /// playing has no such time: its writes give up on their own after a stall.
    fn deadline(&self) -> Option<(Instant, Ending)> {
        match (&self.session, self.last_request) {
            (Some(session), _) if session.playing.is_some() => session
                .over_udp()
                .then(|| (session.alive + SESSION_TIMEOUT, "its UDP session timed out")),
            (_, None) => Some((
                self.opened + FIRST_REQUEST_TIMEOUT,
                "it sent no complete request",
            )),
            (_, Some(last)) => Some((
                last + IDLE_WITHOUT_STREAM,
                "it asked for no stream and went quiet",
            )),
        }
    }

    async fn step(
        &mut self,
        reader: &mut OwnedReadHalf,
        writer: &mut OwnedWriteHalf,
    ) -> std::io::Result<Step> {
        let deadline = self.deadline();
        let queue = self.playing().map(|p| p.queue.clone());
        let report_at = self.playing().map(|p| p.next_report);
        if let Some(at) = report_at.map(tokio::time::Instant::from_std)
            && self.report_timer.deadline() != at
        {
            self.report_timer.as_mut().reset(at);
        }
        let report_timer = self.report_timer.as_mut();
        let rtcp = self.session.as_ref().and_then(Session::udp_rtcp_socket);
        let cancel = self.cancel.clone();
        let mut chunk = [0u8; 4096];
        let mut rtcp_in = [0u8; 1500];
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Ok(Step::End("the viewer closed it"));
                }
                self.input.extend_from_slice(&chunk[..n]);
                self.answer(writer).await
            }
            ready = async { queue.as_ref().expect("guarded").ready().await }, if queue.is_some() => {
                if !ready {
                    return Ok(Step::End("its stream was stopped"));
                }
                self.send_frames(writer).await
            }
            () = report_timer, if report_at.is_some() => {
                self.send_reports(writer).await?;
                Ok(Step::Go)
            }
            got = udp_rtcp(rtcp, &mut rtcp_in) => {
                if got.is_ok() && let Some(session) = &mut self.session {
                    session.alive = Instant::now();
                }
                Ok(Step::Go)
            }
            ending = until(deadline) => Ok(Step::End(ending)),
            _ = cancel.cancelled() => Ok(Step::End("its camera was turned off")),
        }
    }

    /// Sends every queued frame.
    async fn send_frames(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<Step> {
        if let (Some(session), Some(watched)) = (&mut self.session, &self.watched) {
            session
                .send_frames(&watched.description.video, writer)
                .await?;
        }
        Ok(Step::Go)
    }

    async fn send_reports(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<()> {
        match &mut self.session {
            Some(session) => session.send_reports(writer).await,
            None => Ok(()),
        }
    }

    fn playing(&self) -> Option<&Playing> {
        self.session.as_ref().and_then(|s| s.playing.as_ref())
    }

    /// Answers every whole request read so far.
    async fn answer(&mut self, writer: &mut OwnedWriteHalf) -> std::io::Result<Step> {
        loop {
            let (request, used) = match message::parse(&self.input) {
                Ok(Incoming::Incomplete) => return Ok(Step::Go),
                Ok(Incoming::Interleaved(used)) => {
                    // RTCP receiver reports over TCP: the viewer is alive; nothing else to do.
                    self.input.drain(..used);
                    continue;
                }
                Ok(Incoming::Request(request, used)) => (request, used),
                Err(bad) => return self.refuse(writer, bad).await,
            };
            if self.is_for_events(&request) {
                return Ok(Step::Handoff);
            }
            self.input.drain(..used);
            self.last_request = Some(Instant::now());
            if let Some(session) = &mut self.session {
                session.alive = Instant::now();
            }
            let response = self.respond(&request).await;
            let status = response.status();
            writer_timeout(writer.write_all(&response.into_bytes())).await?;
            if status == Status::OK && request.method == "PLAY" {
                self.send_reports(writer).await?;
                self.send_frames(writer).await?;
            }
        }
    }

    async fn refuse(
        &mut self,
        writer: &mut OwnedWriteHalf,
        bad: BadRequest,
    ) -> std::io::Result<Step> {
        tracing::debug!("RTSP connection from {}: {bad}", self.peer);
        let response = Response::new(bad.status(), None).header("Connection", "close");
        writer_timeout(writer.write_all(&response.into_bytes())).await?;
        Ok(Step::End("it sent what is not RTSP"))
    }

    /// A request for an event stream before this connection watched anything of ours.
    fn is_for_events(&self, request: &Request) -> bool {
        self.watched.is_none() && self.session.is_none() && self.live.is_event_path(request.path())
    }

    async fn respond(&mut self, request: &Request) -> Response {
        let cseq = request.cseq();
        let reply = |status| Response::new(status, cseq);
        if request.method == "OPTIONS" {
            return reply(Status::OK).header(
                "Public",
                "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
            );
        }
        let Some((mount, track)) = self.live.mount_for(request.path()) else {
            if matches!(request.method.as_str(), "GET_PARAMETER" | "SET_PARAMETER") {
                return self.with_session(reply(Status::OK));
            }
            return reply(Status::NOT_FOUND);
        };
        if let Some(refused) = self.login(request) {
            return refused.into_response(cseq, &self.nonce);
        }
        if let Some(session) = &self.session
            && let Some(asked) = request.header("Session")
            && asked.split(';').next().map(str::trim) != Some(session.id.as_str())
        {
            return reply(Status::SESSION_NOT_FOUND);
        }
        match request.method.as_str() {
            "DESCRIBE" => match self.watch(&mount).await {
                Ok(description) => {
                    let sdp = description.sdp(self.local.ip(), self.id);
                    let base = request.base_uri();
                    reply(Status::OK)
                        .header("Content-Base", format!("{base}/"))
                        .body("application/sdp", sdp)
                }
                Err(status) => reply(status),
            },
            "SETUP" => self.setup(request, &mount, track).await,
            "PLAY" => self.play(request),
            "PAUSE" => {
                if let Some(session) = &mut self.session {
                    session.playing = None;
                }
                self.with_session(reply(Status::OK))
            }
            "TEARDOWN" => {
                self.session = None;
                reply(Status::OK)
            }
            "GET_PARAMETER" | "SET_PARAMETER" => self.with_session(reply(Status::OK)),
            _ => reply(Status::NOT_IMPLEMENTED),
        }
    }

    fn with_session(&self, response: Response) -> Response {
        match &self.session {
            Some(session) => response.header(
                "Session",
                format!("{};timeout={}", session.id, SESSION_TIMEOUT.as_secs()),
            ),
            None => response,
        }
    }

    /// None when the request may go on; otherwise why it may not.
    fn login(&self, request: &Request) -> Option<Refusal> {
        let login = self.live.login.as_ref()?;
        let verdict = login.digest.verify(
            &request.method,
            request.header("Authorization"),
            &self.nonce,
        );
        let tried = verdict != Verdict::Missing;
        let right = verdict == Verdict::Right;
        let admitted = login.throttle.judge(Some(self.peer.ip()), tried, || right);
        (!admitted).then_some(Refusal)
    }

    /// Starts watching `mount`'s camera (a viewer counts from its DESCRIBE, as the camera may
    /// need waking), and waits until the camera delivers what the SDP needs.
    async fn watch(&mut self, mount: &Arc<LiveMount>) -> Result<Description, Status> {
        if let Some(watched) = &self.watched
            && Arc::ptr_eq(&watched.mount, mount)
        {
            return Ok(watched.description.clone());
        }
        if self.session.is_some() {
            return Err(Status::NOT_VALID_IN_STATE);
        }
        let lease = mount.demand.lease(Purpose::RtspViewer);
        self.live.watching(self.id, &mount.camera);
        let asked = Instant::now();
        let layout = mount
            .hub
            .ready(mount.start_timeout)
            .await
            .map_err(|reason| {
                tracing::warn!(camera = %mount.camera, "refusing a viewer: {reason}");
                Status::SERVICE_UNAVAILABLE
            })?;
        let description = Description::from_layout(&layout).map_err(|e| {
            tracing::error!(camera = %mount.camera, "cannot describe the stream: {e}");
            Status::SERVICE_UNAVAILABLE
        })?;
        tracing::debug!(camera = %mount.camera, "viewer stream ready after {:?}", asked.elapsed());
        self.watched = Some(Watched {
            mount: mount.clone(),
            description: description.clone(),
            _lease: lease,
        });
        Ok(description)
    }

    async fn setup(&mut self, request: &Request, mount: &Arc<LiveMount>, track: usize) -> Response {
        let cseq = request.cseq();
        let reply = |status| Response::new(status, cseq);
        let description = match self.watch(mount).await {
            Ok(description) => description,
            Err(status) => return reply(status),
        };
        if track == 1 && description.audio.is_none() || track > 1 {
            return reply(Status::NOT_FOUND);
        }
        if self.session.as_ref().is_some_and(|s| s.playing.is_some()) {
            return reply(Status::NOT_VALID_IN_STATE);
        }
        let Some(asked) = request
            .header("Transport")
            .and_then(|t| transport::choose(t, track))
        else {
            return reply(Status::UNSUPPORTED_TRANSPORT);
        };
        let (out, answer) = match asked {
            Asked::Tcp { rtp, rtcp } => (
                Out::Tcp { rtp, rtcp },
                format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}"),
            ),
            Asked::Udp { rtp, rtcp } => match udp_pair(self.local).await {
                Ok((rtp_socket, rtcp_socket, server_rtp, server_rtcp)) => (
                    Out::Udp {
                        rtp: rtp_socket,
                        rtcp: Arc::new(rtcp_socket),
                        to_rtp: SocketAddr::new(self.peer.ip(), rtp),
                        to_rtcp: SocketAddr::new(self.peer.ip(), rtcp),
                    },
                    format!(
                        "RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={server_rtp}-{server_rtcp}"
                    ),
                ),
                Err(e) => {
                    tracing::warn!("cannot open UDP ports for a viewer: {e}");
                    return reply(Status::SERVICE_UNAVAILABLE);
                }
            },
        };
        let (payload_type, clock) = match track {
            0 => (VIDEO_PT, VIDEO_CLOCK),
            _ => (
                AUDIO_PT,
                description.audio.as_ref().map_or(VIDEO_CLOCK, |a| a.rate),
            ),
        };
        let stream = RtpStream::new(
            payload_type,
            clock,
            rand::random(),
            rand::random(),
            rand::random(),
        );
        let answer = format!("{answer};ssrc={:08X}", stream.ssrc);
        let session = self.session.get_or_insert_with(Session::new);
        session.tracks[track] = Some(TrackOut { out, stream });
        self.with_session(reply(Status::OK).header("Transport", answer))
    }

    fn play(&mut self, request: &Request) -> Response {
        let cseq = request.cseq();
        let reply = |status| Response::new(status, cseq);
        let (Some(session), Some(watched)) = (&mut self.session, &self.watched) else {
            return reply(Status::NOT_VALID_IN_STATE);
        };
        if session.playing.is_none() {
            let queue = Arc::new(FrameQueue::default());
            let link = watched
                .mount
                .hub
                .add_queue_consumer(&queue, session.tracks[1].is_some());
            // The newest frame of the burst is live: the first sender report, sent before the
            // burst, maps the wallclock through it.
            let anchor = queue
                .pts_span(Track::Video)
                .map(|(_, newest)| (Instant::now(), newest));
            session.playing = Some(Playing {
                queue,
                _link: link,
                anchor,
                next_report: Instant::now(),
            });
            tracing::info!(
                camera = %watched.mount.camera,
                "RTSP viewer {} playing over {}",
                self.peer,
                if session.over_udp() { "UDP" } else { "TCP" }
            );
        }
        let playing = session.playing.as_ref().expect("set above");
        // Both tracks' RTP times at the same instant, the first frame's: players line the tracks
        // up from it until the first sender report.
        let start = playing
            .queue
            .pts_span(Track::Video)
            .map(|(oldest, _)| oldest);
        let base = request.base_uri();
        let base = base.strip_suffix("/stream=0").unwrap_or(&base);
        let info: Vec<String> = session
            .tracks
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
            .map(|(i, t)| {
                let rtptime = start
                    .map(|pts| format!(";rtptime={}", t.stream.timestamp(pts)))
                    .unwrap_or_default();
                format!("url={base}/stream={i};seq={}{rtptime}", t.stream.next_seq())
            })
            .collect();
        let info = info.join(",");
        tracing::debug!("RTSP viewer {} starts at RTP-Info {info}", self.peer);
        self.with_session(
            reply(Status::OK)
                .header("Range", "npt=now-")
                .header("RTP-Info", info),
        )
    }
}

/// What the connection does next.
pub enum Step {
    Go,
    End(Ending),
    Handoff,
}

/// A refused login; the client gets a 401 with the connection's nonce.
struct Refusal;

impl Refusal {
    fn into_response(self, cseq: Option<&str>, nonce: &str) -> Response {
        Response::new(Status::UNAUTHORIZED, cseq)
            .header("WWW-Authenticate", DigestLogin::challenge(nonce))
    }
}
