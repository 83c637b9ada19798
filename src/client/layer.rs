use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::TokenCache;
use super::service::ClientCredentials;
use super::target::{Predicate, RequestTarget};

/// Attaches an access token from a [`TokenCache`] to outbound requests.
///
/// See the [module docs](crate::client) for the rules: which requests get a token,
/// what happens on a 401, and which bodies can be replayed.
#[derive(Clone)]
#[must_use]
pub struct ClientCredentialsLayer {
    pub(crate) config: Arc<Attach>,
}

/// What the layer and the reqwest middleware share.
#[derive(Clone)]
pub(crate) struct Attach {
    pub(crate) cache: TokenCache,
    pub(crate) predicate: Predicate,
    pub(crate) retry: bool,
}

impl ClientCredentialsLayer {
    /// A layer that attaches tokens from `cache` to https requests (and http ones to
    /// loopback), retrying once on a 401 when the request can be replayed.
    pub fn new(cache: TokenCache) -> Self {
        ClientCredentialsLayer { config: Arc::new(Attach { cache, predicate: Predicate::default(), retry: true }) }
    }

    /// Decides which requests get a token, instead of the default rule
    /// ([`RequestTarget::is_secure`]). A request that already has an `Authorization`
    /// header never gets one, whatever the predicate says.
    ///
    /// ```
    /// use tower_oauth::client::{ClientCredentialsLayer, TokenCache};
    /// # fn layer(cache: TokenCache) -> ClientCredentialsLayer {
    /// // Every request: the inner service only ever talks to one trusted endpoint.
    /// ClientCredentialsLayer::new(cache).attach_if(|_| true)
    /// # }
    /// ```
    pub fn attach_if(mut self, predicate: impl Fn(&RequestTarget<'_>) -> bool + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.config).predicate = Predicate::custom(predicate);
        self
    }

    /// Whether a 401 from the API causes one forced refresh and one retry of a
    /// replayable request; default `true`.
    pub fn retry_on_unauthorized(mut self, retry: bool) -> Self {
        Arc::make_mut(&mut self.config).retry = retry;
        self
    }

    /// The cache the tokens come from.
    pub fn cache(&self) -> &TokenCache {
        &self.config.cache
    }
}

impl<S> Layer<S> for ClientCredentialsLayer {
    type Service = ClientCredentials<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCredentials { inner, config: self.config.clone() }
    }
}

impl fmt::Debug for ClientCredentialsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

impl fmt::Debug for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsLayer")
            .field("cache", &self.cache)
            .field("predicate", &self.predicate)
            .field("retry_on_unauthorized", &self.retry)
            .finish()
    }
}
