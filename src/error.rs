//! One error type whose [`ErrorKind`] drives retry decisions.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The camera refused our credentials; retrying would only lock the account.
    Auth,
    /// The camera sends something we cannot handle (codec, transport).
    Unsupported,
    /// Network trouble, a camera reboot, a stall: retry with backoff.
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
