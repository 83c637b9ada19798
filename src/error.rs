//! Configuration and fetch errors shared by the builders and the key store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A builder was given a configuration that would not be safe or could not work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No trusted issuer was configured (or an empty one).
    #[error("no trusted issuer configured")]
    MissingIssuer,
    /// The same issuer was configured twice.
    #[error("issuer configured twice")]
    DuplicateIssuer,
    /// No audience was configured; every token would be accepted for any API.
    #[error("no audience configured")]
    MissingAudience,
    /// The algorithm allow-list is empty.
    #[error("no algorithm allowed")]
    NoAlgorithms,
    /// Encryption is required but no decryption keys were configured (or the `jwe`
    /// feature is off): every token would be rejected.
    #[error("encryption required but no decryption keys configured")]
    NoDecryptionKeys,
    /// Neither an issuer (for discovery) nor a JWKS URI was given to a key store.
    #[error("no issuer or jwks uri configured")]
    MissingKeySource,
    /// A URL is not of the form needed: an issuer template without exactly one
    /// placeholder, a resource with a fragment, a Redis URL its client refuses.
    #[error("invalid url")]
    InvalidUrl,
    /// A URL fails the rule every fetch applies: it does not parse
    /// ([`FetchError::InvalidUrl`]), or it is plain `http` to a host other than loopback
    /// ([`FetchError::InsecureUrl`]). The [`FetchError`] is the `source()`.
    #[error("unusable url")]
    Url(#[source] FetchError),
    /// A background task was needed but no Tokio runtime is running.
    #[error("must be called within a tokio runtime")]
    NoRuntime,
    /// The default HTTP client could not be built (no TLS roots, for instance).
    #[error("could not build the http client")]
    HttpClient(#[source] reqwest::Error),
    /// A token cache of a user-delegated grant (refresh token, authorization code) was
    /// given a shared store without a grant id: the cache key does not tell users apart,
    /// so their tokens would be mixed. Set
    /// [`SharedStore::grant_id`](crate::client::store::SharedStore::grant_id).
    #[error("a shared store for a user-delegated grant needs a grant id")]
    MissingGrantId,
    /// The client-authentication method does not fit the credential (a key for a
    /// `client_secret_*` method, a secret for `private_key_jwt`, …), or the credential
    /// cannot serve the method (a `client_secret_jwt` secret shorter than 32 bytes).
    #[error("unusable client authentication: {0}")]
    AuthMethod(&'static str),
    /// Protected resource metadata was asked of a validator without a resource
    /// identifier: set [`ValidatorBuilder::resource`](crate::ValidatorBuilder::resource).
    #[error("no resource identifier configured")]
    MissingResource,
    /// The `signed_metadata` of protected resource metadata could not be signed.
    #[error("could not sign the resource metadata")]
    MetadataSigning(#[source] crate::client::KeyError),
}

impl From<FetchError> for BuildError {
    /// A URL that a builder was given and that fails the URL rule: [`BuildError::Url`].
    fn from(error: FetchError) -> Self {
        BuildError::Url(error)
    }
}

/// An exchange with the authorization server failed: fetching metadata or a JWK Set,
/// or a request to the token, introspection or userinfo endpoint. The cause of every
/// public error that comes from a fetch (its `source()`).
///
/// Cheap to clone (a transport error is shared), so one failure can be handed to every
/// caller that waited for it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FetchError {
    /// The request failed: connection refused or reset, TLS, DNS.
    Request(Arc<reqwest::Error>),
    /// The fetch took longer than the configured timeout (default 10 s in all).
    Timeout,
    /// The server answered with an unexpected status.
    Status(http::StatusCode),
    /// The server answered 429 or 503, possibly with `Retry-After`.
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The body exceeded the size limit (default 1 MiB).
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not the JSON document expected.
    InvalidDocument(&'static str),
    /// A URL (configured, discovered or redirected to) is not https and not loopback.
    InsecureUrl,
    /// A URL does not parse.
    InvalidUrl,
    /// The metadata's `issuer` differs from the configured issuer (RFC 8414 §3.3).
    IssuerMismatch,
    /// The metadata has no `jwks_uri`.
    MissingJwksUri,
    /// The JWK Set holds no key that can verify signatures.
    NoUsableKeys,
}

impl FetchError {
    /// How long the server asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Request(_) => f.write_str("request failed"),
            FetchError::Timeout => f.write_str("request timed out"),
            FetchError::Status(status) => write!(f, "unexpected status {}", status.as_u16()),
            FetchError::RateLimited { retry_after: Some(d) } => {
                write!(f, "rate limited; retry after {} s", d.as_secs())
            }
            FetchError::RateLimited { retry_after: None } => f.write_str("rate limited"),
            FetchError::BodyTooLarge { limit } => write!(f, "response body over {limit} bytes"),
            FetchError::InvalidDocument(what) => write!(f, "invalid document: {what}"),
            FetchError::InsecureUrl => f.write_str("url must be https (http only on loopback)"),
            FetchError::InvalidUrl => f.write_str("invalid url"),
            FetchError::IssuerMismatch => f.write_str("metadata issuer does not match the configured issuer"),
            FetchError::MissingJwksUri => f.write_str("metadata has no jwks_uri"),
            FetchError::NoUsableKeys => f.write_str("jwks has no usable signing key"),
        }
    }
}

// Written by hand, not derived: `source()` is the `reqwest::Error` itself (not the
// `Arc` that shares it), so a caller can downcast to it.
impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Request(e) => Some(&**e),
            _ => None,
        }
    }
}
