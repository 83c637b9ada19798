//! Why a token could not be had: the token endpoint's answer, the exchange, or the cache.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::error::FetchError;

/// Obtaining an access token failed.
///
/// Errors are cheap to clone (the cache hands the same failure to every caller that
/// waited for one fetch). `Display` never shows a secret, a token or the response body:
/// at most the RFC 6749 §5.2 error code and a sanitized, truncated description.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token endpoint answered with an RFC 6749 §5.2 error (`invalid_client`,
    /// `invalid_grant`, …). Retrying will not help until the configuration, the grant or
    /// the client registration changes.
    #[error("token endpoint refused the request: {0}")]
    OAuth(ErrorResponse),
    /// 400 without an RFC 6749 error body: the request is malformed for this server.
    #[error("token endpoint answered 400 bad request")]
    BadRequest,
    /// 401 without an RFC 6749 error body: the client id or secret is wrong, or the
    /// server wants another authentication method (`basic` or `post`).
    #[error("token endpoint answered 401: client authentication failed")]
    Unauthorized,
    /// 403: the client may not use this endpoint or grant.
    #[error("token endpoint answered 403 forbidden")]
    Forbidden,
    /// 404: the token URL is wrong (Keycloak: check the realm in the path).
    #[error("token endpoint answered 404: wrong token url")]
    NotFound,
    /// 405: the endpoint does not take `POST`; the URL is probably not a token endpoint.
    #[error("token endpoint answered 405: not a token endpoint")]
    MethodNotAllowed,
    /// 406: the server cannot answer `application/json`.
    #[error("token endpoint answered 406: cannot answer json")]
    NotAcceptable,
    /// 415: the server does not take `application/x-www-form-urlencoded`.
    #[error("token endpoint answered 415: form body not accepted")]
    UnsupportedMediaType,
    /// 429: too many requests. The cache waits at least `retry_after` before it tries
    /// again (bounded).
    #[error("token endpoint rate limited us{}", RetryAfter(*.retry_after))]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx: the server failed (503 may carry `Retry-After`, honoured like 429's).
    #[error("token endpoint failed with {}", .status.as_u16())]
    ServerError {
        /// The status, 500 to 599.
        status: StatusCode,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Any other status that is not a success, a redirect among them (token requests
    /// never follow redirects: they would carry the credentials elsewhere).
    #[error("token endpoint answered unexpected status {}", .0.as_u16())]
    UnexpectedStatus(StatusCode),
    /// The exchange took longer than the timeout (default 10 s), or a caller waited
    /// longer than the cache's wait bound.
    #[error("token request timed out")]
    Timeout,
    /// The request failed: connection refused or reset, TLS, DNS. The
    /// [`FetchError::Request`] is the `source()`.
    #[error("token request failed")]
    Transport(#[source] FetchError),
    /// The response body exceeded the limit (default 64 KiB).
    #[error("token response body over {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The success response is not what RFC 6749 §5.1 describes.
    #[error("invalid token response: {0}")]
    InvalidResponse(InvalidResponse),
    /// The token is neither a bearer token (RFC 6749 §7.1) nor, for a client with a
    /// [`DpopKey`](super::DpopKey), a DPoP token (RFC 9449 §5): a `MAC` token, or a
    /// `DPoP` token for a client that sent no proof, cannot be used.
    #[error("unsupported token type {0:?}")]
    UnsupportedTokenType(String),
    /// A DPoP proof could not be made for the request (its URL is not an absolute
    /// `http(s)` URL, or signing failed).
    #[error("cannot make a DPoP proof")]
    DpopProof(#[source] super::KeyError),
    /// A client assertion (`private_key_jwt`, `client_secret_jwt`) could not be signed.
    #[error("cannot sign the client assertion")]
    ClientAssertion(#[source] super::KeyError),
    /// The JWT bearer grant's assertion could not be had: its file is missing,
    /// unreadable, empty or too large, or its function failed. The `source()` says
    /// which; it never holds the assertion.
    #[error("cannot read the jwt bearer assertion")]
    Assertion(#[source] std::sync::Arc<std::io::Error>),
    /// The server refused `client_secret_basic` credentials that RFC 6749 §2.3.1's
    /// form-encoding changes (the id or secret holds a character such as `&`, `+`, `%`,
    /// `/`, `=`, `:` or a space). Some servers compare Basic credentials without
    /// decoding them; if the credentials are right, this one may be such a server, and
    /// [`AuthMethod::ClientSecretBasicUnencoded`](super::AuthMethod::ClientSecretBasicUnencoded)
    /// is the way to talk to it. The server's own refusal is the `source()`, and
    /// [`oauth`](Self::oauth) gives its RFC 6749 error if it sent one.
    #[error(
        "client authentication refused; the client id or secret has characters that client_secret_basic \
         form-encodes, and some servers compare them unencoded (try AuthMethod::ClientSecretBasicUnencoded, \
         or client_secret_post)"
    )]
    BasicEncoding(#[source] Box<TokenError>),
    /// Finding the token endpoint through the issuer's metadata failed, now or a moment
    /// ago (a failed lookup is not tried again before a backoff of 1 s doubling up to
    /// 1 min has elapsed), or the URL found is not usable
    /// ([`FetchError::InsecureUrl`], [`FetchError::InvalidUrl`]). The [`FetchError`] is
    /// the `source()`.
    #[error("could not discover the token endpoint")]
    Discovery(#[source] FetchError),
    /// The grant needs a refresh token and has none: the code exchange returned none,
    /// or the refresh token was spent without a new one.
    #[error("no refresh token to renew the access token with")]
    NoRefreshToken,
    /// A forced refresh was refused because another one happened within the cooldown:
    /// a new token was just obtained and the API rejected it too.
    #[error("token was refreshed moments ago; not refreshing again yet")]
    Throttled,
    /// The cache's background task is not running (its runtime shut down).
    #[error("token cache is not running")]
    Stopped,
    /// The cache shares a refresh-token or authorization-code grant through a
    /// [`SharedStore`](super::store::SharedStore) that could not be reached: without the
    /// store's lease, renewing alone could spend a rotating refresh token that another
    /// process spends too, and a server with reuse detection would revoke the grant. The
    /// current token serves until it expires; the cache tries again with backoff.
    #[error("shared token store unavailable; not renewing the grant without its lease")]
    StoreUnavailable,
}

/// Which rule of RFC 6749 §5.1 a success response broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidResponse {
    /// The body is not a JSON object.
    NotJson,
    /// `access_token` is missing, empty or not a string.
    MissingAccessToken,
    /// `access_token` has characters an `Authorization` header cannot carry.
    MalformedAccessToken,
    /// `token_type` is missing or not a string.
    MissingTokenType,
    /// `expires_in` is not a non-negative integer (or a string of one).
    InvalidExpiresIn,
    /// `refresh_token` is not a string.
    InvalidRefreshToken,
    /// `scope` is not a string.
    InvalidScope,
}

impl fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidResponse::NotJson => "body is not a json object",
            InvalidResponse::MissingAccessToken => "no access_token",
            InvalidResponse::MalformedAccessToken => "access_token is not a valid header value",
            InvalidResponse::MissingTokenType => "no token_type",
            InvalidResponse::InvalidExpiresIn => "expires_in is not a non-negative integer",
            InvalidResponse::InvalidRefreshToken => "refresh_token is not a string",
            InvalidResponse::InvalidScope => "scope is not a string",
        })
    }
}

