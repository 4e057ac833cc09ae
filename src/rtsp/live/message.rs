//! RTSP/1.0 requests in, responses out (RFC 2326). Pure: bytes to values and back.

/// The longest request head (request line and headers) a client may send.
pub const MAX_HEAD: usize = 16 * 1024;
/// The longest body (SET_PARAMETER, GET_PARAMETER) a client may send.
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub uri: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn cseq(&self) -> Option<&str> {
        self.header("CSeq")
    }

    /// The request's URI without a user or password in it and without a trailing `/`: what
    /// answers may echo (`Content-Base`, `RTP-Info`).
    pub fn base_uri(&self) -> String {
        let uri = self.uri.trim_end_matches('/');
        match uri.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                let host = match rest[..authority_end].rfind('@') {
                    Some(at) => &rest[at + 1..],
                    None => rest,
                };
                format!("{scheme}://{host}")
            }
            None => uri.to_string(),
        }
    }

    /// The path of the request's URI (`/nursery_live/stream=0`), or `*`.
    pub fn path(&self) -> &str {
        let path = match self.uri.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |slash| &rest[slash..]),
            None => &self.uri,
        };
        path.split(['?', '#']).next().unwrap_or("/")
    }
}

/// What the start of a connection's input holds.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// A whole request, and how many bytes it took (head and body).
    Request(Request, usize),
    /// Interleaved data from the client (RTCP receiver reports over TCP): how many bytes to skip.
    Interleaved(usize),
    /// More bytes are needed.
    Incomplete,
}

/// Why input cannot be read as RTSP; the connection answers and closes.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BadRequest {
    #[error("its request head is over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("its body is over {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("it is not an RTSP/1.0 request")]
    NotRtsp,
}

impl BadRequest {
    pub fn status(&self) -> Status {
        match self {
            BadRequest::HeadTooLarge => Status::HEADER_TOO_LARGE,
            BadRequest::BodyTooLarge => Status::TOO_LARGE,
            BadRequest::NotRtsp => Status::BAD_REQUEST,
        }
    }
}

