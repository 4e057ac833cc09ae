//! The RTSP port: our own live server (`live`) accepts every connection, and hands those that
//! ask for a recorded event to gst-rtsp-server, which runs on its own named thread with its own
//! GLib main context and does not listen itself.
//!
//! Every `/<camera>_live` and `/<camera>_event` path is known at start, so a client never gets a
//! 404 while a camera warms up. gst-rtsp-server's thread pool is unbounded because the default
//! single thread lets one slow client block every other for 20 s.

use super::asked_paths::AskedPaths;
use super::auth::Login;
use super::live::{Handoff, Live, LiveMount};
use crate::config::ServerConfig;
use crate::metrics::LoginFailures;
use crate::rtsp::playback::{EventFactory, EventMount, event_element_name, event_path};
use gstreamer::glib;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

/// How often sessions of clients that vanished without TEARDOWN are reaped.
const SESSION_CLEANUP: Duration = Duration::from_secs(2);

/// The running server; dropping it stops accepting, and stops the event server's thread.
pub struct RtspServer {
    server: gst_rtsp_server::RTSPServer,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
    local_addr: SocketAddr,
    asked: Arc<AskedPaths>,
    live: Arc<Live>,
    accepting: tokio::task::JoinHandle<()>,
}

/// `/nursery_live` for camera `nursery`.
pub fn live_path(camera: &str) -> String {
    format!("/{camera}_live")
}