impl TokenError {
    /// The HTTP status the token endpoint answered, for errors that come from one.
    pub fn status(&self) -> Option<StatusCode> {
        Some(match self {
            TokenError::OAuth(response) => response.status,
            TokenError::BadRequest => StatusCode::BAD_REQUEST,
            TokenError::Unauthorized => StatusCode::UNAUTHORIZED,
            TokenError::Forbidden => StatusCode::FORBIDDEN,
            TokenError::NotFound => StatusCode::NOT_FOUND,
            TokenError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            TokenError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            TokenError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            TokenError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            TokenError::ServerError { status, .. } | TokenError::UnexpectedStatus(status) => *status,
            _ => return None,
        })
    }

    /// How long the server asked us to wait (429, 503), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::RateLimited { retry_after } | TokenError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The RFC 6749 §5.2 error, when the server sent one.
    pub fn oauth(&self) -> Option<&ErrorResponse> {
        match self {
            TokenError::OAuth(response) => Some(response),
            TokenError::BasicEncoding(refusal) => refusal.oauth(),
            _ => None,
        }
    }

    /// Whether the same request may succeed later without any change: rate limits,
    /// server errors, timeouts and transport failures.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TokenError::RateLimited { .. }
                | TokenError::ServerError { .. }
                | TokenError::Timeout
                | TokenError::Transport(_)
                | TokenError::Discovery(_)
                | TokenError::StoreUnavailable
        )
    }

    /// The error for a non-success `status` without a usable RFC 6749 error body.
    pub(crate) fn from_status(status: StatusCode, retry_after: Option<Duration>) -> TokenError {
        match status.as_u16() {
            400 => TokenError::BadRequest,
            401 => TokenError::Unauthorized,
            403 => TokenError::Forbidden,
            404 => TokenError::NotFound,
            405 => TokenError::MethodNotAllowed,
            406 => TokenError::NotAcceptable,
            415 => TokenError::UnsupportedMediaType,
            429 => TokenError::RateLimited { retry_after },
            500..=599 => TokenError::ServerError { status, retry_after },
            _ => TokenError::UnexpectedStatus(status),
        }
    }
}

