//! Any query string of `/api/frame.jpeg`: a request or a clear error, never a panic.
#![no_main]
use ipcam_mqtt::http::frame::parse_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    match parse_query(query) {
        Ok(request) => assert!(!request.camera.is_empty()),
        Err(error) => assert!(error.len() < 200, "{error}"),
    }
});
