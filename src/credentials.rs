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
pub struct Pair {
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
    let mut kept = read_kept(&path)?;
    let mut changed = false;
    for i in wanted {
        let (name, server) = &mut servers[i];
        let pair = match kept.entry(name.to_string()) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                changed = true;
                entry.insert(Pair {
                    username: USERNAME.into(),
                    password: random_password()?,
                })
            }
        };
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

/// The kept pairs. A file that is there but unreadable stops the start with what to do: a new
/// password made silently would lock out every client that has the old one.
fn read_kept(path: &Path) -> anyhow::Result<BTreeMap<String, Pair>> {
    match std::fs::read(path) {
        Ok(bytes) => parse_kept(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is damaged ({e}); fix it, or delete it to generate new credentials (clients must then be given them)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// The pairs in the file's bytes, each a usable login: a user name that a Basic or Digest
/// header can carry, and a password that is not empty.
pub fn parse_kept(bytes: &[u8]) -> Result<BTreeMap<String, Pair>, String> {
    let kept: BTreeMap<String, Pair> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    for (server, pair) in &kept {
        let usable_name = !pair.username.is_empty()
            && !pair
                .username
                .chars()
                .any(|c| c == ':' || c == '"' || c.is_control());
        if !usable_name || pair.password.is_empty() {
            return Err(format!("the {server} login is not usable"));
        }
    }
    Ok(kept)
}

/// 24 random bytes from the kernel (getrandom), URL-safe: 32 characters. No randomness is an
/// error, never a weak password.
fn random_password() -> anyhow::Result<String> {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `bytes`.
        let got = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if got < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            anyhow::bail!("no randomness for a generated password: {error}");
        }
        filled += got as usize;
    }
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Mode 0600, written whole or not at all (a temporary file renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("json.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
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

    #[test]
    fn a_kept_login_must_be_usable() {
        let kept = |json: &str| parse_kept(json.as_bytes());
        assert!(kept(r#"{"rtsp": {"username": "homeassistant", "password": "x"}}"#).is_ok());
        for unusable in [
            r#"{"rtsp": {"username": "homeassistant", "password": ""}}"#,
            r#"{"rtsp": {"username": "", "password": "x"}}"#,
            r#"{"rtsp": {"username": "a:b", "password": "x"}}"#,
            r#"{"http": {"username": "a\nb", "password": "x"}}"#,
        ] {
            assert!(
                kept(unusable).is_err_and(|e| e.contains("not usable")),
                "{unusable}"
            );
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_not_new_passwords() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"rtsp\": {\"username\": ").unwrap();
        let mut rtsp = ServerConfig::rtsp();
        let error = fill_in(&mut [("rtsp", &mut rtsp)], dir.path(), true)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is damaged"), "{error}");
        assert!(
            error.contains("delete it to generate new credentials"),
            "{error}"
        );
        assert!(rtsp.credentials().is_none());
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            b"{\"rtsp\": {\"username\": ",
            "the file is left for the user"
        );
    }

    #[test]
    fn generated_passwords_differ_and_are_not_a_constant() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_ne!(a, "A".repeat(32));
    }
}
