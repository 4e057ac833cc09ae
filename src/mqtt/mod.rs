//! The MQTT control plane: topics, discovery, command parsing and the client.

pub mod client;
pub mod command;
pub mod discovery;
pub mod states;
pub mod tls;
pub mod topics;
