//! `ipcam-mqtt demo`: the whole add-on on an embedded default, no camera or broker needed.
//!
//! Starts an embedded MQTT broker (rumqttd) and a synthetic H.264 + G.711 camera, then runs the
//! add-on against them exactly as it would against real ones.

use crate::config::{
    CameraConfig, Config, CryConfig, DEFAULT_SNAPSHOT_QUALITY, HTTP_PORT, MqttConfig, RTSP_PORT,
    ServerConfig, SnapshotConfig, Transport,
};
use crate::testcam::{TestCamera, TestCameraOptions};
use anyhow::Context;
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Port for the add-on's RTSP server.
    #[arg(long, default_value_t = RTSP_PORT)]
    pub rtsp_port: u16,
    /// Port for the add-on's HTTP API (`/api/frame.jpeg`).
    #[arg(long, default_value_t = HTTP_PORT)]
    pub http_port: u16,
    /// First port to try for the embedded MQTT broker.
    #[arg(long, default_value_t = 1883)]
    pub mqtt_port: u16,
    /// A YAMNet .onnx file: turns on cry detection for the demo camera.
    #[arg(long)]
    pub cry_model: Option<std::path::PathBuf>,
}

pub async fn run(options: DemoOptions, cancel: CancellationToken) -> anyhow::Result<()> {
    let mqtt_port = free_port(options.mqtt_port).context("no free port for the embedded broker")?;
    start_broker(mqtt_port)?;
    let camera_url = start_camera()?;
    let data_dir = std::env::temp_dir().join("ipcam-mqtt-demo");
    let config = Config {
        mqtt: MqttConfig {
            host: Some("127.0.0.1".into()),
            port: Some(mqtt_port),
            ..MqttConfig::default()
        },
        rtsp: ServerConfig {
            port: Some(options.rtsp_port),
            ..ServerConfig::rtsp()
        },
        http: ServerConfig {
            port: Some(options.http_port),
            ..ServerConfig::http()
        },
        data_dir: data_dir.clone(),
        cry_model: options
            .cry_model
            .clone()
            .unwrap_or_else(|| data_dir.join(crate::config::CRY_MODEL_FILE)),
        media_dir: data_dir.join("media"),
        webrtc: Default::default(),
        ha_cameras: false,
        ingress_port: None,
        addon_slug: None,
        cameras: vec![CameraConfig {
            id: "demo".into(),
            name: "Demo camera".into(),
            url: camera_url,
            username: None,
            password: None,
            transport: Transport::Tcp,
            h265_to_h264: Default::default(),
            close_after: Duration::from_secs(10),
            start_timeout: Duration::from_secs(10),
            snapshot: SnapshotConfig {
                width: None,
                quality: DEFAULT_SNAPSHOT_QUALITY,
                url: None,
            },
            cry: CryConfig {
                enabled: options.cry_model.is_some(),
                ..CryConfig::default()
            },
            clips: Default::default(),
        }],
    };
    println!();
    println!("ipcam-mqtt demo is running. Try:");
    println!("  ffplay rtsp://127.0.0.1:{}/demo_live", options.rtsp_port);
    println!(
        "  curl -o demo.jpg 'http://127.0.0.1:{}/api/frame.jpeg?src=demo'",
        options.http_port
    );
    println!("  mosquitto_sub -h 127.0.0.1 -p {mqtt_port} -t 'ipcam/#' -v");
    println!("  mosquitto_pub -h 127.0.0.1 -p {mqtt_port} -t ipcam/demo/live_stream/command -m ON");
    println!("Press Ctrl+C to stop.");
    println!();
    crate::app::run(config, cancel).await
}

fn free_port(first: u16) -> Option<u16> {
    (first..first.saturating_add(100))
        .find(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).is_ok())
}

fn start_broker(port: u16) -> anyhow::Result<()> {
    let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
        "id": 0,
        "router": {
            "id": 0,
            "max_connections": 100,
            "max_outgoing_packet_count": 200,
            "max_segment_size": 10_485_760,
            "max_segment_count": 10
        },
        "v4": {
            "1": {
                "name": "demo",
                "listen": format!("127.0.0.1:{port}"),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 60000,
                    "max_payload_size": 8_388_608,
                    "max_inflight_count": 100,
                    "dynamic_filters": true
                }
            }
        }
    }))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })?;
    tracing::info!("embedded MQTT broker on 127.0.0.1:{port}");
    Ok(())
}

fn start_camera() -> anyhow::Result<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-camera".into())
        .spawn(
            move || match TestCamera::start(&TestCameraOptions::default()) {
                Ok(camera) => {
                    let _ = tx.send(Ok(camera.url()));
                    gstreamer::glib::MainLoop::new(None, false).run();
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
        )?;
    let url = rx.recv().context("the demo camera thread died")??;
    tracing::info!("synthetic demo camera (H.264 + G.711 A-law) at {url}");
    Ok(url)
}
