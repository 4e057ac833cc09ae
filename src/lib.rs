//! ipcam-mqtt: RTSP IP cameras as Home Assistant devices, re-streamed on demand.

pub mod app;
pub mod audio;
pub mod camera;
pub mod choices;
pub mod config;
pub mod credentials;
#[cfg(feature = "demo")]
pub mod demo;
pub mod error;
pub mod events;
pub mod ha;
pub mod http;
pub mod listen;
pub mod media;
pub mod metrics;
pub mod mqtt;
pub mod mse;
pub mod rate_limit;
pub mod rtsp;
pub mod secret;
pub mod settings;
pub mod snapshot;
pub mod testcam;
#[cfg(feature = "webrtc")]
pub mod webrtc;
