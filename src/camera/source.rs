//! The camera connection: one RTSP session (retina) per camera, read in one task that delivers
//! whole frames to the [`Hub`].
//!
//! This module owns the session: it connects, chooses the tracks from the SDP (`tracks`), reports
//! failures and tears down. Video is depacketized and timed in the task that read it (`video`),
//! with no thread hand-off per packet; audio goes through its branch to become AAC once per
//! camera (`audio_track`). What we allow for in cameras that bend RTSP is in `quirks`. Nothing
//! here runs per viewer.

use super::audio_track::AudioTrack;
use super::quirks;
use super::timeline::SessionTimeline;
use super::tracks::{self, Chosen};
use super::video::VideoTrack;
use crate::config::CameraConfig;
use crate::error::{Error, ErrorKind};
use crate::media::hub::{Hub, SessionWriter};
use crate::media::pipeline::MediaClock;
use futures_util::StreamExt;
use gstreamer as gst;
use retina::client::{PacketItem, Session, SetupOptions};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Reported by a running ingest; the actor ignores reports from a session it already replaced.
#[derive(Debug)]
pub struct SourceFailure {
    pub generation: u64,
    pub error: Error,
}

/// How long the camera has to answer each request of the session's start.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping may take before we stop waiting.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running camera session. Stop it with [`Ingest::stop`]; dropping it also stops it.
pub struct Ingest {
    /// The only strong reference: the session's task and the audio branch hold weak ones, so
    /// dropping it ends the session in the hub at once, whatever the teardown does.
    writer: Option<Arc<SessionWriter>>,
    generation: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Ingest {
    pub fn start(
        camera: &CameraConfig,
        hub: Arc<Hub>,
        clock: &MediaClock,
        failures: mpsc::UnboundedSender<SourceFailure>,
    ) -> Result<Ingest, Error> {
        let url = url::Url::parse(&camera.url).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("the camera URL cannot be used: {e}"),
            )
        })?;
        let writer = Arc::new(hub.begin_session());
        let generation = writer.generation();
        let connection = Connection {
            url,
            credentials: camera
                .username
                .clone()
                .map(|username| retina::client::Credentials {
                    username,
                    password: camera
                        .password
                        .as_ref()
                        .map(|p| p.expose().to_string())
                        .unwrap_or_default(),
                }),
            transport: camera.transport,
            writer: Arc::downgrade(&writer),
            clock: clock.clone(),
        };
        let task = tokio::spawn(
            async move {
                let error = match connection.run().await {
                    Ok(never) => match never {},
                    Err(error) => error,
                };
                let _ = failures.send(SourceFailure { generation, error });
            }
            // The camera's log span, so the session's lines say which camera they are about.
            .instrument(tracing::Span::current()),
        );
        Ok(Ingest {
            writer: Some(writer),
            generation,
            task,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Ends the session in the hub at once, then lets the connection go: the RTSP client sends
    /// the camera its TEARDOWN on its own.
    pub async fn stop(mut self) {
        self.writer.take();
        self.task.abort();
        let started = std::time::Instant::now();
        match tokio::time::timeout(STOP_TIMEOUT, &mut self.task).await {
            Ok(_) => tracing::debug!("camera session stopped in {:?}", started.elapsed()),
            Err(_) => {
                tracing::warn!("camera teardown is taking longer than {STOP_TIMEOUT:?}; continuing")
            }
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one camera session needs, moved into its task.
struct Connection {
    url: url::Url,
    credentials: Option<retina::client::Credentials>,
    transport: crate::config::Transport,
    writer: Weak<SessionWriter>,
    clock: MediaClock,
}

/// The camera did not answer in time.
fn no_answer(what: &str) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("the camera did not answer {what} within {REQUEST_TIMEOUT:?}"),
    )
}

impl Connection {
    /// Reads the camera until the session fails; it never ends otherwise.
    async fn run(self) -> Result<std::convert::Infallible, Error> {
        let mut session = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Session::describe(
                self.url.clone(),
                quirks::session_options(self.credentials.clone()),
            ),
        )
        .await
        .map_err(|_| no_answer("DESCRIBE"))?
        .map_err(classify)?;
        let offered = tracks::offered(session.sdp())?;
        if offered.len() != session.streams().len() {
            return Err(Error::new(
                ErrorKind::Transient,
                "the camera's stream description (SDP) lists tracks the RTSP client cannot match",
            ));
        }
        let chosen = tracks::choose(offered)?;
        self.announce(&chosen);
        let mut indices = vec![chosen.video.index];
        indices.extend(chosen.audio.as_ref().map(|(audio, _)| audio.index));
        for index in indices {
            let setup = SetupOptions::default()
                .transport(quirks::transport(self.transport))
                .frame_format(quirks::FRAME_FORMAT);
            tokio::time::timeout(REQUEST_TIMEOUT, session.setup(index, setup))
                .await
                .map_err(|_| no_answer("SETUP"))?
                .map_err(classify)?;
        }
        let mut video = VideoTrack::new(&chosen.video)?;
        let mut audio = match &chosen.audio {
            Some((offered, branch)) => Some((
                offered.index,
                AudioTrack::start(offered, branch, &self.writer, &self.clock)?,
            )),
            None => None,
        };
        let mut playing =
            tokio::time::timeout(REQUEST_TIMEOUT, session.play(quirks::play_options()))
                .await
                .map_err(|_| no_answer("PLAY"))?
                .map_err(classify)?;
        let mut timeline = SessionTimeline::default();
        while let Some(item) = playing.next().await {
            let PacketItem::Rtp(packet) = item.map_err(classify)? else {
                continue;
            };
            let arrival = self.clock.running_time().nseconds();
            let Some(writer) = self.writer.upgrade() else {
                return Err(Error::new(ErrorKind::Transient, "the session was stopped"));
            };
            if packet.stream_id() == chosen.video.index {
                if let Some(sample) = video.push(packet, &mut timeline, arrival) {
                    writer.received(sample.buffer().map_or(0, |b| b.size()));
                    writer.push_video(sample);
                }
            } else if let Some((index, track)) = &mut audio {
                if packet.stream_id() == *index {
                    if let Err(error) = track.push(&packet, &mut timeline, arrival) {
                        tracing::warn!(
                            "the camera's audio cannot be read ({}); continuing with video only",
                            crate::secret::redact_urls(&error)
                        );
                        audio = None;
                    }
                }
            }
        }
        // Some servers (VLC among them) end the stream when their source loops or restarts.
        Err(Error::new(
            ErrorKind::Transient,
            "the camera ended the stream",
        ))
    }

    /// Tells the hub what the session will carry before any media flows, so viewers get their
    /// description without waiting for the first packet of every track.
    fn announce(&self, chosen: &Chosen) {
        let Some(writer) = self.writer.upgrade() else {
            return;
        };
        let audio = chosen.audio.as_ref();
        if let Some((offered, branch)) = audio {
            if let Some(caps) = &branch.caps {
                writer.set_audio_caps(
                    caps.clone(),
                    Some(gst::Buffer::from_slice(
                        super::audio_track::SILENT_AAC_FRAME,
                    )),
                );
            }
            // Browsers take G.711 at 8 kHz only.
            writer.set_g711(
                (branch.g711().is_some() && offered.clock_rate == 8000).then_some(branch.name),
            );
        }
        writer.set_tracks(
            audio.is_some(),
            audio.map(|(_, branch)| branch.name.to_string()),
        );
    }
}

/// A wrong password is said plainly and never retried; everything else is worth another try.
/// Decided by the camera's RTSP status, never by searching an error's text: a camera id or a
/// path holding "401" is no wrong password.
fn classify(error: retina::Error) -> Error {
    match error.status_code() {
        Some(401) => Error::new(
            ErrorKind::Auth,
            "the camera rejected the username or password (401 Unauthorized)",
        ),
        Some(404) => Error::new(
            ErrorKind::Transient,
            "the camera says the stream path does not exist (404)",
        ),
        _ => Error::new(
            ErrorKind::Transient,
            format!("camera connection failed: {error}"),
        ),
    }
}
