//! RFC 6750 §3 responses: the `WWW-Authenticate` challenge, the status, and the gRPC
//! form of the same answer.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;
use crate::ValidationError;

/// Why a request was turned away by [`BearerAuth`](super::BearerAuth) or
/// [`RequireScope`](super::RequireScope).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No bearer credentials (RFC 6750 §3.1: the challenge carries no error code).
    MissingCredentials,
    /// The request is malformed: an empty token, several credentials in one header,
    /// several `Authorization` headers, or a token in both the header and the query.
    InvalidRequest(&'static str),
    /// The token is not valid.
    InvalidToken(ValidationError),
    /// The token is valid but lacks a scope the resource needs.
    InsufficientScope {
        /// The scopes required, space-separated.
        required: String,
    },
    /// No signing keys were ever loaded: the server cannot judge any token yet.
    Unavailable,
    /// The server cannot judge the token now: the introspection endpoint is down,
    /// failing or refusing our credentials, or too many issuers were discovered.
    CannotValidate(ValidationError),
    /// The token is valid, but a server the request depends on (the userinfo endpoint)
    /// cannot be reached now.
    DependencyUnavailable {
        /// What is unavailable, for the description.
        what: &'static str,
        /// How long until it may be tried again, when known.
        retry_after: Option<std::time::Duration>,
    },
}

/// `Retry-After` when the failing server named no time.
const DEFAULT_RETRY_AFTER_SECS: u64 = 5;

/// A wait as `Retry-After`'s whole seconds (RFC 9110 §10.2.3), rounded up so that a
/// client that waits as told finds the wait over, within 1 s–1 h; 5 s when unknown.
fn retry_after_secs(wait: Option<std::time::Duration>) -> u64 {
    wait.map_or(DEFAULT_RETRY_AFTER_SECS, |d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).clamp(1, 3600))
}

impl Rejection {
    pub(crate) fn from_validation(error: ValidationError) -> Rejection {
        match error {
            ValidationError::KeysUnavailable => Rejection::Unavailable,
            error if error.is_server_error() => Rejection::CannotValidate(error),
            error => Rejection::InvalidToken(error),
        }
    }

