//! One error type for every module boundary: its [`ErrorKind`] drives retry decisions, and the
//! HTTP API's status codes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// What we were given is malformed (a request, an offer): fixing it is the sender's part.
    Invalid,
    /// The camera refused our credentials; retrying would only lock the account.
    Auth,
    /// The camera sends something we cannot handle (codec, transport).
    Unsupported,
    /// Network trouble, a camera reboot, a stall, a camera not ready yet: retry with backoff.
    Transient,
    /// A bug or a missing GStreamer plugin.
    Internal,
}

impl ErrorKind {
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// An error with a message already fit for a user's eyes (passwords redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            message: crate::secret::redact_urls(message.as_ref()),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, its message prefixed with what it happened to (`camera x: …`), and
    /// redacted again, since the prefix is new text.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self::new(self.kind, format!("{what}: {}", self.message))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
