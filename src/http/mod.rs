//! The HTTP API: `/api/frame.jpeg` for Home Assistant's Generic camera and go2rtc-style tools,
//! `/api/clips/<camera>/<event_id>.mp4` for event clips, WebRTC signalling (`/api/webrtc`),
//! `/api/streams`, and the viewer page at `/`.
//!
//! Same security rule as the RTSP server: with credentials set, every request needs Basic auth
//! (no localhost bypass); without them, the server listens on loopback only unless the user chose
//! otherwise. The one exception is a listener of its own on the ingress port the Supervisor
//! assigns: there, requests from Home Assistant's ingress proxy (172.30.32.2, with the
//! `X-Ingress-Path` it adds), which authenticated the user already, need no password. The port
//! the LAN uses never skips authentication.

pub mod clips;
pub mod frame;
pub mod metrics;
pub mod mse;
pub mod streams;
#[cfg(feature = "webrtc")]
pub mod webrtc;

pub use clips::clips_path;
pub use streams::CameraEntry;

use crate::config::ServerConfig;
use crate::events::store::ClipStore;
use crate::mse::MseCamera;
use crate::rate_limit::RateLimit;
use crate::secret::Secret;
use crate::snapshot::Snapshotter;
#[cfg(feature = "webrtc")]
use crate::webrtc::session::WebrtcCamera;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the handlers can reach.
pub struct Api {
    pub cameras: Vec<Arc<Snapshotter>>,
    pub clips: Vec<Arc<ClipStore>>,
    #[cfg(feature = "webrtc")]
    pub webrtc: Vec<Arc<WebrtcCamera>>,
    pub mse: Vec<Arc<MseCamera>>,
    pub streams: Vec<CameraEntry>,
    /// Each camera's snapshot mode and interval, for what a dashboard's still image may cost.
    pub settings: Arc<crate::settings::Settings>,
    credentials: Option<(String, Secret)>,
    /// HA's proxy fetches at most a couple of stills a second per camera.
    pub snapshot_limit: RateLimit,
    /// A page opening a camera makes one offer, a reconnect after a stall another; the burst
    /// leaves room for a household opening one camera at once through HA's ingress.
    pub offer_limit: RateLimit,
    /// Places for clip downloads streaming at once.
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// Wrong passwords per client address: a few tries, then one a minute.
    login_limit: RateLimit,
    /// Wrong passwords counted for `/metrics` (RTSP's too).
    pub logins: Arc<crate::metrics::LoginFailures>,
}

/// Everything the API serves, per camera.
pub struct Sources {
    pub snapshotters: Vec<Arc<Snapshotter>>,
    pub clips: Vec<Arc<ClipStore>>,
    #[cfg(feature = "webrtc")]
    pub webrtc: Vec<Arc<WebrtcCamera>>,
    pub mse: Vec<Arc<MseCamera>>,
    pub streams: Vec<CameraEntry>,
    pub settings: Arc<crate::settings::Settings>,
    pub logins: Arc<crate::metrics::LoginFailures>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// `http.port`: credentials always, when set.
    Direct,
    /// The Supervisor's ingress port: its proxy is trusted; anyone else gives credentials.
    Ingress,
}

/// Home Assistant's ingress proxy: it authenticates users itself.
const HA_INGRESS: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 30, 32, 2));

const VIEWER_PAGE: &str = include_str!("viewer.html");

pub struct HttpServer {
    pub local_addr: SocketAddr,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `http.port`, and on `ingress_port` (the Supervisor's) when given.
    pub async fn start(
        config: &ServerConfig,
        ingress_port: Option<u16>,
        sources: Sources,
        cancel: CancellationToken,
    ) -> anyhow::Result<HttpServer> {
        let api = Arc::new(Api {
            cameras: sources.snapshotters,
            clips: sources.clips,
            #[cfg(feature = "webrtc")]
            webrtc: sources.webrtc,
            mse: sources.mse,
            streams: sources.streams,
            settings: sources.settings,
            credentials: config
                .credentials()
                .map(|(user, password)| (user.to_string(), password.clone())),
            snapshot_limit: RateLimit::new("snapshots", 5.0, 10),
            offer_limit: RateLimit::new("WebRTC offers", 2.0, 20),
            downloads: clips::downloads(),
            login_limit: RateLimit::for_logins(),
            logins: sources.logins,
        });
        let address = SocketAddr::new(config.bind_address(), config.port());
        let listener = bind(address, "http.port").await?;
        let local_addr = listener.local_addr()?;
        let mut tasks = vec![serve(listener, router(&api, Gate::Direct), cancel.clone())];
        if let Some(port) = ingress_port {
            let address = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
            let listener = bind(address, "the ingress port (the Supervisor's)").await?;
            tracing::info!("Home Assistant's sidebar (ingress) is served on port {port}");
            tasks.push(serve(listener, router(&api, Gate::Ingress), cancel));
        }
        Ok(HttpServer { local_addr, tasks })
    }
}

async fn bind(address: SocketAddr, option: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| crate::listen::bind_error(address, option, &e))
}

