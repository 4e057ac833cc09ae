//! Any configuration text (YAML, or the add-on's options.json): a config or a list of
//! problems, never a panic.
#![no_main]
use ipcam_mqtt::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(problems) = Config::parse(text, std::path::Path::new("/data")) {
        assert!(!problems.to_string().is_empty());
    }
});
