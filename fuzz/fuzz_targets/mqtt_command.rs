//! Any topic and payload from the broker: a command, a clear error, never a panic.
#![no_main]
use ipcam_mqtt::config::MqttConfig;
use ipcam_mqtt::mqtt::{command, topics::Topics};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The topic is what precedes the first NUL (topics cannot hold one), the payload the rest.
    let (topic, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"ipcam/cam/live_stream/command"[..], data),
    };
    let Ok(topic) = std::str::from_utf8(topic) else {
        return;
    };
    let topics = Topics::new(&MqttConfig::default());
    match command::parse(&topics, |camera| camera == "cam", topic, payload) {
        Ok(addressed) => assert_eq!(addressed.camera, "cam"),
        Err(error) => assert!(error.to_string().len() < 400, "a one-line warning: {error}"),
    }
    let _ = topics.parse_camera_status(topic);
});
