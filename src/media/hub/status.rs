//! The hub's read-only face, for the camera actor, the API and snapshots.

use super::{Hub, Keyframe, Layout};
use crate::metrics::CameraCounters;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::watch;

/// A human summary of the streams, for the info sensor and logs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    pub video_codec: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub fps: Option<f64>,
    pub audio_codec_in: Option<String>,
    pub audio_codec_out: Option<String>,
}

/// What a hub can tell without being changed.
#[derive(Clone)]
pub struct HubStatus(Arc<Hub>);

impl HubStatus {
    pub(super) fn new(hub: Arc<Hub>) -> Self {
        Self(hub)
    }

    pub fn info(&self) -> StreamInfo {
        self.0.lock().last_info.clone()
    }

    /// Frames dropped for slow consumers, since start.
    pub fn dropped_frames(&self) -> u64 {
        self.0.counters.dropped_frames.load(Ordering::Relaxed)
    }

    /// The camera's counters (`/metrics`).
    pub fn counters(&self) -> &Arc<CameraCounters> {
        &self.0.counters
    }

    /// When the last video frame arrived: the stall watchdog reads this.
    pub fn last_video_at(&self) -> Option<Instant> {
        self.0.lock().last_video_at
    }

    /// The newest keyframe while the camera streams; `None` while it is idle.
    pub fn subscribe_keyframes(&self) -> watch::Receiver<Option<Keyframe>> {
        self.0.keyframe.subscribe()
    }

    /// Fires with the generation of each session that became ready.
    pub fn subscribe_ready(&self) -> watch::Receiver<u64> {
        self.0.ready_generation.subscribe()
    }
}

pub(super) fn stream_info(layout: &Layout, audio_in: Option<String>) -> StreamInfo {
    let mut info = StreamInfo {
        audio_codec_in: audio_in,
        ..StreamInfo::default()
    };
    if let Some(s) = layout.video.structure(0) {
        info.video_codec = Some(
            match s.name().as_str() {
                "video/x-h264" => "H264",
                "video/x-h265" => "H265",
                other => other,
            }
            .to_string(),
        );
        info.width = s.get::<i32>("width").ok();
        info.height = s.get::<i32>("height").ok();
        info.fps = s
            .get::<gstreamer::Fraction>("framerate")
            .ok()
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map(|f| (f.numer() as f64 / f.denom() as f64 * 100.0).round() / 100.0);
    }
    if let Some(s) = layout.audio.as_ref().and_then(|c| c.structure(0)) {
        let rate = s.get::<i32>("rate").unwrap_or(0);
        let channels = s.get::<i32>("channels").unwrap_or(0);
        info.audio_codec_out = Some(format!("AAC {rate} Hz {channels} ch"));
    }
    info
}