fn router(api: &Arc<Api>, gate: Gate) -> Router {
    webrtc_routes(Router::new())
        .route("/api/frame.jpeg", get(frame::handler))
        .route("/api/still.jpeg", get(frame::still_handler))
        .route("/api/clips/{camera}/{file}", get(clips::handler))
        .route("/api/streams", get(streams::streams))
        .route("/api/stream.mp4", get(mse::stream_mp4))
        .route("/metrics", get(metrics::metrics))
        .route("/api", get(streams::about))
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    VIEWER_PAGE,
                )
            }),
        )
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "no such endpoint; try /api/frame.jpeg?src=<camera> or /api/clips/<camera>/<event_id>.mp4",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            (api.clone(), gate),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(gate, same_origin))
        .with_state(api.clone())
}

/// A client must send a request's headers within this long, the first one included; a
/// connection that never does (or dribbles them) is closed.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Connections held at once, in all and from one address. A household needs a handful; more
/// is a client gone wrong, and each costs memory.
const MAX_CONNECTIONS: usize = 256;
const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;

/// Serves `app` on `listener` one hyper connection per client, with a header-read timeout and
/// caps on connections (in all, and per address), which `axum::serve` does not offer.
fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let all = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_address: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = all.clone().try_acquire_owned() else {
                tracing::debug!("HTTP: {MAX_CONNECTIONS} connections open; refusing {peer}");
                continue;
            };
            let held = Held::take(&per_address, peer.ip());
            let Some(held) = held else {
                tracing::debug!(
                    "HTTP: {} already holds {MAX_CONNECTIONS_PER_ADDRESS} connections; refusing another",
                    peer.ip()
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(
                app.clone()
                    .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let _permits = (permit, held);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => {}
                    _ = cancel.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            });
        }
    })
}

/// One connection's place in its address's count, given back when dropped.
struct Held {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    address: std::net::IpAddr,
}

impl Held {
    fn take(
        counts: &Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
        address: std::net::IpAddr,
    ) -> Option<Held> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(address).or_default();
        if *count >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Held {
            counts: counts.clone(),
            address,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.address);
            }
        }
    }
}

#[cfg(feature = "webrtc")]
fn webrtc_routes(router: Router<Arc<Api>>) -> Router<Arc<Api>> {
    router
        .route(
            "/api/webrtc",
            axum::routing::post(webrtc::offer)
                .layer(axum::extract::DefaultBodyLimit::max(webrtc::MAX_OFFER)),
        )
        .route("/api/webrtc/{id}", axum::routing::delete(webrtc::close))
        .route("/api/ws", get(webrtc::socket))
}

#[cfg(not(feature = "webrtc"))]
fn webrtc_routes(router: Router<Arc<Api>>) -> Router<Arc<Api>> {
    router
}

/// An error as the API answers it: its kind gives the status, its message the body.
pub fn error_response(error: &crate::error::Error) -> Response {
    use crate::error::ErrorKind;
    let status = match error.kind() {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        // The camera refused us, not the client: a gateway's error.
        ErrorKind::Auth => StatusCode::BAD_GATEWAY,
        ErrorKind::Transient => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, error.message())
}

/// A one-line plain-text answer: every error body is one clear line.
pub fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut line = message.into();
    line.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line,
    )
        .into_response()
}

/// `429` with the seconds to wait, for a client over its rate limit.
/// Whole seconds to wait, at least one.
fn retry_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// What a client over the limit is told, on HTTP or on the WebSocket.
pub fn too_many_message(wait: std::time::Duration) -> String {
    format!("too many requests; try again in {} s", retry_seconds(wait))
}

pub fn too_many(wait: std::time::Duration) -> Response {
    let seconds = retry_seconds(wait);
    let mut response = plain(StatusCode::TOO_MANY_REQUESTS, too_many_message(wait));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    response
}

/// Refuses what a page on another site asks a browser to send here: with cached Basic
/// credentials (or DNS rebinding against loopback) it could open live video. Browsers name the
/// page's origin in `Origin`; it must be this server, as the client reached it.
async fn same_origin(
    State(gate): State<Gate>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let behind_ingress = gate == Gate::Ingress && peer.ip() == HA_INGRESS;
    if is_cross_origin(headers, behind_ingress) {
        return plain(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused: open the viewer from this server's own address",
        );
    }
    next.run(request).await
}

