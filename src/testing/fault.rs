//! Injected failures: which endpoint misbehaves, and how.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use super::response::{Body, empty};

/// An endpoint of the test issuer, for faults and request counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
    OpenIdConfiguration,
    /// `/.well-known/oauth-authorization-server{path}` (RFC 8414 §3).
    OAuthServerMetadata,
    /// The `jwks_uri`, `{issuer}/jwks`.
    Jwks,
    /// The token endpoint (RFC 6749 §3.2).
    Token,
    /// The introspection endpoint (RFC 7662 §2), `{issuer}/introspect`.
    Introspection,
    /// The userinfo endpoint (OpenID Connect Core 1.0 §5.3), `{issuer}/userinfo`.
    Userinfo,
}

impl Endpoint {
    pub(crate) const COUNT: usize = 6;

    pub(crate) const fn index(self) -> usize {
        match self {
            Endpoint::OpenIdConfiguration => 0,
            Endpoint::OAuthServerMetadata => 1,
            Endpoint::Jwks => 2,
            Endpoint::Token => 3,
            Endpoint::Introspection => 4,
            Endpoint::Userinfo => 5,
        }
    }
}

/// How an endpoint misbehaves until the fault is cleared.
///
/// A fault replaces the endpoint's normal answer (except [`Fault::Delay`], which
/// postpones it) for every request that reaches the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Close the connection without sending any response.
    Down,
    /// Answer normally after this delay.
    Delay(Duration),
    /// Send `200` headers, then a body that never ends: one byte at once and another
    /// every second, forever.
    Stall,
    /// An empty response with this status (for example 404, 500 or 503). A value that
    /// is not a valid status code in 200..=599 is served as 500.
    Status(u16),
    /// `429 Too Many Requests` (RFC 6585 §4), with `Retry-After` in seconds when set.
    TooManyRequests {
        /// The `Retry-After` value in seconds (RFC 9110 §10.2.3).
        retry_after: Option<u64>,
    },
    /// `200` labelled `application/json` whose body is not JSON.
    Garbage,
    /// `200 application/json` with a body of exactly this many bytes: the start of a
    /// JSON object, then spaces. Streamed, so a large size costs no memory here.
    Oversized(usize),
}

/// Where a JSON document begins, so that a client that reads incrementally commits
/// to parsing before it meets the padding.
const OVERSIZED_PREFIX: &[u8] = b"{\"keys\":[";

impl Fault {
    /// The response that stands in for the endpoint's answer, or `None` for faults
    /// that are not a response ([`Fault::Down`], [`Fault::Delay`]).
    pub(crate) fn response(&self) -> Option<Response<Body>> {
        let mut response = match self {
            Fault::Down | Fault::Delay(_) => return None,
            Fault::Stall => Response::new(Body::dribble()),
            Fault::Status(code) => {
                let status = StatusCode::from_u16(*code)
                    .ok()
                    .filter(|s| (200..600).contains(&s.as_u16()))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Some(empty(status));
            }
            Fault::TooManyRequests { retry_after } => {
                let mut response = empty(StatusCode::TOO_MANY_REQUESTS);
                if let Some(seconds) = retry_after {
                    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(*seconds));
                }
                return Some(response);
            }
            Fault::Garbage => {
                Response::new(Body::full(Bytes::from_static(b"<html><body>502 Bad Gateway</body></html>")))
            }
            Fault::Oversized(size) => {
                let prefix = &OVERSIZED_PREFIX[..OVERSIZED_PREFIX.len().min(*size)];
                Response::new(Body::padded(Bytes::from_static(prefix), *size))
            }
        };
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Some(response)
    }
}
