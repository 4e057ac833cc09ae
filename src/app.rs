//! Wires the add-on together: hubs and actors per camera, the RTSP server, the MQTT bridge,
//! and an ordered shutdown.

use crate::audio::task::{CryState, CryTask};
use crate::camera::actor::CameraActor;
use crate::camera::demand::Demand;
use crate::camera::{CameraHandle, ViewerControl};
use crate::config::{CameraConfig, Config, ServerConfig};
use crate::events::recorder::Recorder;
use crate::events::store::ClipStore;
use crate::events::task::{EventsTask, selected_clip};
use crate::http::HttpServer;
use crate::http::{CameraEntry, Sources, clips_path};
use crate::media::hub::Hub;
use crate::media::pipeline::MediaClock;
use crate::mqtt::client::BridgedCamera;
use crate::mqtt::states::CameraLinks;
use crate::mse::MseCamera;
use crate::rtsp::live::LiveMount;
use crate::rtsp::playback::{EventMount, event_path};
use crate::rtsp::server::{RtspServer, live_path};
use crate::settings::Settings;
use crate::snapshot::{SnapshotTask, Snapshotter};
#[cfg(feature = "webrtc")]
use crate::webrtc::session::WebrtcCamera;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long cameras get to close cleanly on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

impl ViewerControl for RtspServer {
    fn disconnect_viewers(&self, camera: &str) -> usize {
        RtspServer::disconnect_viewers(self, camera)
    }

    fn stop_event_playback(&self, camera: &str) -> usize {
        RtspServer::stop_event_playback(self, camera)
    }
}

/// Retained MQTT attributes are readable by every MQTT client and every Home Assistant user, and
/// kept by the recorder, so `stream_source` carries the RTSP credentials only when the user asks
/// (`rtsp.credentials_in_mqtt`). Home Assistant's own camera entries get them privately.
fn with_stream_credentials(mut links: CameraLinks, rtsp: &ServerConfig) -> CameraLinks {
    if let Some((user, password)) = rtsp.credentials().filter(|_| rtsp.credentials_in_mqtt) {
        links.stream_source = crate::secret::with_userinfo(&links.stream_source, user, password);
        links.event_source = crate::secret::with_userinfo(&links.event_source, user, password);
    }
    links
}

/// Who may connect, in the start-up log; anonymous access to the network is a warning.
fn log_listening(what: &str, addr: std::net::SocketAddr, server: &ServerConfig, section: &str) {
    let access = server.access_summary(section);
    if server.credentials().is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "{what} listening on {addr} ({access}): anyone who can reach this port can use it"
        );
    } else {
        tracing::info!("{what} listening on {addr} ({access})");
    }
}

/// One camera's parts, built from its config before anything runs: what its RTSP mounts, its
/// actor and its tasks share.
struct CameraParts {
    config: CameraConfig,
    hub: Arc<Hub>,
    demand: Demand,
    store: Arc<ClipStore>,
    recorder: Arc<Recorder>,
    /// How many clients play its event stream.
    playing: tokio::sync::watch::Receiver<usize>,
}

impl CameraParts {
    /// The parts of `camera`, with the mounts the RTSP server serves them at.
    fn build(
        camera: &CameraConfig,
        media_dir: &std::path::Path,
        settings: &Arc<Settings>,
    ) -> anyhow::Result<(CameraParts, LiveMount, EventMount)> {
        let hub = Hub::new();
        let demand = Demand::new();
        let store = ClipStore::open(media_dir, &camera.id, &camera.clips)?;
        let recorder = Recorder::new(
            &camera.id,
            &camera.clips,
            store.clone(),
            hub.clone(),
            demand.clone(),
        );
        let (playing_tx, playing) = tokio::sync::watch::channel(0);
        let mount = LiveMount {
            camera: camera.id.clone(),
            hub: hub.clone(),
            demand: demand.clone(),
            start_timeout: camera.start_timeout,
        };
        let (settings, selected_store, id) = (settings.clone(), store.clone(), camera.id.clone());
        let event_mount = EventMount {
            camera: camera.id.clone(),
            store: store.clone(),
            selected: Arc::new(move || selected_clip(&settings, &selected_store, &id)),
            playing: playing_tx,
        };
        let parts = CameraParts {
            config: camera.clone(),
            hub,
            demand,
            store,
            recorder,
            playing,
        };
        Ok((parts, mount, event_mount))
    }
}

/// A camera once its actor runs.
struct RunningCamera {
    parts: CameraParts,
    handle: CameraHandle,
    snapshotter: Arc<Snapshotter>,
    /// Where the API finds the cry sensor, once cry detection has started.
    cry_for_api: Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<CryState>>>,
}

