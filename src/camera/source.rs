//! The camera connection: `rtspsrc → depay → parse → appsink` per track, feeding the [`Hub`].
//!
//! This module owns the session: it connects, chooses the tracks from the SDP, reports failures
//! and tears down. What each track goes through on its way to the hub is in `branch`: video is
//! passed through untouched (only parsed, so the SDP we serve carries the parameter sets), and
//! audio becomes AAC once per camera. Nothing here runs per viewer.

use super::branch::{SILENT_AAC_FRAME, audio_branch, link_track, media_and_encoding, video_branch};
use super::in_order::{InOrderTimestamper, SharedTimeline};
use crate::config::{CameraConfig, Transport};
use crate::error::{Error, ErrorKind};
use crate::media::hub::{Hub, SessionWriter};
use crate::media::pipeline::{MediaClock, PipelineGuard};
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Reported by a running ingest; the actor ignores reports from a session it already replaced.
#[derive(Debug)]
pub struct SourceFailure {
    pub generation: u64,
    pub error: Error,
}

/// Jitterbuffer latency. rtpjitterbuffer holds the first packet this long, so it adds directly
/// to cold start; UDP gets enough to put packets back in order. Over TCP, which cannot reorder,
/// `in_order` stands in for the jitterbuffer and holds nothing.
fn jitter_latency_ms(transport: Transport) -> u32 {
    match transport {
        Transport::Tcp => 0,
        Transport::Udp => 100,
    }
}
/// How long stopping may take before we stop waiting (a dead camera can stall TEARDOWN).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracks chosen from the camera's SDP, before any media flows.
#[derive(Default)]
struct Tracks {
    video: Option<String>,
    audio: Option<&'static str>,
    /// A video codec we saw but cannot pass through, for a clear error.
    unsupported_video: Option<String>,
}

/// The camera pipeline, stopped source first.
///
/// Over TCP, rtspsrc's reading thread pushes all the way into the appsinks (see `in_order`).
/// Stopping the whole pipeline pauses the sinks before rtspsrc, and rtspsrc's PLAYING→PAUSED
/// waits for that thread, which may be parked in a paused sink waiting to preroll: a deadlock.
/// rtspsrc stopped first, while the sinks still play, cannot block on them.
struct Session {
    source: gst::Element,
    /// Stops the rest when dropped, after `Drop for Session` stopped the source.
    _pipeline: PipelineGuard,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Locked, or the pipeline would take it back up to PAUSED on its way down: a reconnect.
        self.source.set_locked_state(true);
        let _ = self.source.set_state(gst::State::Null);
    }
}

/// A running camera session. Stop it with [`Ingest::stop`]; dropping it also stops it.
pub struct Ingest {
    session: Option<Session>,
    /// The only strong reference: the pipeline's callbacks hold weak ones, so dropping it ends
    /// the session in the hub at once, whatever the teardown does.
    writer: Option<Arc<SessionWriter>>,
    generation: u64,
    bus_task: tokio::task::JoinHandle<()>,
}