impl RtspServer {
    /// Listens on the RTSP port; must be called within the tokio runtime.
    pub fn start(
        config: &ServerConfig,
        mounts: Vec<LiveMount>,
        event_mounts: Vec<EventMount>,
        logins: Arc<LoginFailures>,
    ) -> anyhow::Result<RtspServer> {
        let bind = config.bind_address();
        let port = config.port();
        let listener = std::net::TcpListener::bind((bind, port))
            .map_err(|e| anyhow::anyhow!("cannot listen on RTSP {bind}:{port}: {e}"))?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let login = config.credentials().map(|(user, password)| Login {
            user: user.to_string(),
            password: password.expose().to_string(),
            failures: logins,
        });
        let event_paths = event_mounts.iter().map(|m| event_path(&m.camera)).collect();
        let live = Live::new(mounts, event_paths, login.as_ref());
        let asked = Arc::new(AskedPaths::default());
        let asked_in_server = asked.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || {
                let context = glib::MainContext::new();
                let result = context.with_thread_default(|| {
                    let main_loop = glib::MainLoop::new(Some(&context), false);
                    match build(login, event_mounts, &asked_in_server, &context) {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok((server, main_loop.clone())));
                            main_loop.run();
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                if let Err(e) = result {
                    tracing::error!("RTSP server thread: {e}");
                }
            })?;
        let (server, main_loop) = ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the RTSP server thread died while starting"))??;
        let events = server.clone();
        let handoff =
            Arc::new(move |handed: Handoff, peer: SocketAddr| hand_over(&events, handed, peer));
        let accepting = tokio::spawn(live.clone().serve(listener, handoff));
        Ok(RtspServer {
            server,
            main_loop,
            thread: Some(thread),
            local_addr,
            asked,
            live,
            accepting,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Disconnects every viewer of one camera (MQTT OFF). Returns how many were disconnected.
    pub fn disconnect_viewers(&self, camera: &str) -> usize {
        self.live.disconnect(camera)
    }

    /// Stops every playback of a camera's event stream.
    pub fn stop_event_playback(&self, camera: &str) -> usize {
        self.disconnect_media(&event_element_name(camera), &event_path(camera))
    }

    /// Closes the clients playing the media named `name`, and those that asked for its `path`
    /// and have no session yet.
    fn disconnect_media(&self, name: &str, path: &str) -> usize {
        let belongs = |session: &gst_rtsp_server::RTSPSession| {
            !session
                .filter(Some(
                    &mut |_, session_media: &gst_rtsp_server::RTSPSessionMedia| match session_media
                        .media()
                    {
                        Some(media) if media.element().name() == name => {
                            gst_rtsp_server::RTSPFilterResult::Ref
                        }
                        _ => gst_rtsp_server::RTSPFilterResult::Keep,
                    },
                ))
                .is_empty()
        };
        let clients = self.server.client_filter(Some(&mut |_, client| {
            let sessions = client.session_filter(Some(&mut |_, session| {
                if belongs(session) {
                    gst_rtsp_server::RTSPFilterResult::Ref
                } else {
                    gst_rtsp_server::RTSPFilterResult::Keep
                }
            }));
            if sessions.is_empty() && !self.asked.asked_for(client, path) {
                gst_rtsp_server::RTSPFilterResult::Keep
            } else {
                gst_rtsp_server::RTSPFilterResult::Ref
            }
        }));
        if let Some(pool) = self.server.session_pool() {
            pool.filter(Some(&mut |_, session| {
                if belongs(session) {
                    gst_rtsp_server::RTSPFilterResult::Remove
                } else {
                    gst_rtsp_server::RTSPFilterResult::Keep
                }
            }));
        }
        for client in &clients {
            client.close();
        }
        clients.len()
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.accepting.abort();
        self.main_loop.quit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bound_send_buffer(client: &gst_rtsp_server::RTSPClient) {
    if !set_client_socket_option(
        client,
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        super::live::CLIENT_SEND_BUFFER,
    ) {
        tracing::debug!("cannot bound a client's send buffer");
    }
}

/// Turns off Nagle for a client. A frame's last RTP packet is a small write; with Nagle it waits
/// for the ACK of the packets before it, which the viewer's delayed ACK holds for up to 40 ms.
pub fn send_without_delay(client: &gst_rtsp_server::RTSPClient) {
    if !set_client_socket_option(client, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1) {
        tracing::debug!("cannot turn off Nagle for a client");
    }
}

/// `setsockopt` on the client's connection; false when there is no socket or it refused.
fn set_client_socket_option(
    client: &gst_rtsp_server::RTSPClient,
    level: i32,
    option: i32,
    value: i32,
) -> bool {
    // SAFETY: the connection and its socket are owned by the client, which outlives this call;
    // the getters return borrowed pointers (transfer none) that we only pass on.
    unsafe {
        let connection = gst_rtsp_server::ffi::gst_rtsp_client_get_connection(client.as_ptr());
        if connection.is_null() {
            return false;
        }
        let socket = gstreamer_rtsp::ffi::gst_rtsp_connection_get_write_socket(connection);
        if socket.is_null() {
            return false;
        }
        let mut error = std::ptr::null_mut();
        let set = gstreamer_rtsp_server::gio::ffi::g_socket_set_option(
            socket, level, option, value, &mut error,
        ) != 0;
        gstreamer_rtsp_server::glib::ffi::g_clear_error(&mut error);
        set
    }
}

/// Gives a connection that asked for an event stream to gst-rtsp-server, with what it sent.
fn hand_over(server: &gst_rtsp_server::RTSPServer, handed: Handoff, peer: SocketAddr) {
    let given = handed
        .stream
        .into_std()
        .map_err(|e| e.to_string())
        .and_then(|stream| {
            gstreamer_rtsp_server::gio::Socket::from_fd(std::os::fd::OwnedFd::from(stream))
                .map_err(|e| e.to_string())
        })
        .and_then(|socket| {
            let sent = String::from_utf8_lossy(&handed.sent);
            server
                .transfer_connection(
                    socket,
                    &peer.ip().to_string(),
                    peer.port().into(),
                    Some(&sent),
                )
                .map_err(|e| e.to_string())
        });
    if let Err(e) = given {
        tracing::warn!("cannot hand an event viewer from {peer} to the event server: {e}");
    }
}

fn build(
    login: Option<Login>,
    event_mounts: Vec<EventMount>,
    asked: &Arc<AskedPaths>,
    context: &glib::MainContext,
) -> anyhow::Result<gst_rtsp_server::RTSPServer> {
    let server = gst_rtsp_server::RTSPServer::new();
    if let Some(pool) = server.thread_pool() {
        pool.set_max_threads(-1);
    }
    let role = "viewer";
    if let Some(login) = &login {
        let token = gst_rtsp_server::RTSPToken::builder()
            .field(gst_rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
            .build();
        let auth = super::auth::ThrottledAuth::new(login, &token);
        server.set_auth(Some(&auth));
    }
    // A slow client must back up into its own media, where the hub drops whole frames until the
    // next keyframe (and counts them), instead of gst-rtsp-server dropping random RTP packets,
    // and it must do so within a second rather than after megabytes of kernel buffer.
    server.connect_client_connected(|_, client| {
        client.set_drop_backlog(false);
        bound_send_buffer(client);
        send_without_delay(client);
    });
    super::limits::ConnectionLimits::install(&server, context);
    asked.install(&server);
    let mount_points = server
        .mount_points()
        .ok_or_else(|| anyhow::anyhow!("RTSP server without mount points"))?;
    for mount in event_mounts {
        let path = event_path(&mount.camera);
        let factory: gst_rtsp_server::RTSPMediaFactory = EventFactory::new(mount).upcast();
        if login.is_some() {
            factory.add_role_from_structure(
                &gstreamer::Structure::builder(role)
                    .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
                    .field(gst_rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
                    .build(),
            );
        }
        mount_points.add_factory(&path, factory);
    }
    let weak = server.downgrade();
    glib::source::timeout_source_new(SESSION_CLEANUP, None, glib::Priority::DEFAULT, move || {
        match weak.upgrade().and_then(|s| s.session_pool()) {
            Some(pool) => {
                pool.cleanup();
                glib::ControlFlow::Continue
            }
            None => glib::ControlFlow::Break,
        }
    })
    .attach(Some(context));
    Ok(server)
}
