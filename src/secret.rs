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

/// Replaces the password of every `scheme://user:password@` in `text` with `***`.
///
/// Works on free text (GStreamer error messages quote URLs), not only on a bare URL.
pub fn redact_urls(text: &str) -> String {
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
    fn user_without_password_is_kept() {
        assert_eq!(redact_urls("rtsp://admin@cam/x"), "rtsp://admin@cam/x");
    }
}