/// Reads the next message at the start of `input`.
pub fn parse(input: &[u8]) -> Result<Incoming, BadRequest> {
    if input.first() == Some(&b'$') {
        if input.len() < 4 {
            return Ok(Incoming::Incomplete);
        }
        let length = 4 + u16::from_be_bytes([input[2], input[3]]) as usize;
        return Ok(if input.len() >= length {
            Incoming::Interleaved(length)
        } else {
            Incoming::Incomplete
        });
    }
    let Some(head_end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if input.len() > MAX_HEAD {
            Err(BadRequest::HeadTooLarge)
        } else {
            Ok(Incoming::Incomplete)
        };
    };
    if head_end > MAX_HEAD {
        return Err(BadRequest::HeadTooLarge);
    }
    let head = std::str::from_utf8(&input[..head_end]).map_err(|_| BadRequest::NotRtsp)?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(uri), Some("RTSP/1.0"), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(BadRequest::NotRtsp);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return Err(BadRequest::NotRtsp);
    }
    let headers = lines
        .map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
                .ok_or(BadRequest::NotRtsp)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = Request {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
    };
    let body = match request.header("Content-Length") {
        Some(length) => length.parse::<usize>().map_err(|_| BadRequest::NotRtsp)?,
        None => 0,
    };
    if body > MAX_BODY {
        return Err(BadRequest::BodyTooLarge);
    }
    let length = head_end + 4 + body;
    Ok(if input.len() >= length {
        Incoming::Request(request, length)
    } else {
        Incoming::Incomplete
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status(pub u16, pub &'static str);

impl Status {
    pub const OK: Status = Status(200, "OK");
    pub const BAD_REQUEST: Status = Status(400, "Bad Request");
    pub const UNAUTHORIZED: Status = Status(401, "Unauthorized");
    pub const NOT_FOUND: Status = Status(404, "Not Found");
    pub const TOO_LARGE: Status = Status(413, "Request Entity Too Large");
    pub const HEADER_TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
    pub const SESSION_NOT_FOUND: Status = Status(454, "Session Not Found");
    pub const NOT_VALID_IN_STATE: Status = Status(455, "Method Not Valid in This State");
    pub const UNSUPPORTED_TRANSPORT: Status = Status(461, "Unsupported transport");
    pub const SERVICE_UNAVAILABLE: Status = Status(503, "Service Unavailable");
    pub const NOT_IMPLEMENTED: Status = Status(501, "Not Implemented");
}

/// A response, built header by header.
pub struct Response {
    status: Status,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    pub fn new(status: Status, cseq: Option<&str>) -> Self {
        let mut headers = Vec::new();
        if let Some(cseq) = cseq {
            headers.push(("CSeq", cseq.to_string()));
        }
        headers.push((
            "Server",
            concat!("ipcam-mqtt/", env!("CARGO_PKG_VERSION")).to_string(),
        ));
        Response {
            status,
            headers,
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.header("Content-Type", content_type)
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = format!("RTSP/1.0 {} {}\r\n", self.status.0, self.status.1);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_with_its_headers_and_body() {
        let input = b"SET_PARAMETER rtsp://h:8554/cam_live RTSP/1.0\r\nCSeq: 7\r\ncontent-length: 4\r\n\r\nab\r\nNEXT";
        let Ok(Incoming::Request(request, used)) = parse(input) else {
            panic!("not read");
        };
        assert_eq!(request.method, "SET_PARAMETER");
        assert_eq!(request.cseq(), Some("7"));
        assert_eq!(request.path(), "/cam_live");
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn a_request_waits_for_its_whole_head_and_body() {
        assert_eq!(
            parse(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"),
            Ok(Incoming::Incomplete)
        );
        assert_eq!(
            parse(b"OPTIONS * RTSP/1.0\r\nContent-Length: 3\r\n\r\nab"),
            Ok(Incoming::Incomplete)
        );
        assert_eq!(parse(b"$\x01\x00\x04ab"), Ok(Incoming::Incomplete));
        assert_eq!(parse(b"$\x01\x00\x02abX"), Ok(Incoming::Interleaved(6)));
    }

    #[test]
    fn paths_come_from_every_form_of_uri() {
        let path = |uri: &str| {
            Request {
                method: "DESCRIBE".into(),
                uri: uri.into(),
                headers: vec![],
            }
            .path()
            .to_string()
        };
        assert_eq!(
            path("rtsp://u:p@10.0.0.2:8554/cam_live/stream=1"),
            "/cam_live/stream=1"
        );
        assert_eq!(path("rtsp://10.0.0.2:8554/cam_live?x=1"), "/cam_live");
        assert_eq!(path("rtsp://10.0.0.2:8554"), "/");
        assert_eq!(path("/cam_live"), "/cam_live");
        assert_eq!(path("*"), "*");
    }

    #[test]
    fn the_uri_echoed_back_has_no_password() {
        let request = Request {
            method: "PLAY".into(),
            uri: "rtsp://viewer:s3cret@10.0.0.2:8554/cam_live/".into(),
            headers: vec![],
        };
        assert_eq!(request.base_uri(), "rtsp://10.0.0.2:8554/cam_live");
        let plain = Request {
            uri: "rtsp://10.0.0.2/a@b".into(),
            ..request
        };
        assert_eq!(
            plain.base_uri(),
            "rtsp://10.0.0.2/a@b",
            "an @ in the path stays"
        );
    }

    #[test]
    fn what_is_not_rtsp_or_too_large_is_refused() {
        assert_eq!(
            parse(b"HELLO /cam_live HTTP/9.9\r\n\r\n"),
            Err(BadRequest::NotRtsp)
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(BadRequest::NotRtsp));
        assert_eq!(
            parse(b"OPTIONS * RTSP/1.0\r\nno colon\r\n\r\n"),
            Err(BadRequest::NotRtsp)
        );
        let huge = format!("OPTIONS * RTSP/1.0\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(huge.as_bytes()), Err(BadRequest::HeadTooLarge));
        assert_eq!(
            parse(b"OPTIONS * RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n"),
            Err(BadRequest::BodyTooLarge)
        );
    }

    #[test]
    fn a_response_carries_its_cseq_and_body_length() {
        let bytes = Response::new(Status::OK, Some("3"))
            .header("Public", "OPTIONS")
            .body("application/sdp", "v=0\r\n")
            .into_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("RTSP/1.0 200 OK\r\nCSeq: 3\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\nv=0\r\n"));
    }
}