impl From<FetchError> for TokenError {
    /// The one mapping of a failed exchange with the token endpoint: a timeout, a
    /// transport error, a body over the limit, a status; anything else (an unusable
    /// URL, a metadata document without the endpoint) is the endpoint's lookup.
    fn from(error: FetchError) -> Self {
        match error {
            FetchError::BodyTooLarge { limit } => TokenError::BodyTooLarge { limit },
            FetchError::Timeout => TokenError::Timeout,
            FetchError::Request(_) => TokenError::Transport(error),
            FetchError::Status(status) => TokenError::from_status(status, None),
            FetchError::RateLimited { retry_after } => TokenError::RateLimited { retry_after },
            other => TokenError::Discovery(other),
        }
    }
}

/// `; retry after N s` when the server said how long to wait.
struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(wait) => write!(f, "; retry after {} s", wait.as_secs()),
            None => Ok(()),
        }
    }
}

/// An RFC 6749 §5.2 error response, sanitized: the server's text is stripped of control
/// characters and truncated, so it can be logged as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    status: StatusCode,
    code: ErrorCode,
    description: Option<String>,
    uri: Option<String>,
}

/// The longest `error` code kept.
const MAX_CODE: usize = 64;
/// The longest `error_description` or `error_uri` kept.
const MAX_TEXT: usize = 256;

impl ErrorResponse {
    /// Reads an RFC 6749 §5.2 body: a JSON object with a string `error`. `None` when the
    /// body is anything else. (The token endpoint uses `parse_redacting`.)
    #[cfg(any(test, feature = "_fuzzing"))]
    pub(crate) fn parse(status: StatusCode, body: &[u8]) -> Option<ErrorResponse> {
        ErrorResponse::parse_redacting(status, body, &[])
    }

