//! The token endpoint's success response (RFC 6749 §5.1).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::error::{InvalidResponse, TokenError, sanitize};
use crate::Secret;

/// The longest lifetime believed: a larger `expires_in` is read as this (and keeps the
/// arithmetic on `Instant`s far from overflow).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// A successful token response, checked strictly where it matters and leniently
/// elsewhere.
///
/// - `access_token`: a non-empty string of visible ASCII (it goes into a header);
/// - `token_type`: `Bearer`, in any case (RFC 6749 §7.1); anything else is
///   [`TokenError::UnsupportedTokenType`];
/// - `expires_in`: a non-negative integer, or a string of one (some servers quote it);
///   absent or `null` leaves the lifetime to the cache's default;
/// - `refresh_token`, `scope`: strings when present.
///
/// Every other member (`refresh_expires_in`, `not-before-policy`, `session_state`,
/// `id_token`, …) is ignored. `Debug` shows neither token.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth::client::TokenResponse;
///
/// let response = TokenResponse::parse(
///     br#"{"access_token":"eyJ...","token_type":"bearer","expires_in":"300","not-before-policy":0}"#,
/// )?;
/// assert_eq!(response.expires_in(), Some(Duration::from_secs(300)));
/// assert_eq!(format!("{response:?}").contains("eyJ"), false);
/// # Ok::<(), tower_oauth::client::TokenError>(())
/// ```
#[derive(Clone)]
pub struct TokenResponse {
    access_token: String,
    expires_in: Option<Duration>,
    refresh_token: Option<Secret>,
    scope: Option<String>,
    /// `token_type: DPoP` (RFC 9449 §5): the token is bound to the client's DPoP key.
    dpop: bool,
    /// How long ago the token was issued, for a token that a shared store handed over:
    /// the cache counts its lifetime (and its refresh) from then, not from now.
    issued_ago: Duration,
}

impl TokenResponse {
    /// A bearer token for a custom [`TokenSource`](super::TokenSource).
    ///
    /// # Errors
    ///
    /// [`InvalidResponse::MissingAccessToken`] for an empty token,
    /// [`InvalidResponse::MalformedAccessToken`] for one that is not visible ASCII.
    pub fn bearer(access_token: impl Into<String>, expires_in: Option<Duration>) -> Result<TokenResponse, TokenError> {
        let access_token = access_token.into();
        check_access_token(&access_token)?;
        Ok(TokenResponse {
            access_token,
            expires_in: expires_in.map(|d| d.min(MAX_LIFETIME)),
            refresh_token: None,
            scope: None,
            dpop: false,
            issued_ago: Duration::ZERO,
        })
    }

    /// A token that another process obtained `issued_ago`, read back from a shared
    /// store, with its whole `lifetime`.
    pub(crate) fn stored(
        access_token: String,
        lifetime: Duration,
        scope: Option<String>,
        dpop: bool,
        issued_ago: Duration,
    ) -> Result<TokenResponse, TokenError> {
        let mut response = TokenResponse::bearer(access_token, Some(lifetime))?;
        response.scope = scope;
        response.dpop = dpop;
        response.issued_ago = issued_ago.min(lifetime);
        Ok(response)
    }

    /// Parses a response body.
    ///
    /// # Errors
    ///
    /// [`TokenError::InvalidResponse`] or [`TokenError::UnsupportedTokenType`]; see the
    /// type's docs for the rules.
    pub fn parse(body: &[u8]) -> Result<TokenResponse, TokenError> {
        let invalid = |what| TokenError::InvalidResponse(what);
        let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
            return Err(invalid(InvalidResponse::NotJson));
        };
        let access_token = match object.remove("access_token") {
            Some(Value::String(token)) => token,
            _ => return Err(invalid(InvalidResponse::MissingAccessToken)),
        };
        check_access_token(&access_token)?;
        let dpop = match object.get("token_type") {
            // RFC 6749 §5.1: the type is case-insensitive.
            Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => false,
            // RFC 9449 §5: only a client that sent a proof can use it; the endpoint
            // checks that.
            Some(Value::String(kind)) if kind.eq_ignore_ascii_case("dpop") => true,
            Some(Value::String(kind)) => return Err(TokenError::UnsupportedTokenType(sanitize(kind, 32))),
            _ => return Err(invalid(InvalidResponse::MissingTokenType)),
        };
        let expires_in = match object.get("expires_in") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(whole_seconds(n).ok_or(invalid(InvalidResponse::InvalidExpiresIn))?),
            Some(Value::String(s)) => Some(parse_seconds(s).ok_or(invalid(InvalidResponse::InvalidExpiresIn))?),
            Some(_) => return Err(invalid(InvalidResponse::InvalidExpiresIn)),
        };
        let refresh_token = match object.remove("refresh_token") {
            None | Some(Value::Null) => None,
            Some(Value::String(token)) if token.is_empty() => None,
            Some(Value::String(token)) => Some(Secret::from(token)),
            Some(_) => return Err(invalid(InvalidResponse::InvalidRefreshToken)),
        };
        let scope = match object.remove("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(scope)) => Some(scope),
            Some(_) => return Err(invalid(InvalidResponse::InvalidScope)),
        };
        Ok(TokenResponse {
            access_token,
            expires_in: expires_in.map(|secs| Duration::from_secs(secs).min(MAX_LIFETIME)),
            refresh_token,
            scope,
            dpop,
            issued_ago: Duration::ZERO,
        })
    }

    /// Whether the token is bound to the client's DPoP key (`token_type: DPoP`, RFC
    /// 9449 §5): it is then sent with the `DPoP` scheme and a proof.
    pub fn is_dpop(&self) -> bool {
        self.dpop
    }

    /// The access token. Never log it.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// `expires_in`, when the server sent it (at most a year is believed).
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// The refresh token, when the server issued one.
    pub fn refresh_token(&self) -> Option<&Secret> {
        self.refresh_token.as_ref()
    }

    /// The granted scope, when the server said (RFC 6749 §5.1: when it differs from the
    /// requested one).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// How long ago the token was issued: zero for a fresh response.
    pub(crate) fn issued_ago(&self) -> Duration {
        self.issued_ago
    }

    pub(crate) fn into_parts(self) -> (String, Option<Duration>, Option<Secret>, Option<String>) {
        (self.access_token, self.expires_in, self.refresh_token, self.scope)
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("scope", &self.scope)
            .field("dpop", &self.dpop)
            .finish()
    }
}