    /// The HTTP status: 401, 400, 403 or 503.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MissingCredentials | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Rejection::Unavailable | Rejection::CannotValidate(_) | Rejection::DependencyUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// For a 503: how many seconds a client should wait, the failing server's
    /// `Retry-After` when it sent one (at least 1 s, at most an hour), else 5.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Rejection::Unavailable => Some(DEFAULT_RETRY_AFTER_SECS),
            Rejection::CannotValidate(error) => Some(retry_after_secs(error.retry_after())),
            Rejection::DependencyUnavailable { retry_after, .. } => Some(retry_after_secs(*retry_after)),
            _ => None,
        }
    }

    /// The RFC 6750 §3.1 error code, if the answer carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Rejection::MissingCredentials
            | Rejection::Unavailable
            | Rejection::CannotValidate(_)
            | Rejection::DependencyUnavailable { .. } => None,
            Rejection::InvalidRequest(_) => Some("invalid_request"),
            Rejection::InvalidToken(_) => Some("invalid_token"),
            Rejection::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    fn description(&self) -> Option<String> {
        match self {
            Rejection::MissingCredentials => None,
            Rejection::InvalidRequest(why) => Some((*why).to_owned()),
            Rejection::InvalidToken(error) => Some(error.to_string()),
            Rejection::InsufficientScope { .. } => Some("the token lacks a required scope".to_owned()),
            Rejection::Unavailable => Some("signing keys are unavailable".to_owned()),
            Rejection::CannotValidate(error) => Some(error.to_string()),
            Rejection::DependencyUnavailable { what, .. } => Some(format!("{what} is unavailable")),
        }
    }

    /// The gRPC status code: UNAUTHENTICATED (16), PERMISSION_DENIED (7), INVALID_ARGUMENT
    /// (3) or UNAVAILABLE (14).
    pub fn grpc_status(&self) -> u8 {
        match self {
            Rejection::MissingCredentials | Rejection::InvalidToken(_) => 16,
            Rejection::InvalidRequest(_) => 3,
            Rejection::InsufficientScope { .. } => 7,
            Rejection::Unavailable | Rejection::CannotValidate(_) | Rejection::DependencyUnavailable { .. } => 14,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3), or `None` for 503.
    pub fn challenge(&self, style: &ResponseStyle) -> Option<HeaderValue> {
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let mut value = String::from("Bearer");
        let mut sep = " ";
        if let Some(realm) = &style.realm {
            let _ = write!(value, "{sep}realm=\"{realm}\"");
            sep = ", ";
        }
        if let Some(code) = self.error_code() {
            let _ = write!(value, "{sep}error=\"{code}\"");
            sep = ", ";
            if let Some(description) = self.description().filter(|_| style.verbose) {
                let _ = write!(value, "{sep}error_description=\"{}\"", quoted_text(&description));
            }
        }
        if let Rejection::InsufficientScope { required } = self {
            let _ = write!(value, "{sep}scope=\"{}\"", quoted_text(required));
        }
        // Only visible ASCII went in, so this cannot fail.
        HeaderValue::from_str(&value).ok()
    }

    /// Builds the full response: plain HTTP, or gRPC when the request was gRPC.
    pub(crate) fn into_response<B>(self, style: &ResponseStyle, grpc: bool) -> Response<ResponseBody<B>> {
        let mut headers = HeaderMap::new();
        if let Some(challenge) = self.challenge(style) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        let (status, body) = if grpc {
            // gRPC carries errors in a 200 response's headers ("trailers-only").
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", HeaderValue::from(i32::from(self.grpc_status())));
            let message = if style.verbose { self.description() } else { self.error_code().map(str::to_owned) };
            let message = message.unwrap_or_else(|| {
                if self.status() == StatusCode::SERVICE_UNAVAILABLE {
                    "temporarily unavailable"
                } else {
                    "missing bearer token"
                }
                .to_owned()
            });
            let encoded = percent_encoding::utf8_percent_encode(&message, GRPC_MESSAGE).to_string();
            if let Ok(value) = HeaderValue::from_str(&encoded) {
                headers.insert("grpc-message", value);
            }
            (StatusCode::OK, Bytes::new())
        } else if style.verbose && !matches!(self, Rejection::MissingCredentials) {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = serde_json::json!({
                "error": self.error_code().unwrap_or("temporarily_unavailable"),
                "error_description": self.description(),
            });
            (self.status(), Bytes::from(body.to_string()))
        } else {
            (self.status(), Bytes::new())
        };
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let mut response = Response::new(ResponseBody::rejection(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::MissingCredentials => f.write_str("missing bearer token"),
            Rejection::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            Rejection::InvalidToken(error) => write!(f, "invalid token: {error}"),
            Rejection::InsufficientScope { required } => write!(f, "insufficient scope; requires {required}"),
            Rejection::Unavailable => f.write_str("signing keys are unavailable"),
            Rejection::CannotValidate(error) => write!(f, "cannot validate the token now: {error}"),
            Rejection::DependencyUnavailable { what, .. } => write!(f, "{what} is unavailable"),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Rejection::InvalidToken(error) | Rejection::CannotValidate(error) => Some(error),
            _ => None,
        }
    }
}

/// How rejections are worded: the `realm`, and whether descriptions are included.
#[derive(Debug, Clone, Default)]
pub struct ResponseStyle {
    pub(crate) realm: Option<String>,
    pub(crate) verbose: bool,
}

impl ResponseStyle {
    pub(crate) fn realm(&mut self, realm: &str) {
        self.realm = Some(quoted_text(realm));
    }
}

/// RFC 6750 §3: `error_description` and `scope` allow only %x20-21 / %x23-5B / %x5D-7E,
/// so `"` and `\` cannot even be escaped; anything outside that set becomes `?`. The
/// same rule is applied to the realm so no configured value can break the header.
pub(crate) fn quoted_text(s: &str) -> String {
    s.chars().map(|c| if matches!(c, ' '..='~') && c != '"' && c != '\\' { c } else { '?' }).collect()
}

/// gRPC's `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
const GRPC_MESSAGE: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b'%').add(b' ').add(b'"').add(b'\\').add(b'\x7f');

