//! RFC 6750 §3 responses: the `WWW-Authenticate` challenge, the status, and the gRPC
//! form of the same answer.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::body::ResponseBody;
use super::requirement::{Shortfall, StepUpRequirement};
use crate::ValidationError;
use crate::validate::dpop::DpopError;

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
    /// The DPoP proof is not valid (RFC 9449 §7.1: `invalid_dpop_proof`), or a server
    /// nonce is needed ([`DpopError::UseNonce`]: `use_dpop_nonce`, with a `DPoP-Nonce`
    /// header).
    InvalidDpopProof(DpopError),
    /// The token is valid but lacks a scope the resource needs.
    InsufficientScope {
        /// The scopes required, space-separated.
        required: String,
    },
    /// The token is valid, but the user's authentication is too weak or too old for the
    /// resource (RFC 9470 §3: `insufficient_user_authentication`, 401); the challenge
    /// names the requirement's `acr_values` and `max_age`.
    InsufficientUserAuthentication {
        /// What the resource requires.
        requirement: StepUpRequirement,
        /// What the token fell short of.
        shortfall: Shortfall,
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
            Rejection::MissingCredentials
            | Rejection::InvalidToken(_)
            | Rejection::InvalidDpopProof(_)
            | Rejection::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
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
            Rejection::InvalidDpopProof(DpopError::UseNonce) => Some("use_dpop_nonce"),
            Rejection::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            Rejection::InsufficientScope { .. } => Some("insufficient_scope"),
            Rejection::InsufficientUserAuthentication { .. } => Some("insufficient_user_authentication"),
        }
    }

    fn description(&self) -> Option<String> {
        match self {
            Rejection::MissingCredentials => None,
            Rejection::InvalidRequest(why) => Some((*why).to_owned()),
            Rejection::InvalidToken(error) => Some(error.to_string()),
            Rejection::InvalidDpopProof(error) => Some(error.to_string()),
            Rejection::InsufficientScope { .. } => Some("the token lacks a required scope".to_owned()),
            // RFC 9470 §3's own wording.
            Rejection::InsufficientUserAuthentication { shortfall: Shortfall::Acr, .. } => {
                Some("A different authentication level is required".to_owned())
            }
            Rejection::InsufficientUserAuthentication { .. } => {
                Some("More recent authentication is required".to_owned())
            }
            Rejection::Unavailable => Some("signing keys are unavailable".to_owned()),
            Rejection::CannotValidate(error) => Some(error.to_string()),
            Rejection::DependencyUnavailable { what, .. } => Some(format!("{what} is unavailable")),
        }
    }

    /// The gRPC status code: UNAUTHENTICATED (16), PERMISSION_DENIED (7), INVALID_ARGUMENT
    /// (3) or UNAVAILABLE (14).
    pub fn grpc_status(&self) -> u8 {
        match self {
            Rejection::MissingCredentials
            | Rejection::InvalidToken(_)
            | Rejection::InvalidDpopProof(_)
            | Rejection::InsufficientUserAuthentication { .. } => 16,
            Rejection::InvalidRequest(_) => 3,
            Rejection::InsufficientScope { .. } => 7,
            Rejection::Unavailable | Rejection::CannotValidate(_) | Rejection::DependencyUnavailable { .. } => 14,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3, RFC 9449 §7.1), or `None` for 503.
    ///
    /// With DPoP enabled on the layer, the `Bearer` and `DPoP` challenges stand side by
    /// side (the `Bearer` one only while bearer tokens are accepted), and the error goes
    /// to the scheme the request used: the `DPoP` one for a request with a proof.
    pub fn challenge(&self, style: &ResponseStyle) -> Option<HeaderValue> {
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            return None;
        }
        let dpop = style.dpop.as_ref();
        let error_to_dpop = dpop.is_some()
            && (style.dpop_request
                || matches!(self, Rejection::InvalidDpopProof(_))
                || dpop.is_some_and(|d| !d.bearer));
        let mut value = String::new();
        if error_to_dpop {
            self.write_challenge(&mut value, "DPoP", style, true);
        }
        if dpop.is_none_or(|d| d.bearer) {
            self.write_challenge(&mut value, "Bearer", style, !error_to_dpop);
        }
        if !error_to_dpop && dpop.is_some() {
            self.write_challenge(&mut value, "DPoP", style, false);
        }
        // Only visible ASCII went in, so this cannot fail.
        HeaderValue::from_str(&value).ok()
    }

    /// One challenge: the scheme, the realm, the error when `with_error` (with the scopes
    /// or the authentication it asks for), the `scope` and `resource_metadata` the layer
    /// offers; `DPoP`'s with its `algs`.
    fn write_challenge(&self, value: &mut String, scheme: &str, style: &ResponseStyle, with_error: bool) {
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(scheme);
        let mut sep = " ";
        if let Some(realm) = &style.realm {
            let _ = write!(value, "{sep}realm=\"{realm}\"");
            sep = ", ";
        }
        if let Some(code) = self.error_code().filter(|_| with_error) {
            let _ = write!(value, "{sep}error=\"{code}\"");
            sep = ", ";
            if let Some(description) = self.description().filter(|_| style.verbose) {
                let _ = write!(value, "{sep}error_description=\"{}\"", quoted_text(&description));
            }
            match self {
                Rejection::InsufficientScope { required } => {
                    let _ = write!(value, "{sep}scope=\"{}\"", quoted_text(required));
                }
                Rejection::InsufficientUserAuthentication { requirement, .. } => {
                    if let Some(acr_values) = requirement.acr_values_param() {
                        let _ = write!(value, "{sep}acr_values=\"{}\"", quoted_text(&acr_values));
                    }
                    if let Some(max_age) = requirement.max_age_secs() {
                        let _ = write!(value, "{sep}max_age=\"{max_age}\"");
                    }
                }
                _ => {}
            }
        }
        // The scope a route requires stands in for the one the layer offers.
        if !(with_error && matches!(self, Rejection::InsufficientScope { .. }))
            && let Some(scope) = &style.scope
        {
            let _ = write!(value, "{sep}scope=\"{scope}\"");
            sep = ", ";
        }
        if let Some(url) = &style.resource_metadata {
            let _ = write!(value, "{sep}resource_metadata=\"{url}\"");
            sep = ", ";
        }
        if scheme == "DPoP"
            && let Some(dpop) = &style.dpop
        {
            let _ = write!(value, "{sep}algs=\"{}\"", dpop.algs);
        }
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
            Rejection::InvalidDpopProof(error) => write!(f, "invalid DPoP proof: {error}"),
            Rejection::InsufficientScope { required } => write!(f, "insufficient scope; requires {required}"),
            Rejection::InsufficientUserAuthentication { shortfall: Shortfall::Acr, .. } => {
                f.write_str("insufficient user authentication: another authentication level is required")
            }
            Rejection::InsufficientUserAuthentication { .. } => {
                f.write_str("insufficient user authentication: a more recent authentication is required")
            }
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
            Rejection::InvalidDpopProof(error) => Some(error),
            _ => None,
        }
    }
}

