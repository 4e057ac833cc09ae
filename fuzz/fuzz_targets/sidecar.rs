//! Any sidecar file on the media share (which other programs and users can write): read as a
//! clip we could have made, with the id of its file name, or skipped; never a panic. What is
//! read is then shown as MQTT shows a clip, which must not panic either.
#![no_main]
use ipcam_mqtt::events::store::parse_sidecar;
use libfuzzer_sys::fuzz_target;

const ID: &str = "cry-20261204-061500-000";

fuzz_target!(|data: &[u8]| {
    if let Some(meta) = parse_sidecar(ID, data) {
        assert_eq!(meta.event_id, ID);
        let _ = humantime::format_rfc3339_seconds(meta.started_at).to_string();
        let _ = serde_json::to_string(&meta).unwrap();
    }
});