    /// Reads an RFC 6749 §5.2 body, with every occurrence of `secrets` in the
    /// description and URI replaced by `***` before they are cut to length, so a server
    /// that echoes the request cannot put a credential (or a prefix of one) into an
    /// error, its `Display` or a log line.
    pub(crate) fn parse_redacting(status: StatusCode, body: &[u8], secrets: &[Vec<u8>]) -> Option<ErrorResponse> {
        let serde_json::Value::Object(object) = serde_json::from_slice(body).ok()? else { return None };
        let code = object.get("error")?.as_str()?;
        let code = sanitize(code, MAX_CODE);
        if code.is_empty() {
            return None;
        }
        let text = |name: &str| {
            object
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(|s| {
                    // Invisible characters go first, so none can split a secret and
                    // hide it from `redact`; the cut comes last, so no prefix survives.
                    let visible = sanitize(s, usize::MAX);
                    sanitize(&redact(&visible, secrets), MAX_TEXT)
                })
                .filter(|s| !s.is_empty())
        };
        Some(ErrorResponse {
            status,
            code: ErrorCode::from_code(code),
            description: text("error_description"),
            uri: text("error_uri"),
        })
    }

    /// The HTTP status it came with (400, or 401 for `invalid_client`, usually).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `error` code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The `error_description`: server-controlled text, control characters removed,
    /// at most 256 characters.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The `error_uri`, sanitized like the description.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(description) = &self.description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

/// The `error` code of an RFC 6749 §5.2 response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is missing a parameter, repeats one, or is otherwise malformed.
    InvalidRequest,
    /// Client authentication failed: unknown client, wrong secret, or a method the
    /// client is not registered for.
    InvalidClient,
    /// The code or refresh token is invalid, expired, revoked or was issued to another
    /// client (or a rotated refresh token was reused).
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The server does not support this grant type.
    UnsupportedGrantType,
    /// The scope is invalid, unknown, or exceeds what was granted.
    InvalidScope,
    /// RFC 8707 §2: the `resource` is invalid or not allowed for this client.
    InvalidTarget,
    /// RFC 9449 §5: the DPoP proof was refused.
    InvalidDpopProof,
    /// RFC 9449 §8: the server wants a nonce in the proof (its `DPoP-Nonce` header);
    /// the endpoint retries once with it by itself.
    UseDpopNonce,
    /// Any other code, kept as sent (sanitized).
    Other(String),
}