/// How rejections are worded: the `realm`, whether descriptions are included, the
/// `scope` and `resource_metadata` offered, and the `DPoP` challenge when the layer
/// accepts DPoP.
#[derive(Debug, Clone, Default)]
pub struct ResponseStyle {
    pub(crate) realm: Option<String>,
    pub(crate) verbose: bool,
    /// The scopes a client should ask for (RFC 6750 §3), space-separated and quotable.
    pub(crate) scope: Option<String>,
    /// The URL of the resource's metadata (RFC 9728 §5.1), quotable.
    pub(crate) resource_metadata: Option<String>,
    pub(crate) dpop: Option<DpopChallenge>,
    /// The request came with the `DPoP` scheme: errors go to the `DPoP` challenge.
    pub(crate) dpop_request: bool,
}

/// The `DPoP` challenge's part of a [`ResponseStyle`].
#[derive(Debug, Clone)]
pub(crate) struct DpopChallenge {
    /// The proof algorithms, space-separated.
    pub(crate) algs: String,
    /// Whether bearer tokens are accepted too (the validator's default policy is not
    /// [`DpopMode::Required`](crate::validate::DpopMode::Required)).
    pub(crate) bearer: bool,
}

impl ResponseStyle {
    /// Whether answers worded with this style are worded as with the default one, so the
    /// per-route checks need not be handed it. Every field is named: a new one must be
    /// judged here, or the checks behind the layer would word their answers without it.
    pub(crate) fn is_default(&self) -> bool {
        let ResponseStyle { realm, verbose, scope, resource_metadata, dpop, dpop_request: _ } = self;
        // `dpop_request` only picks the scheme among `dpop`'s challenges.
        realm.is_none() && !verbose && scope.is_none() && resource_metadata.is_none() && dpop.is_none()
    }

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
        let mut s = ResponseStyle { realm: None, verbose, ..ResponseStyle::default() };
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

    fn dpop_style(bearer: bool, dpop_request: bool) -> ResponseStyle {
        let dpop = Some(DpopChallenge { algs: "ES256 EdDSA".into(), bearer });
        ResponseStyle { realm: Some("api".into()), dpop, dpop_request, ..ResponseStyle::default() }
    }

