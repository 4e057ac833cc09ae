//! A server reachable beyond loopback that the user left without credentials gets generated
//! ones, kept in the data directory, so nothing reaches it anonymously by accident. In the
//! add-on every server is reachable (Home Assistant comes over the Supervisor's network);
//! outside it, one is when the user sets a non-loopback `bind`.

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

/// Gives each named server that needs them the credentials kept for it, generating them the
/// first time. `in_addon`: every server is reachable, whatever its `bind`.
pub fn fill_in(
    servers: &mut [(&str, &mut ServerConfig)],
    data_dir: &Path,
    in_addon: bool,
) -> anyhow::Result<()> {
    let wanted: Vec<usize> = (0..servers.len())
        .filter(|&i| needs_generated(servers[i].1, in_addon))
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
            "{name}: no credentials set, so using generated ones (user {}; kept in {})",
            pair.username,
            path.display()
        );
    }
    if changed {
        std::fs::create_dir_all(data_dir)?;
        write_private(&path, &serde_json::to_vec_pretty(&kept)?)?;
    }
    Ok(())
}

/// Reachable beyond loopback, no credentials set, and anonymous access not chosen.
fn needs_generated(server: &ServerConfig, in_addon: bool) -> bool {
    let reachable = in_addon || server.bind.is_some_and(|addr| !addr.is_loopback());
    reachable && server.credentials().is_none() && !server.allow_anonymous
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
        fill_in(
            &mut [("rtsp", &mut rtsp), ("http", &mut http)],
            dir.path(),
            true,
        )
        .unwrap();
        let (user, password) = rtsp.credentials().unwrap();
        assert_eq!(user, USERNAME);
        assert_eq!(password.expose().len(), 32);
        assert_eq!(http.credentials().unwrap().1.expose(), "mine");
        assert!(
            !rtsp.bind_address().is_loopback(),
            "served to Home Assistant's network"
        );

        let mut again = ServerConfig::rtsp();
        fill_in(&mut [("rtsp", &mut again)], dir.path(), true).unwrap();
        assert_eq!(
            again.credentials().unwrap().1,
            password,
            "kept across restarts"
        );

        let mut anonymous = ServerConfig {
            allow_anonymous: true,
            ..ServerConfig::rtsp()
        };
        fill_in(&mut [("rtsp", &mut anonymous)], dir.path(), true).unwrap();
        assert!(
            anonymous.credentials().is_none(),
            "the user's choice stands"
        );
        let mode = std::fs::metadata(dir.path().join(FILE)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn outside_the_add_on_only_a_server_bound_beyond_loopback_gets_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let bound = |addr: [u8; 4]| ServerConfig {
            bind: Some(addr.into()),
            ..ServerConfig::rtsp()
        };
        let mut default = ServerConfig::rtsp();
        let mut loopback = bound([127, 0, 0, 1]);
        let mut lan = bound([0, 0, 0, 0]);
        let mut open = ServerConfig {
            allow_anonymous: true,
            ..bound([0, 0, 0, 0])
        };
        fill_in(
            &mut [
                ("default", &mut default),
                ("loopback", &mut loopback),
                ("lan", &mut lan),
                ("open", &mut open),
            ],
            dir.path(),
            false,
        )
        .unwrap();
        assert!(default.credentials().is_none());
        assert!(default.bind_address().is_loopback());
        assert!(loopback.credentials().is_none());
        assert!(lan.credentials().is_some());
        assert!(open.credentials().is_none());
    }
}
