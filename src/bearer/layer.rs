use std::sync::Arc;

use tower_layer::Layer;

use super::cache::VerifiedTokenCache;
use super::rejection::{DpopChallenge, ResponseStyle, quoted_text};
use super::service::BearerAuth;
use crate::validate::DpopMode;
use crate::validate::dpop::DpopVerifier;
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
    /// The same, for requests with the `DPoP` scheme.
    pub(crate) dpop_style: Arc<ResponseStyle>,
    pub(crate) allow_query: bool,
    pub(crate) cache: Option<VerifiedTokenCache<C>>,
    pub(crate) dpop: Option<DpopVerifier>,
}

impl<C> Clone for Config<C> {
    fn clone(&self) -> Self {
        Config {
            validator: self.validator.clone(),
            style: self.style.clone(),
            dpop_style: self.dpop_style.clone(),
            allow_query: self.allow_query,
            cache: self.cache.clone(),
            dpop: self.dpop.clone(),
        }
    }
}

impl<C> BearerAuthLayer<C> {
    /// A layer that validates tokens with `validator`.
    ///
    /// When the validator has a [resource identifier](crate::ValidatorBuilder::resource),
    /// every challenge carries `resource_metadata` with the URL of its metadata (RFC
    /// 9728 §5.1), which [`ProtectedResourceMetadata`](crate::resource::ProtectedResourceMetadata)
    /// serves.
    pub fn new(validator: Validator<C>) -> Self {
        let metadata_url = validator.resource_id().map(|resource| resource.metadata_url());
        let layer = BearerAuthLayer {
            config: Arc::new(Config {
                validator,
                style: Arc::new(ResponseStyle::default()),
                dpop_style: Arc::new(ResponseStyle::default()),
                allow_query: false,
                cache: None,
                dpop: None,
            }),
        };
        layer.restyle(|style| style.resource_metadata = metadata_url.as_deref().map(quoted_text))
    }

    fn config_mut(&mut self) -> &mut Config<C> {
        Arc::make_mut(&mut self.config)
    }

    /// Offers `scopes` in every challenge (`scope`, RFC 6750 §3): what a client without
    /// a token, or with an unusable one, should ask the authorization server for. The
    /// MCP authorization specification asks servers to name them.
    ///
    /// It only words the challenges: a route that requires scopes says so with a
    /// [`RequireScopeLayer`](super::RequireScopeLayer), whose 403 names its own.
    pub fn challenge_scope<I, T>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(|s| s.as_ref().to_owned()).filter(|s| !s.is_empty()).collect();
        let scope = (!scopes.is_empty()).then(|| quoted_text(&scopes.join(" ")));
        self.restyle(|style| style.scope = scope)
    }

    /// Points challenges at resource metadata served at `url` (`resource_metadata`,
    /// RFC 9728 §5.1), instead of the URL derived from the validator's
    /// [resource identifier](crate::ValidatorBuilder::resource): for metadata that
    /// describes a resource whose tokens carry another audience, or that another host
    /// serves. Characters a quoted string cannot hold become `?`.
    pub fn resource_metadata_url(self, url: &str) -> Self {
        let url = quoted_text(url);
        self.restyle(|style| style.resource_metadata = Some(url))
    }

    /// How rejections are worded: what resource metadata describes of the layer.
    pub(crate) fn style(&self) -> &ResponseStyle {
        &self.config.style
    }

    /// Whether the token may come in the query.
    pub(crate) fn allows_query_token(&self) -> bool {
        self.config.allow_query
    }

    /// Rewords the rejections, for plain and for DPoP requests alike.
    fn restyle(mut self, change: impl FnOnce(&mut ResponseStyle)) -> Self {
        let config = self.config_mut();
        let style = Arc::make_mut(&mut config.style);
        change(style);
        // A validator whose policy is `Off` does not offer DPoP, even if an issuer's own
        // policy accepts it.
        let mode = config.validator.default_dpop_mode();
        style.dpop = config
            .dpop
            .as_ref()
            .filter(|_| mode != DpopMode::Off)
            .map(|dpop| DpopChallenge { algs: dpop.algs().to_owned(), bearer: mode != DpopMode::Required });
        config.dpop_style = Arc::new(ResponseStyle { dpop_request: true, ..style.clone() });
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenge (RFC 6750 §3). Default: none.
    pub fn realm(self, realm: &str) -> Self {
        self.restyle(|style| style.realm(realm))
    }

    /// Accepts DPoP-bound tokens (RFC 9449) with the `DPoP` scheme, their proofs
    /// checked by `verifier`; see [`dpop`](crate::validate::dpop) for the checks, and
    /// [`DpopMode`] for which issuers' tokens may or must come with proofs.
    ///
    /// Challenges then offer both schemes (`DPoP` alone when the validator's policy is
    /// [`DpopMode::Required`]), with the proof algorithms in `algs`. Without a verifier,
    /// the `DPoP` scheme is not recognised, and a DPoP-bound token is never accepted.
    pub fn dpop(mut self, verifier: DpopVerifier) -> Self {
        self.config_mut().dpop = Some(verifier);
        self.restyle(|_| {})
    }

    /// Adds `error_description` to challenges and a JSON body to rejections. Off by
    /// default: the error code alone tells a client what to do, and the details help
    /// an attacker more than a legitimate caller.
    pub fn verbose_errors(self, verbose: bool) -> Self {
        self.restyle(|style| style.verbose = verbose)
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
            .field("dpop", &self.config.dpop)
            .finish()
    }
}

impl<S, C> Layer<S> for BearerAuthLayer<C> {
    type Service = BearerAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth { inner, config: self.config.clone() }
    }
}
