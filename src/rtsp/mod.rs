//! The RTSP edge: live streams sent from the camera hubs by our own server (`live`), recorded
//! events played by gst-rtsp-server (`playback`).

pub mod asked_paths;
pub mod auth;
pub mod holds;
pub mod limits;
pub mod live;
pub mod playback;
pub mod server;

/// The server's callbacks must go on after a panic elsewhere, so a poisoned lock is still used.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
