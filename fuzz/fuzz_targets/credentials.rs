//! Any `/data/credentials.json`: usable logins, or an error saying it is damaged; never a panic,
//! and never a login with an empty password.
#![no_main]
use ipcam_mqtt::credentials::parse_kept;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kept) = parse_kept(data) {
        // What is read is written back as it was read.
        let again = serde_json::to_vec(&kept).unwrap();
        assert_eq!(parse_kept(&again).map(|k| k.len()), Ok(kept.len()));
    }
});
