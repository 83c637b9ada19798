//! Where a remote key store fetches its keys: a JWKS URI, or the `jwks_uri` of the
//! issuer's metadata, found under the one endpoint rule of [`idp::endpoint`](crate::idp::endpoint).

use std::future::Future;
use std::time::Duration;

use crate::error::FetchError;
use crate::idp::endpoint::IdpEndpoint;
use crate::idp::fetch::{Limits, Remembered};
use crate::jwk::KeySet;

/// One fetch of a key set.
pub(super) type Fetched = Result<Keys, FetchError>;

/// A key set fetched: the keys, the server's `max-age` if it sent one, and whether the
/// server said they had not changed (`304`).
#[derive(Debug)]
pub(super) struct Keys {
    pub(super) keys: KeySet,
    pub(super) max_age: Option<Duration>,
    pub(super) not_modified: bool,
}

/// What the store's task calls for each fetch, one call at a time.
pub(super) trait FetchKeys: Send + 'static {
    fn fetch(&mut self) -> impl Future<Output = Fetched> + Send + '_;
}

/// Fetches the key set over HTTP, every fetch bounded by the limits.
pub(super) struct KeyFetcher {
    pub(super) client: reqwest::Client,
    /// The configured JWKS URI, or the issuer's `jwks_uri`.
    pub(super) endpoint: IdpEndpoint,
    pub(super) limits: Limits,
    /// The last key set read: the next fetch of the same URI is conditional, and a
    /// `304` keeps these keys.
    last: Remembered<KeySet>,
}

impl KeyFetcher {
    pub(super) fn new(client: reqwest::Client, endpoint: IdpEndpoint, limits: Limits) -> KeyFetcher {
        KeyFetcher { client, endpoint, limits, last: Remembered::default() }
    }

    async fn fetch_once(&mut self) -> Fetched {
        // The store paces its fetches itself (schedule, backoff, cooldown).
        let uri =
            self.endpoint.url_paced_by_owner(&self.client, self.limits.timeout).await.map_err(|failed| failed.error)?;
        let outcome = self.last.get(&self.client, &uri, self.limits, parse_key_set).await.map(|read| {
            if read.not_modified {
                tracing::debug!("key set not modified");
            }
            Keys { keys: read.value, max_age: read.max_age, not_modified: read.not_modified }
        });
        if outcome.is_err() {
            // A discovered URI that fails may have moved: look it up again next time.
            self.endpoint.failed(&uri);
        }
        outcome
    }
}

/// A JWK Set with at least one key that can verify signatures.
fn parse_key_set(body: &[u8]) -> Result<KeySet, FetchError> {
    let keys = KeySet::from_jwks(body).map_err(|_| FetchError::InvalidDocument("not a JWK Set"))?;
    if keys.is_empty() { Err(FetchError::NoUsableKeys) } else { Ok(keys) }
}

impl FetchKeys for KeyFetcher {
    /// The lookup (when discovered) and the JWKS together, within the time limit.
    async fn fetch(&mut self) -> Fetched {
        let timeout = self.limits.timeout;
        tokio::time::timeout(timeout, self.fetch_once()).await.unwrap_or(Err(FetchError::Timeout))
    }
}
