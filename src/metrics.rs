//! What a user can watch to trust the add-on: counters per camera and for logins, served in
//! Prometheus' text format at `GET /metrics` (behind the API's credentials). Rendering is
//! pure and tested directly; the counters are plain atomics bumped where things happen.

use crate::camera::state::Status;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A camera's counters since start. The hub carries them, so every part that handles the
/// camera's media can count.
#[derive(Debug, Default)]
pub struct CameraCounters {
    /// Times the camera connection came up.
    pub connects: AtomicU64,
    /// Of those, the ones that replaced a connection lost while it was still wanted.
    pub reconnects: AtomicU64,
    /// Media bytes from the camera (video, and audio as the camera sends it).
    pub received_bytes: AtomicU64,
    /// Frames dropped for viewers that fell behind.
    pub dropped_frames: AtomicU64,
    /// Event clips that could not be recorded or finished.
    pub clip_failures: AtomicU64,
}

/// Adds `n` to one of the counters here.
pub fn count(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Wrong passwords since start, per server.
#[derive(Debug, Default)]
pub struct LoginFailures {
    pub http: AtomicU64,
    pub rtsp: AtomicU64,
}

/// One camera as `/metrics` shows it.
pub struct CameraSample<'a> {
    pub id: &'a str,
    pub status: Status,
    pub counters: &'a CameraCounters,
    pub rtsp_viewers: usize,
    pub webrtc_viewers: usize,
    pub mse_viewers: usize,
}

/// The Prometheus text exposition (version 0.0.4) of `cameras` and `logins`.
pub fn render(cameras: &[CameraSample], logins: &LoginFailures) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let per_camera = |value: &dyn Fn(&CameraSample) -> u64| {
        cameras
            .iter()
            .map(|c| (format!("camera=\"{}\"", escape(c.id)), value(c)))
            .collect::<Vec<_>>()
    };
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    family(
        "ipcam_camera_up",
        "gauge",
        "1 while the camera connection is up.",
        per_camera(&|c| u64::from(c.status == Status::Active)),
    );
    family(
        "ipcam_camera_status",
        "gauge",
        "1 for the camera's current status (inactive, activating, active, failed).",
        cameras
            .iter()
            .flat_map(|c| {
                Status::ALL.iter().map(move |s| {
                    (
                        format!("camera=\"{}\",status=\"{}\"", escape(c.id), s.as_str()),
                        u64::from(c.status == *s),
                    )
                })
            })
            .collect(),
    );
    family(
        "ipcam_camera_connects_total",
        "counter",
        "Times the camera connection came up.",
        per_camera(&|c| load(&c.counters.connects)),
    );
    family(
        "ipcam_camera_reconnects_total",
        "counter",
        "Connections that replaced one lost while the camera was still wanted.",
        per_camera(&|c| load(&c.counters.reconnects)),
    );
    family(
        "ipcam_camera_received_bytes_total",
        "counter",
        "Media bytes received from the camera.",
        per_camera(&|c| load(&c.counters.received_bytes)),
    );
    family(
        "ipcam_camera_dropped_frames_total",
        "counter",
        "Frames dropped for viewers that fell behind.",
        per_camera(&|c| load(&c.counters.dropped_frames)),
    );
    family(
        "ipcam_camera_viewers",
        "gauge",
        "Viewers watching now, by kind.",
        cameras
            .iter()
            .flat_map(|c| {
                [
                    ("rtsp", c.rtsp_viewers),
                    ("webrtc", c.webrtc_viewers),
                    ("mse", c.mse_viewers),
                ]
                .map(|(kind, n)| {
                    (
                        format!("camera=\"{}\",kind=\"{kind}\"", escape(c.id)),
                        n as u64,
                    )
                })
            })
            .collect(),
    );
    family(
        "ipcam_camera_clip_failures_total",
        "counter",
        "Event clips that could not be recorded or finished.",
        per_camera(&|c| load(&c.counters.clip_failures)),
    );
    family(
        "ipcam_login_failures_total",
        "counter",
        "Wrong usernames or passwords, by server.",
        vec![
            ("server=\"http\"".into(), load(&logins.http)),
            ("server=\"rtsp\"".into(), load(&logins.rtsp)),
        ],
    );
    out
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_a_row_per_camera() {
        let counters = CameraCounters::default();
        count(&counters.connects, 3);
        count(&counters.reconnects, 2);
        count(&counters.received_bytes, 1234);
        let cameras = [CameraSample {
            id: "nursery",
            status: Status::Active,
            counters: &counters,
            rtsp_viewers: 2,
            webrtc_viewers: 1,
            mse_viewers: 0,
        }];
        let logins = LoginFailures::default();
        count(&logins.rtsp, 4);
        let text = render(&cameras, &logins);
        for line in [
            "# TYPE ipcam_camera_up gauge",
            "ipcam_camera_up{camera=\"nursery\"} 1",
            "ipcam_camera_status{camera=\"nursery\",status=\"active\"} 1",
            "ipcam_camera_status{camera=\"nursery\",status=\"failed\"} 0",
            "ipcam_camera_connects_total{camera=\"nursery\"} 3",
            "ipcam_camera_reconnects_total{camera=\"nursery\"} 2",
            "ipcam_camera_received_bytes_total{camera=\"nursery\"} 1234",
            "ipcam_camera_viewers{camera=\"nursery\",kind=\"rtsp\"} 2",
            "ipcam_camera_viewers{camera=\"nursery\",kind=\"webrtc\"} 1",
            "ipcam_login_failures_total{server=\"rtsp\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
