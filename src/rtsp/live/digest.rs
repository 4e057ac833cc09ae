//! RTSP Digest logins (RFC 2617, as RTSP clients speak it). Pure: headers in, a verdict out.
//! Digest only, as before: the password never crosses the network.

use md5::{Digest as _, Md5};

const REALM: &str = "ipcam-mqtt";

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a request's `Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// None given: the client learns the nonce from the 401 (not a wrong try).
    Missing,
    Wrong,
    Right,
}

/// The one login the live streams accept.
pub struct DigestLogin {
    user: String,
    /// MD5(user:realm:password): the password itself is not kept.
    ha1: String,
}

impl DigestLogin {
    pub fn new(user: &str, password: &str) -> Self {
        DigestLogin {
            user: user.to_string(),
            ha1: md5_hex(&format!("{user}:{REALM}:{password}")),
        }
    }

    /// The `WWW-Authenticate` header for a 401 with `nonce`.
    pub fn challenge(nonce: &str) -> String {
        format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\"")
    }

    /// Checks `authorization` for a request made with `method`, against the connection's `nonce`.
    pub fn verify(&self, method: &str, authorization: Option<&str>, nonce: &str) -> Verdict {
        let Some(params) = authorization.and_then(|a| a.trim().strip_prefix("Digest ")) else {
            return match authorization {
                None => Verdict::Missing,
                Some(_) => Verdict::Wrong,
            };
        };
        let params = parameters(params);
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (Some(user), Some(their_nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return Verdict::Wrong;
        };
        if user != self.user || their_nonce != nonce || get("realm").is_some_and(|r| r != REALM) {
            return Verdict::Wrong;
        }
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = match (get("qop"), get("nc"), get("cnonce")) {
            (Some(qop), Some(nc), Some(cnonce)) => {
                md5_hex(&format!("{}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}", self.ha1))
            }
            _ => md5_hex(&format!("{}:{nonce}:{ha2}", self.ha1)),
        };
        if expected.eq_ignore_ascii_case(response) {
            Verdict::Right
        } else {
            Verdict::Wrong
        }
    }
}

/// `a="b", c=d` into pairs; commas inside quotes stay in their value.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, next)) => (value, next),
                None => (quoted, ""),
            },
            None => after.split_once(',').map_or((after, ""), |(v, n)| (v, n)),
        };
        pairs.push((name.trim().to_string(), value.trim().to_string()));
        rest = next.trim_start_matches([',', ' ']);
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes (ffmpeg's rtsp digest, without qop).
    fn answer(user: &str, password: &str, method: &str, uri: &str, nonce: &str) -> String {
        let ha1 = md5_hex(&format!("{user}:{REALM}:{password}"));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\""
        )
    }

    #[test]
    fn the_right_password_is_accepted_and_anything_else_is_wrong() {
        let login = DigestLogin::new("viewer", "s3cret, \"quoted\"");
        let uri = "rtsp://10.0.0.2:8554/cam_live";
        let right = answer("viewer", "s3cret, \"quoted\"", "DESCRIBE", uri, "n1");
        assert_eq!(login.verify("DESCRIBE", Some(&right), "n1"), Verdict::Right);
        assert_eq!(login.verify("DESCRIBE", None, "n1"), Verdict::Missing);
        assert_eq!(
            login.verify("DESCRIBE", Some(&right), "n2"),
            Verdict::Wrong,
            "another nonce"
        );
        assert_eq!(
            login.verify("SETUP", Some(&right), "n1"),
            Verdict::Wrong,
            "another method"
        );
        let wrong = answer("viewer", "guess", "DESCRIBE", uri, "n1");
        assert_eq!(login.verify("DESCRIBE", Some(&wrong), "n1"), Verdict::Wrong);
        let other = answer("admin", "s3cret, \"quoted\"", "DESCRIBE", uri, "n1");
        assert_eq!(login.verify("DESCRIBE", Some(&other), "n1"), Verdict::Wrong);
        assert_eq!(
            login.verify("DESCRIBE", Some("Basic dmlld2VyOnMzY3JldA=="), "n1"),
            Verdict::Wrong
        );
        assert_eq!(
            login.verify("DESCRIBE", Some("Digest garbage"), "n1"),
            Verdict::Wrong
        );
    }

    #[test]
    fn qop_auth_answers_are_checked_with_their_counter_and_client_nonce() {
        let login = DigestLogin::new("u", "p");
        let ha1 = md5_hex(&format!("u:{REALM}:p"));
        let ha2 = md5_hex("PLAY:/cam_live");
        let response = md5_hex(&format!("{ha1}:n:00000001:c:auth:{ha2}"));
        let header = format!(
            "Digest username=\"u\", nonce=\"n\", uri=\"/cam_live\", qop=auth, nc=00000001, cnonce=\"c\", response=\"{response}\""
        );
        assert_eq!(login.verify("PLAY", Some(&header), "n"), Verdict::Right);
    }

    #[test]
    fn parameters_keep_commas_inside_quotes() {
        assert_eq!(
            parameters("a=\"x, y\", b=z,c=\"\""),
            vec![
                ("a".into(), "x, y".into()),
                ("b".into(), "z".into()),
                ("c".into(), "".into())
            ]
        );
    }
}
