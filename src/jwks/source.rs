//! Where a remote key store fetches its keys: a JWKS URI, or one found through the
//! issuer's metadata.

use std::future::Future;
use std::time::Duration;

use url::Url;

use crate::KeySet;
use crate::error::FetchError;
use crate::idp::discovery;
use crate::idp::fetch::{self, Limits};

/// What the store was configured with.
pub(super) enum KeySource {
    Issuer(String),
    JwksUri(Url),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Issuer(issuer) => f.debug_tuple("Issuer").field(issuer).finish(),
            KeySource::JwksUri(uri) => f.debug_tuple("JwksUri").field(&uri.as_str()).finish(),
        }
    }
}

/// One fetch of a key set: the keys, and the server's `max-age` if it sent one.
pub(super) type Fetched = Result<(KeySet, Option<Duration>), FetchError>;

/// What the store's task calls for each fetch, one call at a time.
pub(super) trait FetchKeys: Send + 'static {
    fn fetch(&mut self) -> impl Future<Output = Fetched> + Send + '_;
}

/// Fetches the key set over HTTP, every fetch bounded by the limits.
pub(super) struct KeyFetcher {
    pub(super) client: reqwest::Client,
    pub(super) source: KeySource,
    pub(super) limits: Limits,
    /// The JWKS URI found through discovery, until a fetch fails.
    discovered: Option<Url>,
}

impl KeyFetcher {
    pub(super) fn new(client: reqwest::Client, source: KeySource, limits: Limits) -> KeyFetcher {
        KeyFetcher { client, source, limits, discovered: None }
    }

    /// Where the key set is: the configured URI, or the one the issuer's metadata names
    /// (looked up once, then again after a failed fetch).
    async fn jwks_uri(&mut self) -> Result<Url, FetchError> {
        let issuer = match (&self.source, &self.discovered) {
            (KeySource::JwksUri(uri), _) | (KeySource::Issuer(_), Some(uri)) => return Ok(uri.clone()),
            (KeySource::Issuer(issuer), None) => issuer,
        };
        let metadata = discovery::discover(&self.client, issuer, self.limits).await?;
        let uri = fetch::parse_url(metadata.jwks_uri.as_deref().ok_or(FetchError::MissingJwksUri)?)?;
        Ok(self.discovered.insert(uri).clone())
    }

    async fn fetch_once(&mut self) -> Fetched {
        let uri = self.jwks_uri().await?;
        let fetched = fetch::get(&self.client, &uri, self.limits).await?;
        let keys = KeySet::from_jwks(&fetched.body).map_err(|_| FetchError::InvalidDocument("not a JWK Set"))?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok((keys, fetched.max_age))
    }
}

impl FetchKeys for KeyFetcher {
    /// Discovery and JWKS together, within the time limit.
    async fn fetch(&mut self) -> Fetched {
        let timeout = self.limits.timeout;
        let outcome = tokio::time::timeout(timeout, self.fetch_once()).await.unwrap_or(Err(FetchError::Timeout));
        if outcome.is_err() {
            // A discovered URI that fails may have moved: discover again next time.
            self.discovered = None;
        }
        outcome
    }
}
