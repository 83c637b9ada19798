//! Where a remote key store fetches its keys: a JWKS URI, or the `jwks_uri` of the
//! issuer's metadata, found under the one endpoint rule of [`idp::endpoint`](crate::idp::endpoint).

use std::future::Future;
use std::time::Duration;

use crate::error::FetchError;
use crate::idp::endpoint::IdpEndpoint;
use crate::idp::fetch::{self, Limits};
use crate::jwk::KeySet;

/// One fetch of a key set: the keys, and the server's `max-age` if it sent one.
pub(super) type Fetched = Result<(KeySet, Option<Duration>), FetchError>;

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
}

impl KeyFetcher {
    async fn fetch_once(&self) -> Fetched {
        // The store paces its fetches itself (schedule, backoff, cooldown).
        let uri =
            self.endpoint.url_paced_by_owner(&self.client, self.limits.timeout).await.map_err(|failed| failed.error)?;
        let outcome = async {
            let fetched = fetch::get(&self.client, &uri, self.limits).await?;
            let keys = KeySet::from_jwks(&fetched.body).map_err(|_| FetchError::InvalidDocument("not a JWK Set"))?;
            if keys.is_empty() {
                return Err(FetchError::NoUsableKeys);
            }
            Ok((keys, fetched.max_age))
        }
        .await;
        if outcome.is_err() {
            // A discovered URI that fails may have moved: look it up again next time.
            self.endpoint.failed(&uri);
        }
        outcome
    }
}

impl FetchKeys for KeyFetcher {
    /// The lookup (when discovered) and the JWKS together, within the time limit.
    async fn fetch(&mut self) -> Fetched {
        let timeout = self.limits.timeout;
        tokio::time::timeout(timeout, self.fetch_once()).await.unwrap_or(Err(FetchError::Timeout))
    }
}