#[cfg(test)]
mod tests {
    use super::*;

    fn style(realm: Option<&str>, verbose: bool) -> ResponseStyle {
        let mut s = ResponseStyle { realm: None, verbose };
        if let Some(r) = realm {
            s.realm(r);
        }
        s
    }

    #[test]
    fn challenges_follow_rfc6750() {
        let terse = style(Some("api"), false);
        let h = |r: Rejection, s: &ResponseStyle| r.challenge(s).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h(Rejection::MissingCredentials, &terse), r#"Bearer realm="api""#);
        assert_eq!(h(Rejection::MissingCredentials, &style(None, false)), "Bearer");
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::Expired), &terse),
            r#"Bearer realm="api", error="invalid_token""#
        );
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::Expired), &style(Some("api"), true)),
            r#"Bearer realm="api", error="invalid_token", error_description="token has expired""#
        );
        assert_eq!(
            h(Rejection::InsufficientScope { required: "admin write".into() }, &terse),
            r#"Bearer realm="api", error="insufficient_scope", scope="admin write""#
        );
        assert_eq!(h(Rejection::InvalidRequest("x"), &style(None, false)), r#"Bearer error="invalid_request""#);
        assert!(Rejection::Unavailable.challenge(&terse).is_none());
    }

    #[test]
    fn server_errors_are_503_with_the_failing_servers_retry_after_and_no_challenge() {
        use crate::introspect::IntrospectionError;
        use std::time::Duration;
        let outage = |retry_after| {
            Rejection::from_validation(ValidationError::Introspection(IntrospectionError::Unavailable {
                retry_after,
                reason: "status 503",
                error: crate::FetchError::Status(StatusCode::SERVICE_UNAVAILABLE),
            }))
        };
        for (retry_after, secs) in [
            (None, 5),
            (Some(Duration::from_millis(1500)), 2),
            (Some(Duration::ZERO), 1),
            (Some(Duration::from_secs(86400)), 3600),
        ] {
            let rejection = outage(retry_after);
            assert_eq!(rejection.status(), StatusCode::SERVICE_UNAVAILABLE);
            let response = rejection.into_response::<()>(&style(Some("api"), false), false);
            assert_eq!(response.headers()[header::RETRY_AFTER], secs.to_string().as_str(), "{retry_after:?}");
            assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        }
        let grpc = outage(None).into_response::<()>(&style(None, false), true);
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "temporarily%20unavailable");
        assert_eq!(Rejection::from_validation(ValidationError::IssuerLimit).grpc_status(), 14);
        assert_eq!(Rejection::from_validation(ValidationError::KeysUnavailable), Rejection::Unavailable);
        let inactive = Rejection::from_validation(ValidationError::Introspection(IntrospectionError::Inactive));
        assert_eq!((inactive.status(), inactive.error_code()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    }

    #[test]
    fn a_dependency_outage_is_503_and_names_the_dependency_not_the_keys() {
        let rejection = Rejection::DependencyUnavailable { what: "the userinfo endpoint", retry_after: None };
        assert_eq!((rejection.status(), rejection.grpc_status()), (StatusCode::SERVICE_UNAVAILABLE, 14));
        assert_eq!(rejection.to_string(), "the userinfo endpoint is unavailable");
        let response = rejection.into_response::<()>(&style(Some("api"), true), false);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn quoted_values_cannot_break_out() {
        assert_eq!(quoted_text("a\"b\\c\r\nd é"), "a?b?c??d ?");
        let s = style(Some("evil\", error=\"x"), true);
        let v = Rejection::MissingCredentials.challenge(&s).unwrap();
        assert_eq!(v.to_str().unwrap(), r#"Bearer realm="evil?, error=?x""#);
    }
}
