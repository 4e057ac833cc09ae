//! On demand is a refcount: every consumer holds a [`Lease`], and the camera runs while any exists.
//!
//! After neolink's `usecounter.rs`, with one addition: an epoch. MQTT OFF starts a new epoch,
//! so the leases of viewers being disconnected cannot restart the camera as they drain away.

use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    RtspViewer,
    WebrtcViewer,
    /// Fragmented MP4 over `/api/ws` or `/api/stream.mp4`.
    MseViewer,
    MqttHold,
    /// A still image of an idle camera: held from connect to the first decoded keyframe.
    Snapshot,
    /// Cry detection listens for as long as it is enabled.
    CryDetection,
    /// An event clip is being recorded.
    Recorder,
}

/// The live leases by purpose, as the actor sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemandSnapshot {
    pub rtsp_viewers: usize,
    pub webrtc_viewers: usize,
    pub mse_viewers: usize,
    pub mqtt_hold: bool,
    pub snapshots: usize,
    pub cry_detection: bool,
    pub recordings: usize,
}

impl DemandSnapshot {
    pub fn total(&self) -> usize {
        self.rtsp_viewers
            + self.webrtc_viewers
            + self.mse_viewers
            + usize::from(self.mqtt_hold)
            + self.snapshots
            + usize::from(self.cry_detection)
            + self.recordings
    }
}

#[derive(Debug, Default)]
struct Counts {
    epoch: u64,
    rtsp_viewers: usize,
    webrtc_viewers: usize,
    mse_viewers: usize,
    mqtt_holds: usize,
    snapshots: usize,
    cry_detections: usize,
    recordings: usize,
}

impl Counts {
    fn slot(&mut self, purpose: Purpose) -> &mut usize {
        match purpose {
            Purpose::RtspViewer => &mut self.rtsp_viewers,
            Purpose::WebrtcViewer => &mut self.webrtc_viewers,
            Purpose::MseViewer => &mut self.mse_viewers,
            Purpose::MqttHold => &mut self.mqtt_holds,
            Purpose::Snapshot => &mut self.snapshots,
            Purpose::CryDetection => &mut self.cry_detections,
            Purpose::Recorder => &mut self.recordings,
        }
    }

    fn snapshot(&self) -> DemandSnapshot {
        DemandSnapshot {
            rtsp_viewers: self.rtsp_viewers,
            webrtc_viewers: self.webrtc_viewers,
            mse_viewers: self.mse_viewers,
            mqtt_hold: self.mqtt_holds > 0,
            snapshots: self.snapshots,
            cry_detection: self.cry_detections > 0,
            recordings: self.recordings,
        }
    }
}

#[derive(Debug)]
struct Shared {
    counts: Mutex<Counts>,
    changes: watch::Sender<DemandSnapshot>,
}

/// Cheap to clone; one per camera.
#[derive(Debug, Clone)]
pub struct Demand {
    shared: Arc<Shared>,
}

impl Demand {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                counts: Mutex::new(Counts::default()),
                changes: watch::Sender::new(DemandSnapshot::default()),
            }),
        }
    }

    pub fn lease(&self, purpose: Purpose) -> Lease {
        let mut counts = self.lock();
        *counts.slot(purpose) += 1;
        self.shared.changes.send_replace(counts.snapshot());
        Lease {
            shared: self.shared.clone(),
            purpose,
            epoch: counts.epoch,
        }
    }

    /// Forgets every lease that exists now (MQTT OFF); they drop later without effect.
    pub fn reset(&self) {
        let mut counts = self.lock();
        *counts = Counts {
            epoch: counts.epoch + 1,
            ..Counts::default()
        };
        self.shared.changes.send_replace(counts.snapshot());
    }

    pub fn subscribe(&self) -> watch::Receiver<DemandSnapshot> {
        self.shared.changes.subscribe()
    }

    pub fn snapshot(&self) -> DemandSnapshot {
        self.lock().snapshot()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        lock(&self.shared)
    }
}

impl Default for Demand {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Counts> {
    shared.counts.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the camera running while it lives. Dropping it is synchronous and never blocks,
/// so it may happen on a GStreamer or GLib thread.
#[derive(Debug)]
pub struct Lease {
    shared: Arc<Shared>,
    purpose: Purpose,
    epoch: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut counts = lock(&self.shared);
        if counts.epoch == self.epoch {
            let slot = counts.slot(self.purpose);
            *slot = slot.saturating_sub(1);
            self.shared.changes.send_replace(counts.snapshot());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_by_purpose_and_release_on_drop() {
        let demand = Demand::new();
        let a = demand.lease(Purpose::RtspViewer);
        let b = demand.lease(Purpose::RtspViewer);
        let hold = demand.lease(Purpose::MqttHold);
        assert_eq!(demand.snapshot().total(), 3);
        drop(a);
        drop(hold);
        assert_eq!(
            demand.snapshot(),
            DemandSnapshot {
                rtsp_viewers: 1,
                webrtc_viewers: 0,
                mse_viewers: 0,
                mqtt_hold: false,
                snapshots: 0,
                cry_detection: false,
                recordings: 0,
            }
        );
        drop(b);
        assert_eq!(demand.snapshot().total(), 0);
    }

    #[test]
    fn leases_from_before_a_reset_do_not_count_when_dropped() {
        let demand = Demand::new();
        let old = demand.lease(Purpose::RtspViewer);
        demand.reset();
        let new = demand.lease(Purpose::RtspViewer);
        drop(old);
        assert_eq!(demand.snapshot().rtsp_viewers, 1);
        drop(new);
        assert_eq!(demand.snapshot().rtsp_viewers, 0);
    }

    #[test]
    fn changes_are_announced() {
        let demand = Demand::new();
        let mut rx = demand.subscribe();
        let _lease = demand.lease(Purpose::MqttHold);
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().mqtt_hold);
    }
}
