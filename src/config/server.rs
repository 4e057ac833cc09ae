//! `rtsp:` and `http:`: the servers the add-on listens with, under the same security rules.

use super::*;

/// A server we listen on (RTSP, HTTP): the same security rules for both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `None` means the server's default port (see [`ServerConfig::port`]).
    pub port: Option<u16>,
    /// Set by the section, not the user: 8554 for `rtsp`, 1984 for `http`.
    #[serde(skip)]
    pub default_port: u16,
    /// Address to listen on. Without credentials the default is loopback only (see [`ServerConfig::bind_address`]).
    pub bind: Option<IpAddr>,
    /// Host name that Home Assistant uses to reach this server, for `stream_source` and `still_image_url`.
    pub public_host: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Serve every interface without credentials; the user's explicit choice.
    pub allow_anonymous: bool,
    /// `rtsp` only: put the user and password into the `stream_source` attributes on MQTT,
    /// where every MQTT client, every Home Assistant user and the recorder can read them.
    pub credentials_in_mqtt: bool,
}

/// The RTSP re-streaming server's default port.
pub const RTSP_PORT: u16 = 8554;

/// The HTTP API's default port: go2rtc's, so tools built for it work.
pub const HTTP_PORT: u16 = 1984;

impl ServerConfig {
    pub fn rtsp() -> Self {
        Self::with_default_port(RTSP_PORT)
    }

    pub fn http() -> Self {
        Self::with_default_port(HTTP_PORT)
    }

    fn with_default_port(default_port: u16) -> Self {
        Self {
            default_port,
            ..Self::default()
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.default_port)
    }

    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        match (&self.username, &self.password) {
            (Some(user), Some(pass)) => Some((user.as_str(), pass)),
            _ => None,
        }
    }

    /// Security by default: a server without credentials listens on loopback only,
    /// unless the user set `bind` or `allow_anonymous` on purpose.
    pub fn bind_address(&self) -> IpAddr {
        match self.bind {
            Some(addr) => addr,
            None if self.credentials().is_some() || self.allow_anonymous => {
                IpAddr::from([0, 0, 0, 0])
            }
            None => IpAddr::from([127, 0, 0, 1]),
        }
    }

    /// The host name in the URLs we hand out: as set, else the address we listen on, else (on
    /// every interface) this machine's host name, which in the add-on is the container's, the
    /// name Home Assistant reaches it by.
    pub fn public_host(&self) -> String {
        let bound = self.bind_address();
        match &self.public_host {
            Some(host) => host.clone(),
            None if bound.is_unspecified() => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "127.0.0.1".into()),
            None => bound.to_string(),
        }
    }

    /// One line for the start-up log: who may connect.
    pub fn access_summary(&self, section: &str) -> String {
        if self.credentials().is_some() {
            "Digest auth required".into()
        } else if self.bind_address().is_loopback() {
            format!(
                "no credentials set, so loopback only; set {section}.username/password to serve the network"
            )
        } else {
            format!("anonymous access: {section}.allow_anonymous is set")
        }
    }
}

pub(super) fn check_server(server: &ServerConfig, section: &str, problems: &mut Vec<Problem>) {
    if server.username.is_some() != server.password.is_some() {
        problems.push(Problem {
            field: format!("{section}.username"),
            message: "username and password must be set together".into(),
        });
    }
    if server.port == Some(0) {
        problems.push(Problem {
            field: format!("{section}.port"),
            message: "must be 1 to 65535".into(),
        });
    }
    if server.credentials_in_mqtt && section != "rtsp" {
        problems.push(Problem {
            field: format!("{section}.credentials_in_mqtt"),
            message: "only rtsp has stream URLs on MQTT".into(),
        });
    }
}
