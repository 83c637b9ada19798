use std::time::Duration;

use http::StatusCode;

use crate::error::FetchError;

/// Why an introspection gave no active token.
///
/// [`Inactive`](Self::Inactive) is the token's fault (RFC 6750 `invalid_token`); the
/// others are the server's side (answer 503 with `Retry-After`, never 401: the token
/// may well be valid). `Display` never includes the token, the client secret or the
/// response body. Equality compares the variants and their fields, not the causes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// The authorization server says the token is not active (RFC 7662 §2.2): unknown,
    /// expired, revoked, issued to be used elsewhere, or not a bearer access token.
    #[error("token is not active")]
    Inactive,
    /// The introspection endpoint could not answer: a transport error, a timeout, a
    /// 5xx, a 429, a body over the limit, a response that is not an RFC 7662 JSON
    /// object, or (for a discovered endpoint) a failed discovery, or one that is not
    /// tried again yet because the last one failed.
    #[error("introspection unavailable: {reason}")]
    #[non_exhaustive]
    Unavailable {
        /// The server's `Retry-After`, when it sent one; for a failed discovery, the
        /// time left before discovery is tried again.
        retry_after: Option<Duration>,
        /// What went wrong, in a few words.
        reason: &'static str,
        /// The cause, the `source()`: the failed exchange ([`FetchError::Request`],
        /// [`FetchError::Timeout`], …), the status ([`FetchError::Status`],
        /// [`FetchError::RateLimited`]), an answer that is not an RFC 7662 response
        /// ([`FetchError::InvalidDocument`]), or the failed discovery of the endpoint.
        #[source]
        error: FetchError,
    },
    /// The endpoint refused the request itself: 401 or 403 (it does not accept this
    /// client's credentials) or another 4xx. A misconfiguration of the resource
    /// server, logged at `error` level.
    #[error("introspection endpoint refused the request with status {}{}", .status.as_u16(), .hint.unwrap_or(""))]
    #[non_exhaustive]
    Rejected {
        /// The status the endpoint answered with.
        status: StatusCode,
        /// What may be wrong, when something is known: with `client_secret_basic`
        /// credentials that RFC 6749 §2.3.1's form-encoding changes, that some servers
        /// compare them unencoded
        /// ([`AuthMethod::ClientSecretBasicUnencoded`](super::AuthMethod::ClientSecretBasicUnencoded)).
        hint: Option<&'static str>,
    },
    /// A client assertion (`private_key_jwt`, `client_secret_jwt`) could not be signed.
    #[error("cannot sign the client assertion")]
    ClientAssertion(#[source] crate::client::KeyError),
}

/// The hint of a refused request whose Basic credentials the encoding changed.
pub(crate) const BASIC_ENCODING_HINT: &str = "; the client id or secret has characters that client_secret_basic \
    form-encodes, and some servers compare them unencoded (try AuthMethod::ClientSecretBasicUnencoded, or \
    client_secret_post)";

impl IntrospectionError {
    pub(crate) fn unavailable(reason: &'static str, error: FetchError) -> Self {
        IntrospectionError::Unavailable { retry_after: None, reason, error }
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

impl PartialEq for IntrospectionError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (IntrospectionError::Inactive, IntrospectionError::Inactive) => true,
            (
                IntrospectionError::Unavailable { retry_after, reason, .. },
                IntrospectionError::Unavailable { retry_after: other_retry_after, reason: other_reason, .. },
            ) => (retry_after, reason) == (other_retry_after, other_reason),
            (IntrospectionError::Rejected { status, .. }, IntrospectionError::Rejected { status: other, .. }) => {
                status == other
            }
            (IntrospectionError::ClientAssertion(error), IntrospectionError::ClientAssertion(other)) => error == other,
            _ => false,
        }
    }
}

impl Eq for IntrospectionError {}
