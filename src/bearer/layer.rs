use std::sync::Arc;

use tower_layer::Layer;

use super::cache::VerifiedTokenCache;
use super::rejection::ResponseStyle;
use super::service::BearerAuth;
use crate::{Claims, Validator};

/// Validates each request's bearer token before the inner service sees it.
///
/// See the [module docs](crate::bearer) for what is checked and how rejections look.
#[must_use]
pub struct BearerAuthLayer<C = Claims> {
    pub(crate) config: Arc<Config<C>>,
}

pub(crate) struct Config<C> {
    pub(crate) validator: Validator<C>,
    pub(crate) style: Arc<ResponseStyle>,
    pub(crate) allow_query: bool,
    pub(crate) cache: Option<VerifiedTokenCache<C>>,
}

impl<C> Clone for Config<C> {
    fn clone(&self) -> Self {
        Config {
            validator: self.validator.clone(),
            style: self.style.clone(),
            allow_query: self.allow_query,
            cache: self.cache.clone(),
        }
    }
}

impl<C> BearerAuthLayer<C> {
    /// A layer that validates tokens with `validator`.
    pub fn new(validator: Validator<C>) -> Self {
        BearerAuthLayer {
            config: Arc::new(Config {
                validator,
                style: Arc::new(ResponseStyle::default()),
                allow_query: false,
                cache: None,
            }),
        }
    }

    fn config_mut(&mut self) -> &mut Config<C> {
        Arc::make_mut(&mut self.config)
    }

    /// The `realm` of the `WWW-Authenticate` challenge (RFC 6750 §3). Default: none.
    pub fn realm(mut self, realm: &str) -> Self {
        Arc::make_mut(&mut self.config_mut().style).realm(realm);
        self
    }

    /// Adds `error_description` to challenges and a JSON body to rejections. Off by
    /// default: the error code alone tells a client what to do, and the details help
    /// an attacker more than a legitimate caller.
    pub fn verbose_errors(mut self, verbose: bool) -> Self {
        Arc::make_mut(&mut self.config_mut().style).verbose = verbose;
        self
    }

    /// Also accepts the token in the `access_token` query parameter (RFC 6750 §2.3).
    ///
    /// Off by default: URLs end up in logs and `Referer` headers, which is why the
    /// RFC advises against this method.
    pub fn allow_query_token(mut self) -> Self {
        self.config_mut().allow_query = true;
        self
    }

    /// Keeps recently verified tokens in the verified-token cache, so a repeated token
    /// skips the signature check. Entries still go through the time checks, end at
    /// `exp`, and are dropped once their key leaves the issuer's key set.
    pub fn cache(mut self, cache: VerifiedTokenCache<C>) -> Self {
        self.config_mut().cache = Some(cache);
        self
    }

    /// The validator in use.
    pub fn validator(&self) -> &Validator<C> {
        &self.config.validator
    }
}

impl<C> Clone for BearerAuthLayer<C> {
    fn clone(&self) -> Self {
        BearerAuthLayer { config: self.config.clone() }
    }
}

impl<C> std::fmt::Debug for BearerAuthLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("validator", &self.config.validator)
            .field("style", &self.config.style)
            .field("allow_query", &self.config.allow_query)
            .field("cache", &self.config.cache.is_some())
            .finish()
    }
}

impl<S, C> Layer<S> for BearerAuthLayer<C> {
    type Service = BearerAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth { inner, config: self.config.clone() }
    }
}
