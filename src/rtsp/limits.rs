//! Limits on RTSP connections that are not viewers, so half-sent requests (slowloris) cannot
//! pile up a thread each: a connection must send a complete request within
//! [`FIRST_REQUEST_TIMEOUT`], one without a stream must not idle longer than
//! [`IDLE_WITHOUT_STREAM`] after its last request, one address holds at most
//! [`MAX_PER_ADDRESS`] connections, and the server [`MAX_CONNECTIONS`] in all.

use gstreamer::glib;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock;

/// Every real client (ffmpeg, VLC, HA, Frigate) sends OPTIONS or DESCRIBE at once.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Far above what one host needs: HA, an NVR recording every camera and players behind one
/// NAT, or the benchmark's 32 cameras × 2 viewers from loopback.
pub const MAX_PER_ADDRESS: usize = 256;
/// Every client asks for its stream right after OPTIONS or DESCRIBE; one that then says nothing
/// and holds no session is gone wrong (a viewer's session has its own keep-alive timeout).
pub const IDLE_WITHOUT_STREAM: Duration = Duration::from_secs(15);
/// All connections at once: each costs a thread.
pub const MAX_CONNECTIONS: usize = 1024;

/// Open connections per remote address. Pure, tested directly.
#[derive(Debug, Default)]
pub struct Admission {
    open: HashMap<String, usize>,
    total: usize,
}

impl Admission {
    /// Counts a new connection; false when its address, or the server, already holds the most
    /// it may.
    pub fn admit(&mut self, address: &str) -> bool {
        self.total += 1;
        let open = self.open.entry(address.to_string()).or_default();
        *open += 1;
        *open <= MAX_PER_ADDRESS && self.total <= MAX_CONNECTIONS
    }

    pub fn leave(&mut self, address: &str) {
        self.total = self.total.saturating_sub(1);
        if let Some(open) = self.open.get_mut(address) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(address);
            }
        }
    }
}

/// How often connections are checked against the limits.
const SWEEP: Duration = Duration::from_secs(1);

/// What is known of one open connection.
struct Tracked {
    address: String,
    since: std::time::Instant,
    requested: Arc<AtomicBool>,
    /// Milliseconds after `since` of the last request.
    last_request_ms: Arc<AtomicU64>,
    admitted: bool,
}

/// Applies the limits to the clients of one server. Clients are closed by the server itself
/// (its client filter), never behind its back, so none is left half-closed.
#[derive(Default)]
pub struct ConnectionLimits {
    admission: Mutex<Admission>,
    clients: Mutex<HashMap<usize, Tracked>>,
}

impl ConnectionLimits {
    /// Starts the sweep on the server's main context.
    pub fn install(server: &gst_rtsp_server::RTSPServer, context: &glib::MainContext) {
        let limits = Arc::new(Self::default());
        let watching = limits.clone();
        server.connect_client_connected(move |_, client| watching.watch(client));
        let weak = server.downgrade();
        glib::source::timeout_source_new(SWEEP, None, glib::Priority::DEFAULT, move || {
            let Some(server) = weak.upgrade() else {
                return glib::ControlFlow::Break;
            };
            server.client_filter(Some(&mut |_, client| limits.verdict(client)));
            glib::ControlFlow::Continue
        })
        .attach(Some(context));
    }

    fn watch(self: &Arc<Self>, client: &gst_rtsp_server::RTSPClient) {
        let address = remote_address(client).unwrap_or_default();
        let admitted = lock(&self.admission).admit(&address);
        let requested = Arc::new(AtomicBool::new(false));
        let last_request_ms = Arc::new(AtomicU64::new(0));
        let since = std::time::Instant::now();
        let mark = || {
            let (requested, last) = (requested.clone(), last_request_ms.clone());
            move |_: &gst_rtsp_server::RTSPClient, _: &gst_rtsp_server::RTSPContext| {
                requested.store(true, Ordering::Relaxed);
                last.store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
                gstreamer_rtsp::RTSPStatusCode::Ok
            }
        };
        client.connect_pre_options_request(mark());
        client.connect_pre_describe_request(mark());
        client.connect_pre_setup_request(mark());
        client.connect_pre_play_request(mark());
        client.connect_pre_get_parameter_request(mark());
        let key = client.as_ptr() as usize;
        let limits = Arc::downgrade(self);
        client.connect_closed(move |_| {
            let Some(limits) = limits.upgrade() else {
                return;
            };
            if let Some(gone) = lock(&limits.clients).remove(&key) {
                lock(&limits.admission).leave(&gone.address);
            }
        });
        lock(&self.clients).insert(
            key,
            Tracked {
                address,
                since,
                requested,
                last_request_ms,
                admitted,
            },
        );
    }

    fn verdict(&self, client: &gst_rtsp_server::RTSPClient) -> gst_rtsp_server::RTSPFilterResult {
        let clients = lock(&self.clients);
        let Some(tracked) = clients.get(&(client.as_ptr() as usize)) else {
            return gst_rtsp_server::RTSPFilterResult::Keep;
        };
        let idle = tracked
            .since
            .elapsed()
            .saturating_sub(Duration::from_millis(
                tracked.last_request_ms.load(Ordering::Relaxed),
            ));
        let reason = if !tracked.admitted {
            "it is one connection too many"
        } else if !tracked.requested.load(Ordering::Relaxed)
            && tracked.since.elapsed() >= FIRST_REQUEST_TIMEOUT
        {
            "it sent no complete request"
        } else if idle >= IDLE_WITHOUT_STREAM && client.session_filter(None).is_empty() {
            "it asked for no stream and went quiet"
        } else {
            return gst_rtsp_server::RTSPFilterResult::Keep;
        };
        tracing::debug!(
            "closing an RTSP connection from {}: {reason}",
            tracked.address
        );
        gst_rtsp_server::RTSPFilterResult::Remove
    }
}

/// The client's remote IP address.
pub fn remote_address(client: &gst_rtsp_server::RTSPClient) -> Option<String> {
    // SAFETY: the connection is owned by the client, which outlives this call; both getters
    // return borrowed pointers (transfer none), and the string is copied at once.
    unsafe {
        let connection = gst_rtsp_server::ffi::gst_rtsp_client_get_connection(client.as_ptr());
        if connection.is_null() {
            return None;
        }
        let ip = gstreamer_rtsp::ffi::gst_rtsp_connection_get_ip(connection);
        if ip.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(ip).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_the_limit_and_leaving_frees_a_place() {
        let mut admission = Admission::default();
        for _ in 0..MAX_PER_ADDRESS {
            assert!(admission.admit("192.0.2.1"));
        }
        assert!(!admission.admit("192.0.2.1"));
        assert!(
            admission.admit("192.0.2.2"),
            "other addresses are not affected"
        );
        admission.leave("192.0.2.1");
        admission.leave("192.0.2.1");
        assert!(admission.admit("192.0.2.1"));
        for _ in 0..=MAX_PER_ADDRESS {
            admission.leave("192.0.2.1");
        }
        assert!(
            !admission.open.contains_key("192.0.2.1"),
            "nothing left behind"
        );
    }
}
