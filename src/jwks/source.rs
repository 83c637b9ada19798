//! Where a remote key store fetches its keys: a JWKS URI, or the `jwks_uri` of the
//! issuer's metadata, found under the one endpoint rule of [`idp::endpoint`](crate::idp::endpoint).

use std::future::Future;
use std::time::Duration;

use crate::error::FetchError;
use crate::idp::endpoint::IdpEndpoint;
use std::sync::Arc;

use url::Url;

use crate::idp::fetch::{self, Conditional, Limits, Version};
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
    /// The last key set read, where from, and its version: the next fetch of the same
    /// URI is conditional, and a `304` keeps these keys.
    last: Option<(Arc<Url>, Version, KeySet)>,
}

impl KeyFetcher {
    pub(super) fn new(client: reqwest::Client, endpoint: IdpEndpoint, limits: Limits) -> KeyFetcher {
        KeyFetcher { client, endpoint, limits, last: None }
    }

    async fn fetch_once(&mut self) -> Fetched {
        // The store paces its fetches itself (schedule, backoff, cooldown).
        let uri =
            self.endpoint.url_paced_by_owner(&self.client, self.limits.timeout).await.map_err(|failed| failed.error)?;
        let last = self.last.take().filter(|(from, _, _)| *from == uri);
        let version = last.as_ref().map(|(_, version, _)| version.clone()).unwrap_or_default();
        let outcome = async {
            let fetched = match fetch::get_if_modified(&self.client, &uri, self.limits, &version).await? {
                Conditional::NotModified { max_age } => {
                    let keys =
                        last.map(|(_, _, keys)| keys).ok_or(FetchError::Status(http::StatusCode::NOT_MODIFIED))?;
                    tracing::debug!("key set not modified");
                    return Ok((Keys { keys, max_age, not_modified: true }, version));
                }
                Conditional::Modified(fetched) => fetched,
            };
            let keys = KeySet::from_jwks(&fetched.body).map_err(|_| FetchError::InvalidDocument("not a JWK Set"))?;
            if keys.is_empty() {
                return Err(FetchError::NoUsableKeys);
            }
            Ok((Keys { keys, max_age: fetched.max_age, not_modified: false }, fetched.version))
        }
        .await;
        let outcome = outcome.map(|(fetched, version)| {
            if version.is_known() {
                self.last = Some((uri.clone(), version, fetched.keys.clone()));
            }
            fetched
        });
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
