//! MQTT over TLS (`mqtt.tls`): the broker's certificate is checked against `mqtt.ca_file`, or
//! the system's trusted authorities, for the name in `mqtt.host`. There is no "skip the check"
//! switch and no fallback to plain MQTT: either would hand the broker password to whoever sits
//! in between.

use crate::config::MqttConfig;
use rumqttc::{TlsConfiguration, Transport};
use std::sync::Arc;

/// The transport `config` asks for: plain TCP, or TLS with its trust anchors loaded. Fails
/// with a line naming the option when they cannot be.
pub fn transport(config: &MqttConfig) -> Result<Transport, String> {
    if !config.tls {
        return Ok(Transport::Tcp);
    }
    let roots = match &config.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read mqtt.ca_file {}: {e}", path.display()))?;
            certificates(&pem).map_err(|e| format!("mqtt.ca_file {}: {e}", path.display()))?
        }
        None => system_roots()?,
    };
    let mut store = rustls::RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(roots);
    if added == 0 {
        return Err(match &config.ca_file {
            Some(path) => format!(
                "mqtt.ca_file {} holds no certificate that can be used",
                path.display()
            ),
            None => "the system has no trusted certificate authorities: set mqtt.ca_file".into(),
        });
    }
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(client),
    )))
}

/// The certificates in a PEM file. Pure, tested directly.
fn certificates(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let certificates = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certificates)
}

fn system_roots() -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    rustls_native_certs::load_native_certs().map_err(|e| {
        format!("cannot load the system's certificate authorities ({e}): set mqtt.ca_file")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_what_it_lacks() {
        assert!(
            certificates(b"just text\n")
                .unwrap_err()
                .contains("BEGIN CERTIFICATE")
        );
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(certificates(key_only).is_err());
    }

    #[test]
    fn plain_unless_tls_is_on() {
        let config = MqttConfig::default();
        assert!(matches!(transport(&config), Ok(Transport::Tcp)));
        assert_eq!(config.port(), 1883);
        let tls = MqttConfig {
            tls: true,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..MqttConfig::default()
        };
        assert_eq!(tls.port(), 8883);
        let Err(error) = transport(&tls) else {
            panic!("a missing ca_file was accepted");
        };
        assert!(
            error.contains("cannot read mqtt.ca_file /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
