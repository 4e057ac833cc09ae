//! Secrets that cannot leak by accident: no `Serialize`, a `Debug` that prints `***`,
//! and URL redaction for anything that ends up in a log, an MQTT message or an error.

use serde::Deserialize;
use std::fmt;

/// A password or token. The only way to read it is [`Secret::expose`], so every use is greppable.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `url` with `user` and `password` in it, percent-encoded: for the places that must hand a
/// playable URL on (Home Assistant's stream source).
pub fn with_userinfo(url: &str, user: &str, password: &Secret) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username(user);
            let _ = parsed.set_password(Some(password.expose()));
            parsed.into()
        }
        Err(_) => url.to_string(),
    }
}

/// Replaces the password of every `scheme://user:password@` in `text` with `***`, and the value
/// of query parameters that carry one (Reolink's `api.cgi?cmd=Snap&user=admin&password=…`).
///
/// Works on free text (GStreamer error messages quote URLs), not only on a bare URL.
pub fn redact_urls(text: &str) -> String {
    redact_query_passwords(&redact_userinfo(text))
}

/// Query parameters that carry a password in the URLs of real cameras.
const PASSWORD_PARAMS: [&str; 3] = ["password=", "passwd=", "pwd="];

fn redact_query_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['?', '&']) {
        let (head, tail) = rest.split_at(pos + 1);
        out.push_str(head);
        rest = tail;
        let lower = tail.get(..9).unwrap_or(tail).to_ascii_lowercase();
        if let Some(param) = PASSWORD_PARAMS.iter().find(|p| lower.starts_with(**p)) {
            out.push_str(&tail[..param.len()]);
            out.push_str("***");
            let value_end = tail[param.len()..]
                .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
                .map_or(tail.len(), |end| param.len() + end);
            rest = &tail[value_end..];
        }
    }
    out.push_str(rest);
    out
}

fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_percent_encoded_into_the_url() {
        assert_eq!(
            with_userinfo(
                "rtsp://hass.local:8554/nursery_live",
                "homeassistant",
                &Secret::new("r/t@sp:1")
            ),
            "rtsp://homeassistant:r%2Ft%40sp%3A1@hass.local:8554/nursery_live"
        );
        assert_eq!(
            redact_urls(&with_userinfo("rtsp://h/x", "u", &Secret::new("p"))),
            "rtsp://u:***@h/x"
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn passwords_in_urls_are_redacted_inside_free_text() {
        let text =
            "Could not open rtsp://admin:s3cr:et@cam.example:554/h264 (401); retry rtsp://cam/x";
        assert_eq!(
            redact_urls(text),
            "Could not open rtsp://admin:***@cam.example:554/h264 (401); retry rtsp://cam/x"
        );
    }

    #[test]
    fn password_query_parameters_are_redacted() {
        assert_eq!(
            redact_urls(
                "GET http://cam/cgi-bin/api.cgi?cmd=Snap&user=admin&Password=s3cret&rs=x failed"
            ),
            "GET http://cam/cgi-bin/api.cgi?cmd=Snap&user=admin&Password=***&rs=x failed"
        );
        assert_eq!(
            redact_urls("http://cam/snap?pwd=a b"),
            "http://cam/snap?pwd=*** b"
        );
        assert_eq!(redact_urls("what? & why"), "what? & why");
    }

    #[test]
    fn user_without_password_is_kept() {
        assert_eq!(redact_urls("rtsp://admin@cam/x"), "rtsp://admin@cam/x");
    }
}
