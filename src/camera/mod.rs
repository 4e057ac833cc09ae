//! One camera: an actor that owns the camera connection, behind a cheap cloneable handle.

mod aac_lc;
pub mod actor;
mod audio_track;
pub mod demand;
mod frame_blocks;
pub mod g711;
pub mod g711_aac;
mod quirks;
mod retime;
pub mod source;
pub mod state;
pub mod timeline;
mod tracks;
mod upsample;
mod video;

use crate::media::hub::StreamInfo;
use state::Status;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot, watch};

/// The log span every task of one camera runs in (connection, snapshots, events, cry
/// detection), so its lines carry `camera{id=…}` and can be filtered by camera.
pub fn span(id: &str) -> tracing::Span {
    tracing::info_span!("camera", id = %id)
}

/// What the rest of the add-on may ask of a camera.
#[derive(Debug)]
pub enum Command {
    /// MQTT ON (`true`) holds the camera with no viewers; OFF (`false`) stops it and its viewers.
    SetLive(bool, oneshot::Sender<()>),
}

/// Everything the MQTT publisher and the API show about a camera.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraState {
    pub status: Status,
    /// False while the camera is known to be unreachable.
    pub available: bool,
    /// The last failure, redacted and fit for a user.
    pub error: Option<String>,
    pub streaming_since: Option<SystemTime>,
    pub info: StreamInfo,
    pub rtsp_viewers: usize,
    pub webrtc_viewers: usize,
    pub mse_viewers: usize,
    /// MQTT ON is holding the stream.
    pub held: bool,
    /// Cry detection is holding the stream.
    pub held_by_cry_detection: bool,
    /// Retrying cannot help (wrong password) until MQTT ON: waiting for this camera is pointless.
    pub stuck: bool,
    pub dropped_frames: u64,
}

impl CameraState {
    /// The "Live stream" switch: on while the camera connection is up or coming up.
    pub fn live(&self) -> bool {
        matches!(self.status, Status::Activating | Status::Active)
    }
}

impl Default for CameraState {
    fn default() -> Self {
        Self {
            status: Status::Inactive,
            available: true,
            error: None,
            streaming_since: None,
            info: StreamInfo::default(),
            rtsp_viewers: 0,
            webrtc_viewers: 0,
            mse_viewers: 0,
            held: false,
            held_by_cry_detection: false,
            stuck: false,
            dropped_frames: 0,
        }
    }
}

/// Disconnects a camera's viewers on MQTT OFF; the RTSP server implements it.
pub trait ViewerControl: Send + Sync {
    fn disconnect_viewers(&self, camera: &str) -> usize;
    /// Stops the camera's event-stream playbacks (Event select changed, Event stream OFF).
    fn stop_event_playback(&self, camera: &str) -> usize;
}

/// Cheap to clone; the only way into a camera actor.
#[derive(Debug, Clone)]
pub struct CameraHandle {
    pub id: String,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<CameraState>,
}

impl CameraHandle {
    pub fn state(&self) -> watch::Receiver<CameraState> {
        self.state.clone()
    }

    /// Applies MQTT ON/OFF and waits until the actor has acted on it.
    pub async fn set_live(&self, on: bool) -> Result<(), crate::error::Error> {
        let (tx, rx) = oneshot::channel();
        let gone =
            || crate::error::Error::new(crate::error::ErrorKind::Internal, "camera actor stopped");
        self.commands
            .send(Command::SetLive(on, tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}
