//! The seam between the cache and whatever obtains tokens.

use std::future::Future;
use std::pin::Pin;

use super::{CacheKey, TokenError, TokenResponse};
use crate::Secret;

/// A future that obtains one token.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<TokenResponse, TokenError>> + Send + 'a>>;

/// Obtains access tokens for a [`TokenCache`](super::TokenCache).
///
/// [`TokenEndpoint`](super::TokenEndpoint) is the built-in source (an OAuth 2.0 token
/// endpoint). Implement this trait to put something in front of it, such as a store
/// that several processes share, or to obtain tokens some other way.
///
/// The cache's one background task owns the source and calls [`fetch`](Self::fetch)
/// one call at a time, never concurrently: `&mut self` makes that a guarantee, so a
/// source can keep a rotating refresh token in a plain field.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth::client::{CacheKey, FetchFuture, GrantKind, TokenResponse, TokenSource};
///
/// /// Hands out a fixed token: handy in tests.
/// struct Fixed(CacheKey);
///
/// impl TokenSource for Fixed {
///     fn key(&self) -> &CacheKey {
///         &self.0
///     }
///
///     fn fetch(&mut self) -> FetchFuture<'_> {
///         Box::pin(async { TokenResponse::bearer("fixed-token", Some(Duration::from_secs(3600))) })
///     }
/// }
///
/// let key = CacheKey::new("memory:", "tests", GrantKind::ClientCredentials, None, Vec::<String>::new(), None);
/// # let _ = Fixed(key);
/// ```
pub trait TokenSource: Send + 'static {
    /// What the tokens are for; stable for the source's life, and free of secrets.
    fn key(&self) -> &CacheKey;

    /// Obtains a new token. Called by one task, one call at a time.
    fn fetch(&mut self) -> FetchFuture<'_>;

    /// Continues the grant with `refresh_token`: the newest refresh token that another
    /// holder of the same grant obtained, handed over by a
    /// [`SharedStore`](super::store::SharedStore) before this source fetches, so that a
    /// rotating refresh token is never spent twice across a fleet. An authorization-code
    /// grant whose code another process already exchanged continues with the refresh
    /// token too, and never sends its code.
    ///
    /// The default ignores it, which is right for a source that uses no refresh token.
    fn adopt_refresh_token(&mut self, refresh_token: Secret) {
        let _ = refresh_token;
    }

    /// The DPoP key that tokens of `token_type: DPoP` from this source are bound to
    /// (RFC 9449): the cache attaches it to them, and the layers sign a proof with it
    /// for each request. The default has none, and such a token is then refused.
    fn dpop_key(&self) -> Option<&super::DpopKey> {
        None
    }
}
