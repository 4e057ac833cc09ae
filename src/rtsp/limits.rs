//! Limits on RTSP connections that are not viewers, so half-sent requests (slowloris) cannot
//! pile up a thread each: a connection must send a complete request within
//! [`FIRST_REQUEST_TIMEOUT`], and one address holds at most [`MAX_PER_ADDRESS`] connections.

use gstreamer::glib;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lock;

/// Every real client (ffmpeg, VLC, HA, Frigate) sends OPTIONS or DESCRIBE at once.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Far above what one host needs: HA, an NVR recording every camera and players behind one
/// NAT, or the benchmark's 32 cameras × 2 viewers from loopback.
pub const MAX_PER_ADDRESS: usize = 256;

/// Open connections per remote address. Pure, tested directly.
#[derive(Debug, Default)]
pub struct Admission {
    open: HashMap<String, usize>,
}

impl Admission {
    /// Counts a new connection; false when its address already holds the most it may.
    pub fn admit(&mut self, address: &str) -> bool {
        let open = self.open.entry(address.to_string()).or_default();
        *open += 1;
        *open <= MAX_PER_ADDRESS
    }

    pub fn leave(&mut self, address: &str) {
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
        let mark = |requested: &Arc<AtomicBool>| {
            let requested = requested.clone();
            move |_: &gst_rtsp_server::RTSPClient, _: &gst_rtsp_server::RTSPContext| {
                requested.store(true, Ordering::Relaxed);
                gstreamer_rtsp::RTSPStatusCode::Ok
            }
        };
        client.connect_pre_options_request(mark(&requested));
        client.connect_pre_describe_request(mark(&requested));
        client.connect_pre_setup_request(mark(&requested));
        client.connect_pre_get_parameter_request(mark(&requested));
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
                since: std::time::Instant::now(),
                requested,
                admitted,
            },
        );
    }

    fn verdict(&self, client: &gst_rtsp_server::RTSPClient) -> gst_rtsp_server::RTSPFilterResult {
        let clients = lock(&self.clients);
        let Some(tracked) = clients.get(&(client.as_ptr() as usize)) else {
            return gst_rtsp_server::RTSPFilterResult::Keep;
        };
        let reason = if !tracked.admitted {
            "it is one connection too many from its address"
        } else if !tracked.requested.load(Ordering::Relaxed)
            && tracked.since.elapsed() >= FIRST_REQUEST_TIMEOUT
        {
            "it sent no complete request"
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
fn remote_address(client: &gst_rtsp_server::RTSPClient) -> Option<String> {
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
