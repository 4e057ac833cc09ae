//! What a user reads when a port cannot be had: one line naming the option to change.

use std::net::SocketAddr;

/// Why listening on `address` failed, naming `option` (e.g. `rtsp.port`).
pub fn bind_error(address: SocketAddr, option: &str, error: &std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "port {} is already in use by another program (go2rtc and Frigate use 8554 and 1984 too): set {option} to a free port in the add-on's options",
            address.port()
        )
    } else {
        anyhow::anyhow!("cannot listen on {address}: {error} (set {option} to a free port)")
    }
}

/// Checks that `address` is free before a server that cannot say why its bind failed
/// (gst-rtsp-server's `attach` only answers "failed") takes it.
pub fn check_free(address: SocketAddr, option: &str) -> anyhow::Result<()> {
    if address.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(address)
        .map(drop)
        .map_err(|e| bind_error(address, option, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_the_option_to_change() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = check_free(address, "rtsp.port").unwrap_err().to_string();
        assert!(error.contains("already in use"), "{error}");
        assert!(error.contains("set rtsp.port"), "{error}");
        assert!(!error.contains('\n'));
        drop(taken);
        assert!(check_free(address, "rtsp.port").is_ok());
    }
}
