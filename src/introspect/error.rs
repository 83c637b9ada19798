use std::fmt;
use std::time::Duration;

use http::StatusCode;

/// Why an introspection gave no active token.
///
/// [`Inactive`](Self::Inactive) is the token's fault (RFC 6750 `invalid_token`); the
/// others are the server's side (answer 503 with `Retry-After`, never 401: the token
/// may well be valid). `Display` never includes the token, the client secret or the
/// response body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// The authorization server says the token is not active (RFC 7662 §2.2): unknown,
    /// expired, revoked, issued to be used elsewhere, or not a bearer access token.
    Inactive,
    /// The introspection endpoint could not answer: a transport error, a timeout, a
    /// 5xx, a 429, a body over the limit, a response that is not an RFC 7662 JSON
    /// object, or (for a discovered endpoint) a failed discovery, or one that is not
    /// tried again yet because the last one failed.
    #[non_exhaustive]
    Unavailable {
        /// The server's `Retry-After`, when it sent one; for a failed discovery, the
        /// time left before discovery is tried again.
        retry_after: Option<Duration>,
        /// What went wrong, in a few words.
        reason: &'static str,
    },
    /// The endpoint refused the request itself: 401 or 403 (it does not accept this
    /// client's credentials) or another 4xx. A misconfiguration of the resource
    /// server, logged at `error` level.
    #[non_exhaustive]
    Rejected {
        /// The status the endpoint answered with.
        status: StatusCode,
    },
}

impl IntrospectionError {
    pub(crate) fn unavailable(reason: &'static str) -> Self {
        IntrospectionError::Unavailable { retry_after: None, reason }
    }

    /// Whether the fault is on the server's side (answer 503) rather than the token's.
    pub fn is_server_error(&self) -> bool {
        !matches!(self, IntrospectionError::Inactive)
    }

    /// How long the introspection endpoint asked us to wait, if it did, or how long
    /// until a failed discovery is tried again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IntrospectionError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for IntrospectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntrospectionError::Inactive => f.write_str("token is not active"),
            IntrospectionError::Unavailable { reason, .. } => write!(f, "introspection unavailable: {reason}"),
            IntrospectionError::Rejected { status } => {
                write!(f, "introspection endpoint refused the request with status {}", status.as_u16())
            }
        }
    }
}

impl std::error::Error for IntrospectionError {}