    #[test]
    fn dpop_challenges_stand_beside_bearer_and_take_the_error_of_dpop_requests() {
        let h = |r: Rejection, s: &ResponseStyle| r.challenge(s).unwrap().to_str().unwrap().to_owned();
        let both = dpop_style(true, false);
        assert_eq!(
            h(Rejection::MissingCredentials, &both),
            r#"Bearer realm="api", DPoP realm="api", algs="ES256 EdDSA""#
        );
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::SenderConstrained), &both),
            r#"Bearer realm="api", error="invalid_token", DPoP realm="api", algs="ES256 EdDSA""#
        );
        let from_dpop = dpop_style(true, true);
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::Expired), &from_dpop),
            r#"DPoP realm="api", error="invalid_token", algs="ES256 EdDSA", Bearer realm="api""#
        );
        assert_eq!(
            h(Rejection::InvalidDpopProof(DpopError::Replayed), &both),
            r#"DPoP realm="api", error="invalid_dpop_proof", algs="ES256 EdDSA", Bearer realm="api""#
        );
        assert_eq!(
            h(Rejection::InvalidDpopProof(DpopError::UseNonce), &from_dpop),
            r#"DPoP realm="api", error="use_dpop_nonce", algs="ES256 EdDSA", Bearer realm="api""#
        );
        // DPoP required: no Bearer challenge at all.
        let only = dpop_style(false, false);
        assert_eq!(h(Rejection::MissingCredentials, &only), r#"DPoP realm="api", algs="ES256 EdDSA""#);
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::DpopRequired), &only),
            r#"DPoP realm="api", error="invalid_token", algs="ES256 EdDSA""#
        );
        let proof = Rejection::InvalidDpopProof(DpopError::Stale);
        assert_eq!((proof.status(), proof.grpc_status()), (StatusCode::UNAUTHORIZED, 16));
    }

    #[test]
    fn quoted_values_cannot_break_out() {
        assert_eq!(quoted_text("a\"b\\c\r\nd é"), "a?b?c??d ?");
        let s = style(Some("evil\", error=\"x"), true);
        let v = Rejection::MissingCredentials.challenge(&s).unwrap();
        assert_eq!(v.to_str().unwrap(), r#"Bearer realm="evil?, error=?x""#);
    }

    #[test]
    fn step_up_challenges_match_rfc9470s_examples() {
        use crate::bearer::{Shortfall, StepUpRequirement};
        let h = |r: Rejection, s: &ResponseStyle| r.challenge(s).unwrap().to_str().unwrap().to_owned();
        let acr = Rejection::InsufficientUserAuthentication {
            requirement: StepUpRequirement::new().acr_values(["myACR"]),
            shortfall: Shortfall::Acr,
        };
        assert_eq!((acr.status(), acr.grpc_status()), (StatusCode::UNAUTHORIZED, 16));
        // RFC 9470 §3, the first example.
        assert_eq!(
            h(acr.clone(), &style(None, true)),
            r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="myACR""#
        );
        assert_eq!(
            h(acr, &style(None, false)),
            r#"Bearer error="insufficient_user_authentication", acr_values="myACR""#
        );
        // RFC 9470 §3, the second example.
        let age = Rejection::InsufficientUserAuthentication {
            requirement: StepUpRequirement::new().max_age(std::time::Duration::from_secs(5)),
            shortfall: Shortfall::MaxAge,
        };
        assert_eq!(
            h(age, &style(None, true)),
            r#"Bearer error="insufficient_user_authentication", error_description="More recent authentication is required", max_age="5""#
        );
        let both = Rejection::InsufficientUserAuthentication {
            requirement: StepUpRequirement::new()
                .acr_values(["gold", "platinum"])
                .max_age(std::time::Duration::from_secs(300)),
            shortfall: Shortfall::MaxAge,
        };
        assert_eq!(
            h(both.clone(), &style(Some("api"), false)),
            r#"Bearer realm="api", error="insufficient_user_authentication", acr_values="gold platinum", max_age="300""#
        );
        let grpc = both.into_response::<()>(&style(None, false), true);
        assert_eq!(grpc.headers()["grpc-status"], "16");
        assert_eq!(grpc.headers()["grpc-message"], "insufficient_user_authentication");
        assert!(grpc.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains(r#"max_age="300""#));
    }

    #[test]
    fn every_challenge_names_the_resource_metadata_and_the_offered_scope() {
        let h = |r: Rejection, s: &ResponseStyle| r.challenge(s).unwrap().to_str().unwrap().to_owned();
        let mut s = style(None, false);
        s.resource_metadata = Some("https://api.example.com/.well-known/oauth-protected-resource/mcp".into());
        // RFC 9728 §5.1.
        assert_eq!(
            h(Rejection::MissingCredentials, &s),
            r#"Bearer resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        s.scope = Some("mcp:tools".into());
        assert_eq!(
            h(Rejection::MissingCredentials, &s),
            r#"Bearer scope="mcp:tools", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            h(Rejection::InvalidToken(ValidationError::InvalidAudience), &s),
            r#"Bearer error="invalid_token", scope="mcp:tools", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        // A route's own scopes stand in for the offered ones.
        assert_eq!(
            h(Rejection::InsufficientScope { required: "admin".into() }, &s),
            r#"Bearer error="insufficient_scope", scope="admin", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#
        );
        let mut d = dpop_style(true, false);
        d.resource_metadata = s.resource_metadata.clone();
        assert_eq!(
            h(Rejection::MissingCredentials, &d),
            r#"Bearer realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp", DPoP realm="api", resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp", algs="ES256 EdDSA""#
        );
        assert!(Rejection::Unavailable.challenge(&s).is_none());
    }
}
