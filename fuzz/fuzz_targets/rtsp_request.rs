//! Whatever a client sends the RTSP port, read as the live server reads it: requests one after
//! another, their paths and echoed URIs, the Transport header and a Digest answer. Nothing
//! panics, and every request read takes bytes, so a connection always moves on.
#![no_main]
use ipcam_mqtt::rtsp::live::digest::DigestLogin;
use ipcam_mqtt::rtsp::live::message::{Incoming, parse};
use ipcam_mqtt::rtsp::live::transport::choose;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let login = DigestLogin::new("viewer", "s3cret");
    let mut input = data;
    while let Ok(incoming) = parse(input) {
        let used = match incoming {
            Incoming::Incomplete => break,
            Incoming::Interleaved(used) => used,
            Incoming::Request(request, used) => {
                let _ = (request.path(), request.base_uri(), request.cseq());
                if let Some(transport) = request.header("Transport") {
                    let _ = choose(transport, 1);
                }
                let _ = login.verify(&request.method, request.header("Authorization"), "nonce");
                used
            }
        };
        assert!(used > 0 && used <= input.len());
        input = &input[used..];
    }
});
