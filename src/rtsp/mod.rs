//! The RTSP edge: a thin payloader media per viewer over the camera hubs.

pub mod factory;
pub mod limits;
pub mod server;