/// Pure: whether the request's `Origin` names another host than the one it was sent to (`Host`,
/// or behind Home Assistant's ingress proxy the `X-Forwarded-Host` it sets).
fn is_cross_origin(headers: &HeaderMap, behind_ingress: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(origin_host) = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            let host = u.host_str()?.to_ascii_lowercase();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
    else {
        return true; // `null` (a sandboxed page or a file) or garbage
    };
    let same = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|host| {
                let host = host.trim().to_ascii_lowercase();
                host == origin_host
                    || host.strip_suffix(":80") == Some(&origin_host)
                    || host.strip_suffix(":443") == Some(&origin_host)
            })
    };
    !(same("host") || (behind_ingress && same("x-forwarded-host")))
}

async fn authenticate(
    State((api, gate)): State<(Arc<Api>, Gate)>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let from_ingress = gate == Gate::Ingress
        && peer.ip() == HA_INGRESS
        && request.headers().contains_key("x-ingress-path");
    let Some((user, password)) = &api.credentials else {
        return next.run(request).await;
    };
    if from_ingress {
        return next.run(request).await;
    }
    let tried = request.headers().contains_key(header::AUTHORIZATION);
    let now = std::time::Instant::now();
    // While an address is over its wrong tries, even the right password waits: a guesser must
    // not learn which try was right.
    if tried && let Some(wait) = api.login_limit.waiting(peer.ip(), LOGIN, now) {
        return too_many(wait);
    }
    if is_authorized(request.headers(), user, password) {
        return next.run(request).await;
    }
    if tried {
        // Counted only when a password was given: a browser's first, bare request is not a try.
        crate::metrics::count(&api.logins.http, 1);
        let _ = api.login_limit.check(peer.ip(), LOGIN, now);
    }
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "a username and password are required",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"ipcam-mqtt\""),
    );
    response
}

/// The rate limit's key for wrong passwords (it is per address and key).
const LOGIN: &str = "the HTTP API";

fn is_authorized(headers: &HeaderMap, user: &str, password: &Secret) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{}", password.expose());
    constant_time_eq(&decoded, expected.as_bytes())
}

/// Takes as long for a near miss as for a wild guess.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_errors_kind_says_whose_fault_it_is() {
        use crate::error::{Error, ErrorKind};
        for (kind, status) in [
            (ErrorKind::Invalid, 400),
            (ErrorKind::Unsupported, 415),
            (ErrorKind::Auth, 502),
            (ErrorKind::Transient, 503),
            (ErrorKind::Internal, 500),
        ] {
            let error = Error::new(kind, "boom").context("camera rtsp://u:secret@cam/x");
            let response = error_response(&error);
            assert_eq!(response.status().as_u16(), status, "{kind:?}");
            assert_eq!(error.message(), "camera rtsp://u:***@cam/x: boom");
        }
    }

    #[test]
    fn pages_of_other_sites_are_cross_origin() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let same = headers(&[
            ("host", "192.168.1.20:1984"),
            ("origin", "http://192.168.1.20:1984"),
        ]);
        assert!(!is_cross_origin(&same, false));
        let no_origin = headers(&[("host", "192.168.1.20:1984")]);
        assert!(
            !is_cross_origin(&no_origin, false),
            "tools and players send none"
        );
        let evil = headers(&[
            ("host", "192.168.1.20:1984"),
            ("origin", "http://evil.example"),
        ]);
        assert!(is_cross_origin(&evil, false));
        let null = headers(&[("host", "127.0.0.1:1984"), ("origin", "null")]);
        assert!(is_cross_origin(&null, false));
        let ingress = headers(&[
            ("host", "172.30.32.1:63000"),
            ("x-forwarded-host", "homeassistant.local:8123"),
            ("origin", "http://homeassistant.local:8123"),
        ]);
        assert!(!is_cross_origin(&ingress, true));
        assert!(
            is_cross_origin(&ingress, false),
            "only the ingress proxy may forward a host"
        );
        let default_port = headers(&[("host", "ha.example:443"), ("origin", "https://ha.example")]);
        assert!(!is_cross_origin(&default_port, false));
    }

    #[test]
    fn only_the_right_basic_credentials_pass() {
        let password = Secret::new("s3cret");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        let good = base64::engine::general_purpose::STANDARD.encode("viewer:s3cret");
        let bad = base64::engine::general_purpose::STANDARD.encode("viewer:s3creT");
        assert!(is_authorized(
            &with(&format!("Basic {good}")),
            "viewer",
            &password
        ));
        assert!(!is_authorized(
            &with(&format!("Basic {bad}")),
            "viewer",
            &password
        ));
        assert!(!is_authorized(&with("Basic !!!"), "viewer", &password));
        assert!(!is_authorized(&HeaderMap::new(), "viewer", &password));
    }
}
