//! In the add-on, a server the user left without credentials gets generated ones, kept under
//! `/data`, and listens on every interface: Home Assistant reaches it over the Supervisor's
//! network, and nothing reaches it anonymously.

use crate::config::ServerConfig;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::Path;

const FILE: &str = "credentials.json";
const USERNAME: &str = "homeassistant";

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Pair {
    username: String,
    password: String,
}

/// Gives each named server without credentials (and not left anonymous or bound by the user)
/// the credentials kept for it, generating them the first time.
pub fn fill_in(servers: &mut [(&str, &mut ServerConfig)], data_dir: &Path) -> anyhow::Result<()> {
    let wanted: Vec<usize> = (0..servers.len())
        .filter(|&i| {
            let server = &servers[i].1;
            server.username.is_none()
                && server.password.is_none()
                && !server.allow_anonymous
                && server.bind.is_none()
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let path = data_dir.join(FILE);
    let mut kept: BTreeMap<String, Pair> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut changed = false;
    for i in wanted {
        let (name, server) = &mut servers[i];
        let pair = kept.entry(name.to_string()).or_insert_with(|| {
            changed = true;
            Pair {
                username: USERNAME.into(),
                password: random_password(),
            }
        });
        server.username = Some(pair.username.clone());
        server.password = Some(Secret::new(pair.password.clone()));
        tracing::info!(
            "{name}: using the credentials generated for Home Assistant (kept in {})",
            path.display()
        );
    }
    if changed {
        std::fs::create_dir_all(data_dir)?;
        write_private(&path, &serde_json::to_vec_pretty(&kept)?)?;
    }
    Ok(())
}

/// 24 random bytes from the kernel, URL-safe: 32 characters.
fn random_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = random.read_exact(&mut bytes);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_kept_and_given_only_where_none_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut rtsp = ServerConfig::rtsp();
        let mut http = ServerConfig {
            username: Some("me".into()),
            password: Some(Secret::new("mine")),
            ..ServerConfig::http()
        };
        fill_in(&mut [("rtsp", &mut rtsp), ("http", &mut http)], dir.path()).unwrap();
        let (user, password) = rtsp.credentials().unwrap();
        assert_eq!(user, USERNAME);
        assert_eq!(password.expose().len(), 32);
        assert_eq!(http.credentials().unwrap().1.expose(), "mine");
        assert!(
            !rtsp.bind_address().is_loopback(),
            "served to Home Assistant's network"
        );

        let mut again = ServerConfig::rtsp();
        fill_in(&mut [("rtsp", &mut again)], dir.path()).unwrap();
        assert_eq!(
            again.credentials().unwrap().1,
            password,
            "kept across restarts"
        );

        let mut anonymous = ServerConfig {
            allow_anonymous: true,
            ..ServerConfig::rtsp()
        };
        fill_in(&mut [("rtsp", &mut anonymous)], dir.path()).unwrap();
        assert!(
            anonymous.credentials().is_none(),
            "the user's choice stands"
        );
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}