impl ErrorCode {
    fn from_code(code: String) -> ErrorCode {
        match code.as_str() {
            "invalid_request" => ErrorCode::InvalidRequest,
            "invalid_client" => ErrorCode::InvalidClient,
            "invalid_grant" => ErrorCode::InvalidGrant,
            "unauthorized_client" => ErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => ErrorCode::UnsupportedGrantType,
            "invalid_scope" => ErrorCode::InvalidScope,
            "invalid_target" => ErrorCode::InvalidTarget,
            "invalid_dpop_proof" => ErrorCode::InvalidDpopProof,
            "use_dpop_nonce" => ErrorCode::UseDpopNonce,
            _ => ErrorCode::Other(code),
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `text` with every occurrence of each (non-empty) secret replaced by `***`.
fn redact(text: &str, secrets: &[Vec<u8>]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        // A secret that is not UTF-8 cannot appear in a JSON string as it is.
        if let Ok(secret) = std::str::from_utf8(secret)
            && text.contains(secret)
        {
            text = text.replace(secret, "***");
        }
    }
    text
}

/// Server-controlled text made safe to log: control characters (newlines, escape
/// sequences) and bidirectional overrides are dropped, and the result is cut at `max`
/// characters, with `…` marking the cut.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let keep = |c: &char| {
        !c.is_control() && !matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let mut kept = text.chars().filter(keep);
    let mut out: String = kept.by_ref().take(max).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_credentials_are_redacted_before_the_cut() {
        let secret = b"s3cr3t+/=".to_vec();
        let long = format!("{}{}", "x".repeat(250), "s3cr3t+/=");
        let body = serde_json::json!({"error": "invalid_client", "error_description": long, "error_uri": "https://x/?c=s3cr3t+/="});
        let error =
            ErrorResponse::parse_redacting(StatusCode::UNAUTHORIZED, body.to_string().as_bytes(), &[secret]).unwrap();
        assert!(!error.description().unwrap().contains("s3c"), "{error}");
        assert_eq!(error.uri(), Some("https://x/?c=***"));
    }

    #[test]
    fn a_secret_split_by_an_invisible_character_is_still_redacted() {
        let body = serde_json::json!({"error": "invalid_client", "error_description": "got s3c\u{200e}r3t"});
        let error = ErrorResponse::parse_redacting(
            StatusCode::UNAUTHORIZED,
            body.to_string().as_bytes(),
            &[b"s3cr3t".to_vec()],
        )
        .unwrap();
        assert_eq!(error.description(), Some("got ***"));
    }

    #[test]
    fn rfc6749_error_bodies_are_typed_and_sanitized() {
        let body =
            br#"{"error":"invalid_client","error_description":"bad\r\nsecret\u001b[31m","error_uri":"https://x/e"}"#;
        let error = ErrorResponse::parse(StatusCode::UNAUTHORIZED, body).unwrap();
        assert_eq!(error.code(), &ErrorCode::InvalidClient);
        assert_eq!(error.description(), Some("badsecret[31m"));
        assert_eq!(error.uri(), Some("https://x/e"));
        assert_eq!(error.to_string(), "invalid_client (badsecret[31m)");

        let other = ErrorResponse::parse(StatusCode::BAD_REQUEST, br#"{"error":"slow_down"}"#).unwrap();
        assert_eq!(other.code(), &ErrorCode::Other("slow_down".into()));
        for not_oauth in [&b"{}"[..], b"[]", b"{\"error\":1}", b"{\"error\":\"\"}", b"<html>", b""] {
            assert_eq!(ErrorResponse::parse(StatusCode::BAD_REQUEST, not_oauth), None);
        }
    }

    #[test]
    fn long_descriptions_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let body = serde_json::json!({"error": "invalid_grant", "error_description": long}).to_string();
        let error = ErrorResponse::parse(StatusCode::BAD_REQUEST, body.as_bytes()).unwrap();
        assert_eq!(error.description().unwrap().chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn messages_name_the_failure_and_the_cause_is_the_source() {
        use std::error::Error as _;
        let limited = |secs: Option<u64>| TokenError::RateLimited { retry_after: secs.map(Duration::from_secs) };
        assert_eq!(limited(Some(3)).to_string(), "token endpoint rate limited us; retry after 3 s");
        assert_eq!(limited(None).to_string(), "token endpoint rate limited us");
        let server = TokenError::ServerError { status: StatusCode::BAD_GATEWAY, retry_after: None };
        assert_eq!(server.to_string(), "token endpoint failed with 502");
        assert_eq!(TokenError::UnsupportedTokenType("DPoP".into()).to_string(), r#"unsupported token type "DPoP""#);
        let discovery = TokenError::Discovery(FetchError::MissingJwksUri);
        assert_eq!(discovery.to_string(), "could not discover the token endpoint");
        assert_eq!(discovery.source().map(ToString::to_string).as_deref(), Some("metadata has no jwks_uri"));
        assert!(TokenError::from(FetchError::Timeout).source().is_none());
        assert!(matches!(TokenError::from(FetchError::InsecureUrl), TokenError::Discovery(FetchError::InsecureUrl)));
    }

    #[test]
    fn statuses_map_to_their_variants() {
        let cases = [
            (400, "BadRequest"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (405, "MethodNotAllowed"),
            (406, "NotAcceptable"),
            (415, "UnsupportedMediaType"),
            (429, "RateLimited"),
            (500, "ServerError"),
            (502, "ServerError"),
            (302, "UnexpectedStatus"),
            (418, "UnexpectedStatus"),
        ];
        for (code, variant) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            let error = TokenError::from_status(status, None);
            assert!(format!("{error:?}").starts_with(variant), "{code}: {error:?}");
            assert_eq!(error.status(), Some(status));
        }
        let limited = TokenError::from_status(StatusCode::SERVICE_UNAVAILABLE, Some(Duration::from_secs(3)));
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        assert!(limited.is_transient());
        assert!(!TokenError::Unauthorized.is_transient());
    }
}
