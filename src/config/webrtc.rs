//! `webrtc:`: ICE servers and candidates for viewing from outside the home network.

use super::*;

/// WebRTC's ICE servers, for viewing from outside the home network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebrtcConfig {
    /// `stun://host:port`.
    pub stun_server: Option<String>,
    /// `turn://user:password@host:port`: it carries a password.
    pub turn_servers: Vec<Secret>,
    /// Public addresses announced beside the host candidates (a forwarded router port).
    pub candidates: Vec<String>,
    /// The UDP ports ICE may use, so they can be forwarded; any port when unset.
    pub udp_ports: Option<(u16, u16)>,
}

/// `webrtc:` as written, in the browser's `RTCIceServer` shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebrtc {
    ice_servers: Vec<RawIceServer>,
    /// For TURN URLs written as plain strings (the add-on's options cannot nest deeper).
    turn_username: Option<String>,
    turn_credential: Option<Secret>,
    candidates: Vec<String>,
    udp_ports: Option<String>,
}

/// An ICE server as the browser's `RTCIceServer`, or a bare URL.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawIceServer {
    Url(String),
    Server(IceServer),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IceServer {
    urls: Vec<String>,
    username: Option<String>,
    credential: Option<Secret>,
}

pub(super) fn webrtc(raw: RawWebrtc, problems: &mut Vec<Problem>) -> WebrtcConfig {
    let mut config = WebrtcConfig::default();
    let servers = raw.ice_servers.into_iter().map(|server| match server {
        RawIceServer::Url(url) => IceServer {
            urls: vec![url],
            username: raw.turn_username.clone(),
            credential: raw.turn_credential.clone(),
        },
        RawIceServer::Server(server) => server,
    });
    for (i, server) in servers.enumerate() {
        for url in &server.urls {
            let field = format!("webrtc.ice_servers[{i}].urls");
            let mut problem = |message: String| {
                problems.push(Problem {
                    field: field.clone(),
                    message,
                })
            };
            let (scheme, address) = url.split_once(':').unwrap_or(("", url));
            let address = address.trim_start_matches("//");
            match scheme {
                "stun" if config.stun_server.is_none() => {
                    config.stun_server = Some(format!("stun://{address}"))
                }
                "stun" => problem(format!("{url}: only one STUN server is used; keep one")),
                "turn" | "turns" => match (&server.username, &server.credential) {
                    (Some(user), Some(credential)) => {
                        let enc = |s: &str| {
                            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                        };
                        config.turn_servers.push(Secret::new(format!(
                            "{scheme}://{}:{}@{}",
                            enc(user),
                            enc(credential.expose()),
                            address.split('?').next().unwrap_or(address)
                        )));
                    }
                    _ => problem(format!("{url} needs a username and a credential")),
                },
                _ => problem(format!("\"{url}\" is not a stun: or turn: URL")),
            }
        }
    }
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: format!("webrtc.{field}"),
            message,
        })
    };
    if let Some(text) = &raw.udp_ports {
        let range = text
            .split_once('-')
            .and_then(|(low, high)| Some((low.trim().parse().ok()?, high.trim().parse().ok()?)))
            .filter(|(low, high): &(u16, u16)| *low >= 1024 && low <= high);
        match range {
            Some(range) => config.udp_ports = Some(range),
            None => problem(
                "udp_ports",
                format!("\"{text}\" is not a port range like \"50000-50100\" (ports 1024-65535)"),
            ),
        }
    }
    for (i, candidate) in raw.candidates.iter().enumerate() {
        let host = candidate.trim();
        if host.is_empty()
            || host.contains([':', '/', ' ']) && host.parse::<std::net::IpAddr>().is_err()
        {
            problem(
                &format!("candidates[{i}]"),
                format!(
                    "\"{candidate}\" is not an address; write an IP or a host name, without a port"
                ),
            );
        } else {
            config.candidates.push(host.to_string());
        }
    }
    if !config.candidates.is_empty() && raw.udp_ports.is_none() {
        problem(
            "candidates",
            "needs webrtc.udp_ports: the ports to forward from the router to this host".into(),
        );
    }
    config
}
