//! A camera's own still-image URL (Reolink `cmd=Snap`, Hikvision `ISAPI/Streaming/channels/101/picture`),
//! with Basic or Digest auth as the camera asks for it.

use crate::config::SnapshotUrl;
use crate::secret::redact_urls;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use std::time::Duration;

pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// No real still image comes near this; a camera that sends more is not sending a picture.
const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .build()
        .expect("a plain HTTP client always builds")
}

/// Fetches the image; every error is one line with the password redacted.
pub async fn fetch(client: &reqwest::Client, target: &SnapshotUrl) -> Result<bytes::Bytes, String> {
    let shown = redact_urls(&target.url);
    let fail = |what: String| format!("snapshot_url {shown}: {what}");
    let first = client
        .get(&target.url)
        .send()
        .await
        .map_err(|e| fail(describe(e)))?;
    let response = if first.status() == StatusCode::UNAUTHORIZED {
        let challenge = first
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (Some(user), Some(password)) = (&target.username, &target.password) else {
            return Err(fail("the camera wants a username and password".into()));
        };
        let request = client.get(&target.url);
        let request = if challenge.to_ascii_lowercase().starts_with("digest") {
            let url = reqwest::Url::parse(&target.url).map_err(|e| fail(e.to_string()))?;
            let uri = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            };
            let mut prompt = digest_auth::parse(&challenge)
                .map_err(|e| fail(format!("cannot read the camera's Digest challenge: {e}")))?;
            let context = digest_auth::AuthContext::new(user.as_str(), password.expose(), uri);
            let answer = prompt
                .respond(&context)
                .map_err(|e| fail(format!("cannot answer the camera's Digest challenge: {e}")))?;
            request.header(AUTHORIZATION, answer.to_header_string())
        } else {
            request.basic_auth(user, Some(password.expose()))
        };
        request.send().await.map_err(|e| fail(describe(e)))?
    } else {
        first
    };
    match response.status() {
        status if status.is_success() => {}
        StatusCode::UNAUTHORIZED => {
            return Err(fail(
                "the camera refused the username or password (HTTP 401)".into(),
            ));
        }
        status => return Err(fail(format!("the camera answered HTTP {status}"))),
    }
    if response
        .content_length()
        .is_some_and(|len| len as usize > MAX_IMAGE_BYTES)
    {
        return Err(fail("the image is larger than 16 MB".into()));
    }
    let body = response.bytes().await.map_err(|e| fail(describe(e)))?;
    if body.len() > MAX_IMAGE_BYTES {
        return Err(fail("the image is larger than 16 MB".into()));
    }
    if !body.starts_with(&[0xFF, 0xD8]) {
        return Err(fail(format!(
            "the answer is not a JPEG ({} bytes starting {:02x?})",
            body.len(),
            &body[..body.len().min(4)]
        )));
    }
    Ok(body)
}

/// reqwest's message without its URL, which may carry a password in the query.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} s", FETCH_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        redact_urls(&error.without_url().to_string())
    }
}