pub async fn run(mut config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    // Before anything starts: a taken port stops the add-on with one line, not half-started.
    for (server, option) in [(&config.rtsp, "rtsp.port"), (&config.http, "http.port")] {
        let address = std::net::SocketAddr::new(server.bind_address(), server.port());
        crate::listen::check_free(address, option)?;
    }
    crate::ha::supervisor::find_broker(&mut config.mqtt).await?;
    let mqtt_transport = crate::mqtt::tls::transport(&config.mqtt).map_err(anyhow::Error::msg)?;
    crate::credentials::fill_in(
        &mut [("rtsp", &mut config.rtsp), ("http", &mut config.http)],
        &config.data_dir,
        crate::ha::in_addon(),
    )?;
    let settings = Arc::new(Settings::open(
        &config.data_dir,
        config.cameras.iter().map(|c| c.id.as_str()),
    )?);
    tracing::info!("settings are kept in {}", config.data_dir.display());
    let clock = MediaClock::new();
    crate::events::store::remove_unconfigured(
        &config.media_dir,
        &config
            .cameras
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
    );
    let mut mounts = Vec::new();
    let mut event_mounts = Vec::new();
    let mut parts = Vec::new();
    for camera in &config.cameras {
        let (camera, mount, event_mount) =
            CameraParts::build(camera, &config.media_dir, &settings)?;
        mounts.push(mount);
        event_mounts.push(event_mount);
        parts.push(camera);
    }
    tracing::info!("event clips are kept in {}", config.media_dir.display());
    let logins = Arc::new(crate::metrics::LoginFailures::default());
    let server = Arc::new(RtspServer::start(
        &config.rtsp,
        mounts,
        event_mounts,
        logins.clone(),
    )?);
    let addr = server.local_addr();
    let host = config.rtsp.public_host();
    log_listening("RTSP server", addr, &config.rtsp, "rtsp");
    for camera in &config.cameras {
        tracing::info!(
            "  rtsp://{host}:{}{}  ← {} (events: {})",
            addr.port(),
            live_path(&camera.id),
            camera.name,
            event_path(&camera.id)
        );
    }
    if config.cameras.is_empty() {
        tracing::warn!("no cameras are configured; add some under `cameras:`");
    }

    let mut tasks = Vec::new();
    let cameras: Vec<RunningCamera> = parts
        .into_iter()
        .map(|parts| {
            let (handle, task) = CameraActor {
                config: parts.config.clone(),
                hub: parts.hub.clone(),
                demand: parts.demand.clone(),
                clock: clock.clone(),
                viewers: server.clone() as Arc<dyn ViewerControl>,
                cancel: cancel.child_token(),
            }
            .spawn();
            tasks.push(task);
            let snapshotter = Arc::new(Snapshotter::new(
                &parts.config,
                parts.hub.status(),
                parts.demand.clone(),
                handle.state(),
            ));
            RunningCamera {
                parts,
                handle,
                snapshotter,
                cry_for_api: Arc::default(),
            }
        })
        .collect();
    #[cfg(feature = "webrtc")]
    let webrtc: Vec<Arc<WebrtcCamera>> = cameras
        .iter()
        .map(|camera| {
            let parts = &camera.parts;
            WebrtcCamera::new(
                &parts.config.id,
                parts.hub.clone(),
                parts.demand.clone(),
                clock.clone(),
                parts.config.start_timeout,
                config.webrtc.clone(),
                parts.config.h265_to_h264,
            )
        })
        .collect();
    // MSE viewers share WebRTC's transcoder: one encoder per camera, whoever watches.
    #[cfg(feature = "webrtc")]
    let transcoders: Vec<_> = cameras
        .iter()
        .zip(&webrtc)
        .map(|(camera, webrtc)| {
            (camera.parts.config.h265_to_h264 != crate::config::H265ToH264::Never)
                .then(|| webrtc.transcoder().clone())
        })
        .collect();
    #[cfg(not(feature = "webrtc"))]
    let transcoders: Vec<Option<std::convert::Infallible>> = cameras.iter().map(|_| None).collect();
    let mse = cameras
        .iter()
        .zip(transcoders)
        .map(|(camera, transcoder)| {
            let parts = &camera.parts;
            MseCamera::new(
                &parts.config.id,
                parts.hub.clone(),
                parts.demand.clone(),
                parts.config.start_timeout,
                transcoder,
            )
        })
        .collect();
    let streams = cameras
        .iter()
        .map(|camera| CameraEntry {
            id: camera.parts.config.id.clone(),
            name: camera.parts.config.name.clone(),
            state: camera.handle.state(),
            counters: camera.parts.hub.status().counters().clone(),
            cry: camera.cry_for_api.clone(),
        })
        .collect();
    let http = HttpServer::start(
        &config.http,
        config.ingress_port,
        Sources {
            snapshotters: cameras.iter().map(|c| c.snapshotter.clone()).collect(),
            clips: cameras.iter().map(|c| c.parts.store.clone()).collect(),
            #[cfg(feature = "webrtc")]
            webrtc,
            mse,
            streams,
            settings: settings.clone(),
            logins: logins.clone(),
        },
        cancel.clone(),
    )
    .await?;
    let http_host = config.http.public_host();
    log_listening("HTTP API", http.local_addr, &config.http, "http");
    // The URLs Home Assistant reaches each camera by, without credentials (MQTT adds the RTSP ones).
    let links = |camera: &str| CameraLinks {
        stream_source: format!("rtsp://{host}:{}{}", addr.port(), live_path(camera)),
        still_image_url: format!(
            "http://{http_host}:{}/api/still.jpeg?src={camera}",
            http.local_addr.port(),
        ),
        clips_url: format!(
            "http://{http_host}:{}{}",
            http.local_addr.port(),
            clips_path(camera)
        ),
        event_source: format!("rtsp://{host}:{}{}", addr.port(), event_path(camera)),
        configuration_url: match &config.addon_slug {
            Some(slug) => format!("homeassistant://hassio/ingress/{slug}"),
            None => format!("http://{http_host}:{}/", http.local_addr.port()),
        },
    };
    let mut bridged = Vec::new();
    // Room for a burst of events from every camera while the bridge reconnects.
    let (cry_notices, cry_notices_rx) = tokio::sync::mpsc::channel(64);
    for RunningCamera {
        parts,
        handle,
        snapshotter,
        cry_for_api,
    } in cameras
    {
        let camera = &parts.config;
        let (snapshot, task) = SnapshotTask {
            snapshotter,
            settings: settings.clone(),
            cancel: cancel.child_token(),
        }
        .spawn();
        tasks.push(task);
        let (events, task) = EventsTask {
            camera: camera.id.clone(),
            post_roll: camera.clips.post_roll,
            recorder: parts.recorder,
            store: parts.store,
            settings: settings.clone(),
            snapshot: snapshot.clone(),
            viewers: server.clone() as Arc<dyn ViewerControl>,
            playing: parts.playing,
            counters: parts.hub.status().counters().clone(),
            cancel: cancel.child_token(),
        }
        .spawn();
        tasks.push(task);
        let cry = camera.cry.enabled.then(|| {
            let (sensitivity_tx, sensitivity) = tokio::sync::watch::channel(
                settings
                    .camera(&camera.id)
                    .cry_sensitivity
                    .unwrap_or(camera.cry.sensitivity),
            );
            let (state, task) = CryTask {
                camera: camera.id.clone(),
                config: camera.cry.clone(),
                model: config.cry_model.clone(),
                hub: parts.hub.clone(),
                demand: parts.demand.clone(),
                camera_state: handle.state(),
                snapshot: snapshot.clone(),
                notices: cry_notices.clone(),
                events: events.clone(),
                sensitivity,
                settings: settings.clone(),
                cancel: cancel.child_token(),
            }
            .spawn();
            tasks.push(task);
            let _ = cry_for_api.set(state.clone());
            (state, sensitivity_tx)
        });
        let (cry, cry_sensitivity) = cry.unzip();
        bridged.push(BridgedCamera {
            handle,
            snapshot,
            cry,
            cry_sensitivity,
            events,
            name: camera.name.clone(),
            links: with_stream_credentials(links(&camera.id), &config.rtsp),
        });
    }
    if let Some(api) = crate::ha::cameras::CoreApi::from_env() {
        let credentials = |server: &crate::config::ServerConfig| {
            server
                .credentials()
                .map(|(user, password)| (user.to_string(), password.clone()))
        };
        // Turned off, the list is empty and the entries made before are removed.
        let wanted = if config.ha_cameras {
            config
                .cameras
                .iter()
                .map(|camera| {
                    let links = links(&camera.id);
                    crate::ha::cameras::WantedCamera {
                        id: camera.id.clone(),
                        name: camera.name.clone(),
                        stream_source: links.stream_source,
                        stream_credentials: credentials(&config.rtsp),
                        still_image_url: links.still_image_url,
                        still_credentials: credentials(&config.http),
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        tasks.push(tokio::spawn(crate::ha::cameras::keep_in_step(
            api,
            wanted,
            config.data_dir.clone(),
            cancel.clone(),
        )));
    }
    let mqtt_config = config.mqtt.clone();
    let mqtt_cancel = cancel.clone();
    let mqtt = tokio::spawn(async move {
        crate::mqtt::client::run(
            &mqtt_config,
            mqtt_transport,
            bridged,
            cry_notices_rx,
            mqtt_cancel,
        )
        .await
    });

    cancel.cancelled().await;
    tracing::info!("shutting down");
    let cameras_done = futures_util::future::join_all(tasks);
    if tokio::time::timeout(SHUTDOWN_GRACE, cameras_done)
        .await
        .is_err()
    {
        tracing::warn!("some cameras did not close within {SHUTDOWN_GRACE:?}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), mqtt).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::future::join_all(http.tasks),
    )
    .await;
    tokio::task::spawn_blocking(move || drop(server)).await?;
    tracing::info!("stopped");
    Ok(())
}