impl Ingest {
    pub fn start(
        camera: &CameraConfig,
        hub: Arc<Hub>,
        clock: &MediaClock,
        failures: mpsc::UnboundedSender<SourceFailure>,
    ) -> Result<Ingest, Error> {
        let writer = Arc::new(hub.begin_session());
        let generation = writer.generation();
        let pipeline = gst::Pipeline::with_name(&format!("ingest-{}", camera.id));
        clock.apply(&pipeline);
        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", &camera.url)
            .property("latency", jitter_latency_ms(camera.transport))
            .build()
            .map_err(|_| {
                Error::new(
                    ErrorKind::Internal,
                    "rtspsrc is missing (apt install gstreamer1.0-plugins-good)",
                )
            })?;
        src.set_property_from_str(
            "protocols",
            match camera.transport {
                Transport::Tcp => "tcp",
                Transport::Udp => "udp",
            },
        );
        if camera.transport == Transport::Tcp {
            time_in_order(&src);
        }
        if let Some(user) = &camera.username {
            src.set_property("user-id", user);
        }
        if let Some(password) = &camera.password {
            src.set_property("user-pw", password.expose());
        }
        pipeline
            .add(&src)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;

        let tracks = Arc::new(Mutex::new(Tracks::default()));
        let report = {
            let failures = failures.clone();
            move |error: Error| {
                let _ = failures.send(SourceFailure { generation, error });
            }
        };
        {
            // Choosing tracks from the SDP tells viewers what to expect without waiting for the
            // first packet of every track; streams we cannot use are never set up.
            let writer = Arc::downgrade(&writer);
            let tracks = tracks.clone();
            src.connect("select-stream", false, move |args| {
                let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
                let selected = caps.is_some_and(|caps| select_track(&caps, &writer, &tracks));
                Some(selected.to_value())
            });
        }
        {
            let pipeline = pipeline.downgrade();
            let writer = Arc::downgrade(&writer);
            let report = report.clone();
            src.connect_pad_added(move |_, pad| {
                let Some(pipeline) = pipeline.upgrade() else {
                    return;
                };
                tracing::debug!("camera track {} flows", pad.name());
                if let Err(error) = link_track(&pipeline, pad, &writer) {
                    report(error);
                }
            });
        }
        {
            let tracks = tracks.clone();
            let report = report.clone();
            src.connect_no_more_pads(move |_| {
                let tracks = lock(&tracks);
                if tracks.video.is_none() {
                    report(Error::new(
                        ErrorKind::Unsupported,
                        match &tracks.unsupported_video {
                            Some(codec) => format!("the camera sends {codec} video; only H.264 and H.265 can be passed through"),
                            None => "the camera offers no video track".to_string(),
                        },
                    ));
                }
            });
        }

        let bus = pipeline.bus().expect("a pipeline always has a bus");
        let bus_task = tokio::spawn(watch_bus(bus, report));
        let guard = PipelineGuard::new(pipeline);
        if guard.pipeline().set_state(gst::State::Playing).is_err() {
            bus_task.abort();
            return Err(Error::new(
                ErrorKind::Internal,
                "the camera pipeline refused to start",
            ));
        }
        Ok(Ingest {
            session: Some(Session {
                source: src,
                _pipeline: guard,
            }),
            writer: Some(writer),
            generation,
            bus_task,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Tears the session down off the async threads (rtspsrc may wait on a dead camera).
    pub async fn stop(mut self) {
        self.bus_task.abort();
        self.writer.take();
        if let Some(session) = self.session.take() {
            let started = std::time::Instant::now();
            let teardown = tokio::task::spawn_blocking(move || drop(session));
            if tokio::time::timeout(STOP_TIMEOUT, teardown).await.is_ok() {
                tracing::debug!("camera pipeline torn down in {:?}", started.elapsed());
            } else {
                tracing::warn!(
                    "camera teardown is taking longer than {STOP_TIMEOUT:?}; continuing"
                );
            }
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.bus_task.abort();
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides whether to set up one stream of the camera's SDP (rtspsrc `select-stream`).
fn select_track(caps: &gst::CapsRef, writer: &Weak<SessionWriter>, tracks: &Mutex<Tracks>) -> bool {
    let Some(writer) = writer.upgrade() else {
        return false;
    };
    let (media, encoding) = media_and_encoding(caps);
    let mut tracks = lock(tracks);
    let selected = match media.as_str() {
        "video" if tracks.video.is_none() => {
            if video_branch(&encoding).is_some() {
                tracks.video = Some(encoding.clone());
                true
            } else {
                tracks.unsupported_video = Some(encoding.clone());
                false
            }
        }
        "audio" if tracks.audio.is_none() => match audio_branch(&encoding) {
            Some(branch) => {
                tracks.audio = Some(branch.name);
                if let Some(caps) = branch.caps {
                    writer.set_audio_caps(caps, Some(gst::Buffer::from_slice(SILENT_AAC_FRAME)));
                }
                // Browsers take G.711 at 8 kHz only.
                let rate = caps
                    .structure(0)
                    .and_then(|s| s.get::<i32>("clock-rate").ok());
                writer.set_g711((branch.g711 && rate == Some(8000)).then_some(branch.name));
                true
            }
            None => {
                tracing::warn!(
                    "the camera sends {encoding} audio, which is not supported; continuing with video only"
                );
                false
            }
        },
        _ => false,
    };
    tracing::debug!(
        "camera offers {media} {encoding}: {}",
        if selected { "using it" } else { "skipped" }
    );
    writer.set_tracks(tracks.audio.is_some(), tracks.audio.map(str::to_string));
    selected
}

/// TCP needs no reordering: rtpbin gets an in-order timestamper instead of a jitterbuffer (see
/// `in_order`), with one timeline for the session's tracks (see `timeline`).
fn time_in_order(src: &gst::Element) {
    let session = SharedTimeline::default();
    src.connect("new-manager", false, move |args| {
        let manager = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        let session = session.clone();
        manager.connect("request-jitterbuffer", false, move |_| {
            Some(
                InOrderTimestamper::new(session.clone())
                    .upcast::<gst::Element>()
                    .to_value(),
            )
        });
        None
    });
}

async fn watch_bus(bus: gst::Bus, report: impl Fn(Error)) {
    let mut messages = bus.stream();
    while let Some(message) = messages.next().await {
        match message.view() {
            gst::MessageView::Error(err) => {
                report(classify(err.error(), err.debug().as_deref()));
                return;
            }
            gst::MessageView::Eos(_) => {
                // Some servers (VLC among them) end the stream when their source loops or restarts.
                report(Error::new(
                    ErrorKind::Transient,
                    "the camera ended the stream",
                ));
                return;
            }
            gst::MessageView::Warning(w) => {
                tracing::debug!(
                    "camera pipeline warning: {}",
                    crate::secret::redact_urls(&w.error().to_string())
                );
            }
            _ => {}
        }
    }
}

/// A wrong password is said plainly and never retried; everything else is worth another try.
/// Decided by the error's domain and code (rtspsrc posts `NotAuthorized` for a 401 and
/// `NotFound` for a 404), never by searching its text: a camera id or a source line number
/// holding "401" is no wrong password.
fn classify(error: gst::glib::Error, _debug: Option<&str>) -> Error {
    if error.matches(gst::ResourceError::NotAuthorized) {
        return Error::new(
            ErrorKind::Auth,
            "the camera rejected the username or password (401 Unauthorized)",
        );
    }
    if error.matches(gst::CoreError::MissingPlugin) {
        return Error::new(
            ErrorKind::Internal,
            format!("a GStreamer plugin is missing: {error}"),
        );
    }
    if error.matches(gst::ResourceError::NotFound) {
        return Error::new(
            ErrorKind::Transient,
            "the camera says the stream path does not exist (404)",
        );
    }
    Error::new(
        ErrorKind::Transient,
        format!("camera connection failed: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_password_is_known_by_its_error_code_not_by_401_in_the_text() {
        gst::init().unwrap();
        let denied = gst::glib::Error::new(gst::ResourceError::NotAuthorized, "Unauthorized");
        assert_eq!(classify(denied, None).kind(), ErrorKind::Auth);
        let look_alike = gst::glib::Error::new(
            gst::ResourceError::Failed,
            "Could not connect to camera cam401 (gstrtspsrc.c:401)",
        );
        let error = classify(look_alike, Some("rtspsrc line 401: 401 bytes"));
        assert_eq!(error.kind(), ErrorKind::Transient, "retried, not fatal");
        let missing = gst::glib::Error::new(gst::ResourceError::NotFound, "Not Found");
        assert_eq!(classify(missing, None).kind(), ErrorKind::Transient);
    }

    /// Over TCP the reading thread pushes into the sinks. Stopping the whole pipeline at once
    /// paused a sink first, parked that thread in it, and rtspsrc then waited on the thread
    /// forever: a 5 s teardown timeout on CI, reproduced here with a sink that is slow.
    #[test]
    fn a_camera_session_stops_at_once_while_its_sink_is_busy() {
        use crate::testcam::{AudioCodec, TestCamera, TestCameraOptions};
        gst::init().unwrap();
        let camera = TestCamera::start(&TestCameraOptions {
            audio: AudioCodec::None,
            width: 160,
            height: 120,
            ..TestCameraOptions::default()
        })
        .unwrap();
        std::thread::spawn(|| gst::glib::MainLoop::new(None, false).run());

        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("rtspsrc")
            .property("location", camera.url())
            .build()
            .unwrap();
        src.set_property_from_str("protocols", "tcp");
        time_in_order(&src);
        pipeline.add(&src).unwrap();
        let (arrived_tx, arrived) = std::sync::mpsc::channel();
        let arrived_tx = Mutex::new(arrived_tx);
        src.connect_pad_added(move |src, pad| {
            let pipeline = src.parent().and_downcast::<gst::Pipeline>().unwrap();
            // As the ingest's appsinks are.
            let sink = gst::ElementFactory::make("fakesink")
                .property("sync", false)
                .property("async", false)
                .build()
                .unwrap();
            let arrived_tx = arrived_tx.lock().unwrap().clone();
            sink.static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                    let _ = arrived_tx.send(());
                    std::thread::sleep(Duration::from_millis(30));
                    gst::PadProbeReturn::Ok
                });
            pipeline.add(&sink).unwrap();
            sink.sync_state_with_parent().unwrap();
            pad.link(&sink.static_pad("sink").unwrap()).unwrap();
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        for _ in 0..5 {
            // Generous: a cold plugin registry makes the first rtspsrc slow to start.
            arrived
                .recv_timeout(Duration::from_secs(30))
                .expect("RTP arrives");
        }

        let source = src.clone();
        let session = Session {
            source: src,
            _pipeline: PipelineGuard::new(pipeline),
        };
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(session);
            let _ = stopped_tx.send(());
        });
        stopped
            // The hang it guards against is forever; a busy machine stops in milliseconds.
            .recv_timeout(Duration::from_secs(10))
            .expect("the session stopped, it did not wait on a paused sink");
        assert_eq!(
            source.current_state(),
            gst::State::Null,
            "the camera was let go"
        );
    }
}
