//! Any SDP offer a browser (or anyone) POSTs: our reading of it, and the public candidates
//! added to an answer, never panic or leak. The HTTP and WebSocket APIs take the offer as
//! text, so only UTF-8 reaches the parser, as here.
#![no_main]
use ipcam_mqtt::webrtc::sdp::{add_public_candidates, parse_offer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    // As in the add-on, GStreamer is up before any offer arrives.
    init: gstreamer::init().unwrap(),
    |data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = parse_offer(text);
        let public = ["203.0.113.7".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let _ = add_public_candidates(text, &public);
    }
);
