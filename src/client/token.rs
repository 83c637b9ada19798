//! The access token the cache holds and the layers attach.

use std::fmt;
use std::time::{Duration, Instant};

use http::HeaderValue;

use super::DpopKey;

/// An access token in the cache, ready to attach.
///
/// It carries its `Authorization: Bearer …` header value, built once and marked
/// sensitive (so HTTP/2 never indexes it with HPACK and loggers that honour the flag
/// skip it), and when it expires. `Debug` does not show the token.
///
/// Each token a cache obtains gets the next [`generation`](AccessToken::generation):
/// a layer that sees a 401 tells the cache which generation was rejected, so many
/// rejections of one token cause one refresh, and none once the token was replaced.
#[derive(Clone)]
pub struct AccessToken {
    header: HeaderValue,
    obtained_at: Instant,
    expires_at: Instant,
    scope: Option<Box<str>>,
    generation: u64,
    /// The key a DPoP token is bound to: each request gets a proof made with it.
    dpop: Option<DpopKey>,
}

const PREFIX: &str = "Bearer ";
const DPOP_PREFIX: &str = "DPoP ";

impl AccessToken {
    /// `token` must be visible ASCII (checked when the response was parsed), and
    /// `lifetime` is counted from `obtained_at`: the moment the request was sent, so the
    /// token is never believed valid longer than the server meant.
    pub(crate) fn new(
        token: &str,
        obtained_at: Instant,
        lifetime: Duration,
        scope: Option<String>,
        generation: u64,
        dpop: Option<DpopKey>,
    ) -> Option<AccessToken> {
        // RFC 9449 §7.1: a DPoP-bound token goes with the `DPoP` scheme.
        let prefix = if dpop.is_some() { DPOP_PREFIX } else { PREFIX };
        let mut header = HeaderValue::try_from(format!("{prefix}{token}")).ok()?;
        header.set_sensitive(true);
        Some(AccessToken {
            header,
            obtained_at,
            expires_at: obtained_at.checked_add(lifetime).unwrap_or(obtained_at),
            scope: scope.map(String::into_boxed_str),
            generation,
            dpop,
        })
    }

    /// The token itself. Never log it.
    pub fn expose(&self) -> &str {
        let prefix = if self.dpop.is_some() { DPOP_PREFIX } else { PREFIX };
        std::str::from_utf8(&self.header.as_bytes()[prefix.len()..]).unwrap_or_default()
    }

    /// The DPoP key the token is bound to (`token_type: DPoP`), if it is.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }

    /// `Bearer <token>` (or `DPoP <token>`), marked sensitive: what goes into the
    /// `Authorization` header.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// When the request that obtained it was sent.
    pub fn obtained_at(&self) -> Instant {
        self.obtained_at
    }

    /// When it expires: `expires_in` (or the default lifetime) after it was requested.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Its whole lifetime.
    pub fn lifetime(&self) -> Duration {
        self.expires_at.saturating_duration_since(self.obtained_at)
    }

    /// Whether it is still valid at `now`.
    pub fn is_valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// The scope the server said it granted, if it did.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Which token of its cache this is: 1 for the first, then counting up.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"***")
            .field("expires_in", &self.expires_at.saturating_duration_since(Instant::now()))
            .field("scope", &self.scope)
            .field("generation", &self.generation)
            .field("dpop", &self.dpop.as_ref().map(DpopKey::thumbprint))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_sensitive_and_debug_hides_the_token() {
        let now = Instant::now();
        let token = AccessToken::new("abc.def", now, Duration::from_secs(60), Some("read".into()), 1, None).unwrap();
        assert_eq!(token.header_value(), "Bearer abc.def");
        assert!(token.header_value().is_sensitive());
        assert_eq!(token.expose(), "abc.def");
        assert_eq!(token.lifetime(), Duration::from_secs(60));
        assert!(token.is_valid_at(now) && !token.is_valid_at(now + Duration::from_secs(60)));
        assert!(!format!("{token:?}").contains("abc"));
    }
}
