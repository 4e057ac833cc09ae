//! The live streams (`/<camera>_live`), served by our own RTSP code on tokio.
//!
//! gst-rtsp-server built a pipeline per viewer (appsrc, payloader, rtpbin, a sink and their
//! threads), and each RTP packet crossed it and two threads. Here a viewer is a task: whole
//! frames from the hub's [`FrameQueue`](crate::media::hub::FrameQueue), packetized and written
//! in one go (BENCHMARKS.md, "Our own RTSP sender"). Recorded events (`/<camera>_event`) stay
//! with gst-rtsp-server: a connection that asks for one first is handed over to it.
//!
//! - `message`: requests in, responses out;
//! - `digest`: logins;
//! - `transport`: the client's choice of TCP or UDP;
//! - `sdp`: the stream's description, from the hub's caps;
//! - `rtp`: frames to packets, and sender reports;
//! - `session`: where a viewer's tracks go, and sending its frames and sender reports;
//! - `connection`: one connection's requests, its login, and its session's life.

mod connection;
pub mod digest;
pub mod message;
mod rtp;
mod sdp;
mod session;
pub mod transport;

pub use connection::Handoff;

use super::auth::{Login, LoginThrottle};
use super::limits::Admission;
use super::lock;
use crate::camera::demand::Demand;
use crate::media::hub::Hub;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Per-client kernel send buffer (Linux doubles it): about half a second of 4 Mbit/s video, so
/// a slow viewer backs up into its own queue, where the hub drops whole frames, within a second.
pub(super) const CLIENT_SEND_BUFFER: libc::c_int = 128 * 1024;

/// What the server needs to know about one camera's live stream.
pub struct LiveMount {
    pub camera: String,
    pub hub: Arc<Hub>,
    pub demand: Demand,
    pub start_timeout: Duration,
}

struct LoginCheck {
    digest: digest::DigestLogin,
    throttle: LoginThrottle,
}

/// A connection the server knows of: the camera it watches, and how to end it.
struct Registered {
    camera: Option<String>,
    cancel: CancellationToken,
}

/// Shared by every connection.
pub struct Live {
    mounts: Vec<(String, Arc<LiveMount>)>,
    event_paths: Vec<String>,
    login: Option<LoginCheck>,
    connections: Mutex<HashMap<u64, Registered>>,
    admission: Mutex<Admission>,
    next_id: AtomicU64,
}

/// `path` is `mount` or below it (`/cam_live/stream=1`); the rest after the mount.
fn below<'a>(path: &'a str, mount: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(mount)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

impl Live {
    pub fn new(
        mounts: Vec<LiveMount>,
        event_paths: Vec<String>,
        login: Option<&Login>,
    ) -> Arc<Self> {
        Arc::new(Live {
            mounts: mounts
                .into_iter()
                .map(|m| (super::server::live_path(&m.camera), Arc::new(m)))
                .collect(),
            event_paths,
            login: login.map(|login| LoginCheck {
                digest: digest::DigestLogin::new(&login.user, &login.password),
                throttle: LoginThrottle::new(login.failures.clone()),
            }),
            connections: Mutex::default(),
            admission: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The camera behind a path, and the track it names (`stream=1` is audio).
    fn mount_for(&self, path: &str) -> Option<(Arc<LiveMount>, usize)> {
        self.mounts.iter().find_map(|(mount_path, mount)| {
            let rest = below(path, mount_path)?;
            let track = rest
                .trim_matches('/')
                .strip_prefix("stream=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Some((mount.clone(), track))
        })
    }

    fn is_event_path(&self, path: &str) -> bool {
        self.event_paths.iter().any(|p| below(path, p).is_some())
    }

    fn watching(&self, id: u64, camera: &str) {
        if let Some(registered) = lock(&self.connections).get_mut(&id) {
            registered.camera = Some(camera.to_string());
        }
    }

    fn forget(&self, id: u64) {
        lock(&self.connections).remove(&id);
    }

    /// Ends every connection watching `camera` (MQTT OFF), playing or not yet; returns how many.
    pub fn disconnect(&self, camera: &str) -> usize {
        let connections = lock(&self.connections);
        let watching = connections
            .values()
            .filter(|r| r.camera.as_deref() == Some(camera));
        watching.map(|r| r.cancel.cancel()).count()
    }

    /// Accepts connections until the listener fails; `handoff` takes those for event streams.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        handoff: Arc<dyn Fn(Handoff, SocketAddr) + Send + Sync>,
    ) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!("cannot accept an RTSP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let address = peer.ip().to_string();
            if !lock(&self.admission).admit(&address) {
                tracing::debug!(
                    "closing an RTSP connection from {address}: it is one connection too many"
                );
                lock(&self.admission).leave(&address);
                continue;
            }
            let live = self.clone();
            let handoff = handoff.clone();
            tokio::spawn(async move {
                live.connection(stream, peer, handoff).await;
                lock(&live.admission).leave(&address);
            });
        }
    }

    async fn connection(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        handoff: Arc<dyn Fn(Handoff, SocketAddr) + Send + Sync>,
    ) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        configure(&stream);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        lock(&self.connections).insert(
            id,
            Registered {
                camera: None,
                cancel: cancel.clone(),
            },
        );
        let connection = connection::Connection::new(self.clone(), peer, local, id, cancel);
        if let Some(handed) = connection.run(stream).await {
            handoff(handed, peer);
        }
    }
}

/// No Nagle (a frame's last packet would wait for the ACK of those before it, which the
/// viewer's delayed ACK holds for up to 40 ms), and a bounded send buffer.
fn configure(stream: &TcpStream) {
    if stream.set_nodelay(true).is_err() {
        tracing::debug!("cannot turn off Nagle for a viewer");
    }
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is the stream's, open for this call; the value is a c_int.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&CLIENT_SEND_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        tracing::debug!("cannot bound a viewer's send buffer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_a_mount_belong_to_it_and_others_do_not() {
        assert_eq!(below("/cam_live", "/cam_live"), Some(""));
        assert_eq!(below("/cam_live/stream=1", "/cam_live"), Some("/stream=1"));
        assert_eq!(below("/cam_live2", "/cam_live"), None);
        assert_eq!(below("/other", "/cam_live"), None);
    }
}
