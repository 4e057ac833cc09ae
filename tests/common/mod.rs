//! Real parts for the end-to-end tests: a Mosquitto broker, synthetic cameras served by
//! gst-rtsp-server in their own process, the add-on binary itself, and real RTSP clients.
#![allow(dead_code)]

pub mod browser;
pub mod supervisor;
#[cfg(feature = "webrtc")]
pub mod whep;

mod addon;
mod media;
mod mqtt;
mod process;
mod rtsp;
mod scripted_camera;

// One `use common::*` gives a test everything; a test that needs no raw RTSP leaves one unused.
#[allow(unused_imports)]
pub use {addon::*, media::*, mqtt::*, process::*, rtsp::*, scripted_camera::*};