/// RFC 6750 §2.1 puts the token in a header: visible ASCII only, no spaces.
fn check_access_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::InvalidResponse(InvalidResponse::MissingAccessToken));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::InvalidResponse(InvalidResponse::MalformedAccessToken));
    }
    Ok(())
}

/// A JSON number that is a non-negative whole number (`300`, `300.0`); huge ones
/// saturate.
fn whole_seconds(n: &serde_json::Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        // `as` saturates: a huge value becomes u64::MAX, later capped at MAX_LIFETIME.
        (f >= 0.0 && f.fract() == 0.0).then_some(f as u64)
    })
}

/// `"300"`: ASCII digits only, at most 20 of them.
fn parse_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().or(Some(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TokenResponse, TokenError> {
        TokenResponse::parse(json.as_bytes())
    }

    fn invalid(result: Result<TokenResponse, TokenError>) -> InvalidResponse {
        match result {
            Err(TokenError::InvalidResponse(what)) => what,
            other => panic!("expected an invalid response, got {other:?}"),
        }
    }

    #[test]
    fn bearer_and_dpop_are_case_insensitive_and_other_types_are_refused() {
        for kind in ["Bearer", "bearer", "BEARER"] {
            assert!(!parse(&format!(r#"{{"access_token":"a","token_type":"{kind}"}}"#)).unwrap().is_dpop());
        }
        for kind in ["DPoP", "dpop"] {
            assert!(parse(&format!(r#"{{"access_token":"a","token_type":"{kind}"}}"#)).unwrap().is_dpop());
        }
        match parse(r#"{"access_token":"a","token_type":"MAC"}"#) {
            Err(TokenError::UnsupportedTokenType(kind)) => assert_eq!(kind, "MAC"),
            other => panic!("{other:?}"),
        }
        assert_eq!(invalid(parse(r#"{"access_token":"a"}"#)), InvalidResponse::MissingTokenType);
        assert_eq!(invalid(parse(r#"{"access_token":"a","token_type":7}"#)), InvalidResponse::MissingTokenType);
    }

    #[test]
    fn expires_in_is_an_integer_or_a_string_of_one() {
        let lifetime = |v: &str| parse(&format!(r#"{{"access_token":"a","token_type":"Bearer","expires_in":{v}}}"#));
        assert_eq!(lifetime("300").unwrap().expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(lifetime(r#"" 300""#).unwrap().expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(lifetime("null").unwrap().expires_in(), None);
        assert_eq!(lifetime("99999999999999999999").unwrap().expires_in(), Some(MAX_LIFETIME));
        assert_eq!(lifetime("300.0").unwrap().expires_in(), Some(Duration::from_secs(300)));
        assert_eq!(lifetime(r#""99999999999999999999""#).unwrap().expires_in(), Some(MAX_LIFETIME));
        assert_eq!(lifetime("18446744073709551615").unwrap().expires_in(), Some(MAX_LIFETIME));
        for bad in ["-1", "1.5", r#""5m""#, r#""""#, "true", "[]"] {
            assert_eq!(invalid(lifetime(bad)), InvalidResponse::InvalidExpiresIn, "{bad}");
        }
    }

    #[test]
    fn the_access_token_must_fit_in_a_header() {
        let token = |t: &str| parse(&serde_json::json!({"access_token": t, "token_type": "Bearer"}).to_string());
        assert_eq!(invalid(token("")), InvalidResponse::MissingAccessToken);
        for bad in ["a b", "a\r\nx-injected: 1", "é", "a\u{0}"] {
            assert_eq!(invalid(token(bad)), InvalidResponse::MalformedAccessToken, "{bad:?}");
        }
        assert_eq!(invalid(parse(r#"{"access_token":1,"token_type":"Bearer"}"#)), InvalidResponse::MissingAccessToken);
        assert_eq!(invalid(parse("[]")), InvalidResponse::NotJson);
        assert_eq!(invalid(parse("<html>")), InvalidResponse::NotJson);
    }

    #[test]
    fn extra_members_are_ignored_and_secrets_stay_out_of_debug() {
        let response = parse(
            r#"{"access_token":"tok-123","token_type":"Bearer","expires_in":300,"refresh_expires_in":0,
                "refresh_token":"ref-456","not-before-policy":0,"session_state":"s","scope":"a b","id_token":"x"}"#,
        )
        .unwrap();
        assert_eq!(response.access_token(), "tok-123");
        assert_eq!(response.refresh_token().map(Secret::expose), Some(&b"ref-456"[..]));
        assert_eq!(response.scope(), Some("a b"));
        let debug = format!("{response:?}");
        assert!(!debug.contains("tok-123") && !debug.contains("ref-456"), "{debug}");
        assert_eq!(
            invalid(parse(r#"{"access_token":"a","token_type":"Bearer","scope":["a"]}"#)),
            InvalidResponse::InvalidScope
        );
        assert_eq!(
            invalid(parse(r#"{"access_token":"a","token_type":"Bearer","refresh_token":{}}"#)),
            InvalidResponse::InvalidRefreshToken
        );
    }
}
