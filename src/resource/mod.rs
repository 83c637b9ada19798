//! OAuth 2.0 Protected Resource Metadata (RFC 9728): how a client that knows only this
//! server's URL finds the authorization server to get a token from, and what token to
//! ask for.
//!
//! A client calls the resource, gets a `401` whose challenge carries
//! `resource_metadata="…"` (added by [`BearerAuthLayer`] once the
//! validator has a [resource identifier](crate::ValidatorBuilder::resource)), fetches
//! that document, and asks one of its `authorization_servers` for a token whose
//! audience is the `resource` (RFC 8707). Model Context Protocol clients work this way.
//!
//! [`ProtectedResourceMetadata::from_layer`] fills in what the layer already knows: the
//! resource, the trusted issuers as `authorization_servers`, the bearer methods, the
//! `scope` offered in challenges, and the DPoP algorithms and whether DPoP is required.
//! The document is served, without authentication, by
//! [`ProtectedResourceMetadataService`] (any Tower stack) or
//! [`ProtectedResourceMetadata::router`] (axum), at the RFC 9728 §3.1 URL:
//! `/.well-known/oauth-protected-resource/mcp` for `https://host/mcp`, and at
//! `/.well-known/oauth-protected-resource` too.
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::post};
//! use tower_oauth::bearer::RequireScopeLayer;
//! use tower_oauth::resource::ProtectedResourceMetadata;
//! use tower_oauth::{BearerAuthLayer, Validator};
//!
//! let validator = Validator::builder()
//!     .issuer("https://login.example.com")
//!     .resource("https://api.example.com/mcp") // the audience, too
//!     .build()?;
//! let auth = BearerAuthLayer::new(validator).challenge_scope(["mcp"]);
//! let metadata = ProtectedResourceMetadata::from_layer(&auth)?
//!     .resource_name("Example MCP server")
//!     .resource_documentation("https://docs.example.com/mcp")
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/mcp", post(|| async { "…" }))
//!     .route_layer(RequireScopeLayer::new(["mcp"]))
//!     .layer(auth)
//!     .merge(metadata.router());
//! # Ok(()) }
//! ```

mod service;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

pub use service::ProtectedResourceMetadataService;

use crate::BearerAuthLayer;
use crate::client::ClientKey;
use crate::error::BuildError;
use crate::idp::fetch;
use crate::uri::{ResourceId, WELL_KNOWN};

/// How long clients may keep the document by default (`Cache-Control: max-age`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// A protected resource's metadata document (RFC 9728 §2), checked and serialised once,
/// ready to serve.
///
/// Cheap to clone. Built with [`ProtectedResourceMetadata::builder`] or
/// [`ProtectedResourceMetadata::from_layer`].
#[derive(Clone)]
pub struct ProtectedResourceMetadata {
    inner: Arc<Inner>,
}

struct Inner {
    resource: ResourceId,
    url: String,
    path: String,
    json: Bytes,
    max_age: Duration,
    serve_root: bool,
}

impl std::fmt::Debug for ProtectedResourceMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedResourceMetadata")
            .field("resource", &self.resource())
            .field("url", &self.url())
            .field("document", &self.as_json())
            .finish()
    }
}

impl ProtectedResourceMetadata {
    /// A builder for the metadata of `resource`: this server's resource identifier,
    /// https (or http on loopback) without a fragment.
    pub fn builder(resource: impl Into<String>) -> ProtectedResourceMetadataBuilder {
        ProtectedResourceMetadataBuilder::new(resource.into())
    }

    /// A builder that knows what `layer` does, so nothing is stated twice:
    /// - `resource`: the validator's [resource identifier](crate::ValidatorBuilder::resource);
    /// - `authorization_servers`: the validator's trusted issuers now, in the order they
    ///   were added (those named, not issuer patterns: list those with
    ///   [`authorization_servers`](ProtectedResourceMetadataBuilder::authorization_servers),
    ///   as issuers added at run time, since the document is built once);
    /// - `bearer_methods_supported`: `header`, and `query` when the layer takes tokens
    ///   there;
    /// - `scopes_supported`: the scopes the layer offers in challenges
    ///   ([`challenge_scope`](crate::BearerAuthLayer::challenge_scope));
    /// - `dpop_signing_alg_values_supported` and `dpop_bound_access_tokens_required`:
    ///   from the layer's DPoP verifier and the validator's DPoP policy.
    ///
    /// Each can still be replaced on the builder.
    ///
    /// # Errors
    ///
    /// [`BuildError::MissingResource`] when the validator has no resource identifier.
    pub fn from_layer<C>(layer: &BearerAuthLayer<C>) -> Result<ProtectedResourceMetadataBuilder, BuildError> {
        let validator = layer.validator();
        let resource = validator.resource().ok_or(BuildError::MissingResource)?;
        let style = layer.style();
        let mut builder = ProtectedResourceMetadata::builder(resource)
            .authorization_servers(validator.issuers().names())
            .bearer_methods_supported(if layer.allows_query_token() {
                &["header", "query"][..]
            } else {
                &["header"][..]
            });
        if let Some(scope) = &style.scope {
            builder = builder.scopes_supported(scope.split(' '));
        }
        if let Some(dpop) = &style.dpop {
            builder = builder
                .dpop_signing_alg_values_supported(dpop.algs.split(' '))
                .dpop_bound_access_tokens_required(!dpop.bearer);
        }
        Ok(builder)
    }

    /// The resource identifier, as configured.
    pub fn resource(&self) -> &str {
        self.inner.resource.as_str()
    }

    /// The absolute URL of the document (RFC 9728 §3.1): what challenges name in
    /// `resource_metadata`.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The paths the document is served at: the RFC 9728 §3.1 path, and
    /// `/.well-known/oauth-protected-resource` as well unless
    /// [`serve_root`](ProtectedResourceMetadataBuilder::serve_root) turned it off (the
    /// same path when the resource has none).
    pub fn paths(&self) -> Vec<&str> {
        let mut paths = vec![self.inner.path.as_str()];
        if self.inner.serve_root && self.inner.path != WELL_KNOWN {
            paths.push(WELL_KNOWN);
        }
        paths
    }

    /// The document, as served.
    pub fn as_json(&self) -> &str {
        // Serialised from a `serde_json::Value`: UTF-8.
        std::str::from_utf8(&self.inner.json).unwrap_or_default()
    }

    /// A Tower service that serves the document at [`paths`](Self::paths), and answers
    /// 404 elsewhere.
    pub fn service(&self) -> ProtectedResourceMetadataService {
        ProtectedResourceMetadataService::new(self.clone())
    }

    /// An axum router serving the document at [`paths`](Self::paths), to
    /// [`merge`](axum::Router::merge) beside (not behind) the bearer layer.
    #[cfg(feature = "axum")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let service = self.service();
        self.paths().into_iter().fold(axum::Router::new(), |router, path| router.route_service(path, service.clone()))
    }

    pub(crate) fn json(&self) -> &Bytes {
        &self.inner.json
    }

    pub(crate) fn max_age(&self) -> Duration {
        self.inner.max_age
    }

    pub(crate) fn serves(&self, path: &str) -> bool {
        path == self.inner.path || (self.inner.serve_root && path == WELL_KNOWN)
    }
}

/// The members of RFC 9728 §2, as configured.
#[derive(Debug, Default, Serialize)]
struct Document {
    resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bearer_methods_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource_encryption_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resource_encryption_enc_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_certificate_bound_access_tokens: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_details_types_supported: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dpop_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_bound_access_tokens_required: Option<bool>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Builds a [`ProtectedResourceMetadata`]; every member but `resource` is optional, and
/// those left unset are left out of the document.
#[must_use]
pub struct ProtectedResourceMetadataBuilder {
    document: Document,
    signer: Option<(ClientKey, String)>,
    max_age: Duration,
    serve_root: bool,
}

impl std::fmt::Debug for ProtectedResourceMetadataBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedResourceMetadataBuilder")
            .field("document", &self.document)
            .field("signed_by", &self.signer.as_ref().map(|(key, issuer)| (key, issuer)))
            .field("max_age", &self.max_age)
            .field("serve_root", &self.serve_root)
            .finish()
    }
}

fn strings<I, T>(values: I) -> Vec<String>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    values.into_iter().map(|v| v.as_ref().to_owned()).filter(|v| !v.is_empty()).collect()
}

/// Members this crate writes itself; [`ProtectedResourceMetadataBuilder::member`] does
/// not replace them.
const OWN_MEMBERS: &[&str] = &[
    "resource",
    "authorization_servers",
    "jwks_uri",
    "scopes_supported",
    "bearer_methods_supported",
    "resource_signing_alg_values_supported",
    "resource_encryption_alg_values_supported",
    "resource_encryption_enc_values_supported",
    "resource_name",
    "resource_documentation",
    "resource_policy_uri",
    "resource_tos_uri",
    "tls_client_certificate_bound_access_tokens",
    "authorization_details_types_supported",
    "dpop_signing_alg_values_supported",
    "dpop_bound_access_tokens_required",
    "signed_metadata",
];

impl ProtectedResourceMetadataBuilder {
    fn new(resource: String) -> Self {
        ProtectedResourceMetadataBuilder {
            document: Document { resource, ..Document::default() },
            signer: None,
            max_age: DEFAULT_MAX_AGE,
            serve_root: true,
        }
    }

    /// `authorization_servers`: the issuers of the authorization servers that issue
    /// tokens for this resource (RFC 8414 issuer identifiers). Replaces the list.
    pub fn authorization_servers<I, T>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.authorization_servers = strings(issuers);
        self
    }

    /// `jwks_uri`: where this resource's public keys are: those that verify its
    /// signed responses, or that clients encrypt to.
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.document.jwks_uri = Some(uri.into());
        self
    }

    /// `scopes_supported`: the scopes clients may ask for to reach this resource.
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.scopes_supported = strings(scopes);
        self
    }

    /// `bearer_methods_supported`: how tokens may be sent, of `header`, `body` and
    /// `query` (RFC 6750 §2). An empty list says no bearer method is supported (RFC
    /// 9728 §2), as for a resource that takes only DPoP.
    pub fn bearer_methods_supported<I, T>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.bearer_methods_supported = strings(methods);
        self
    }

    /// `resource_signing_alg_values_supported`: the JWS algorithms this resource signs
    /// its responses with.
    pub fn resource_signing_alg_values_supported<I, T>(mut self, algs: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.resource_signing_alg_values_supported = strings(algs);
        self
    }

    /// `resource_encryption_alg_values_supported` and
    /// `resource_encryption_enc_values_supported`: the JWE key management and content
    /// encryption algorithms this resource decrypts, for a resource that accepts
    /// encrypted requests (its keys at [`jwks_uri`](Self::jwks_uri)).
    ///
    /// These two were members in drafts of RFC 9728 and are not registered by the RFC
    /// itself: clients that do not know them ignore them (§2), as they must any member
    /// they do not understand.
    pub fn resource_encryption_values_supported<I, T, J, U>(mut self, algs: I, encs: J) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
        J: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        self.document.resource_encryption_alg_values_supported = strings(algs);
        self.document.resource_encryption_enc_values_supported = strings(encs);
        self
    }

    /// `resource_name`: a name for people.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.document.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation`: a page for developers.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.document.resource_documentation = Some(url.into());
        self
    }

    /// `resource_policy_uri`: how data from the resource may be used.
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.document.resource_policy_uri = Some(url.into());
        self
    }

    /// `resource_tos_uri`: the resource's terms of service.
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.document.resource_tos_uri = Some(url.into());
        self
    }

    /// `tls_client_certificate_bound_access_tokens`: whether the resource accepts
    /// certificate-bound tokens (RFC 8705), as it does once
    /// [client certificates](crate::mtls) reach the bearer layer.
    pub fn tls_client_certificate_bound_access_tokens(mut self, supported: bool) -> Self {
        self.document.tls_client_certificate_bound_access_tokens = Some(supported);
        self
    }

    /// `authorization_details_types_supported`: the RFC 9396 authorization details
    /// types the resource understands.
    pub fn authorization_details_types_supported<I, T>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.authorization_details_types_supported = strings(types);
        self
    }

    /// `dpop_signing_alg_values_supported`: the DPoP proof algorithms accepted (RFC
    /// 9449).
    pub fn dpop_signing_alg_values_supported<I, T>(mut self, algs: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.document.dpop_signing_alg_values_supported = strings(algs);
        self
    }

    /// `dpop_bound_access_tokens_required`: whether only DPoP-bound tokens are
    /// accepted. Written only when `true` or set here: its absence means `false`.
    pub fn dpop_bound_access_tokens_required(mut self, required: bool) -> Self {
        self.document.dpop_bound_access_tokens_required = required.then_some(true);
        self
    }

    /// Another member (an extension, RFC 9728 §8.1): ignored for a member that has a
    /// method of its own.
    pub fn member(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !OWN_MEMBERS.contains(&name.as_str()) {
            self.document.extra.insert(name, value.into());
        }
        self
    }

    /// Adds `signed_metadata` (RFC 9728 §2.2): the same members as a JWT signed by
    /// `key`, with `iss` set to `issuer`, the party that vouches for them. A client that
    /// trusts `issuer`'s keys uses the signed values instead of the plain ones.
    pub fn signed_metadata(mut self, key: ClientKey, issuer: impl Into<String>) -> Self {
        self.signer = Some((key, issuer.into()));
        self
    }

    /// How long clients may keep the document (`Cache-Control: max-age`). Default 5
    /// minutes.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Whether to serve the document at `/.well-known/oauth-protected-resource` too,
    /// for a resource with a path. Default `true`: clients that do not insert the
    /// path find it there. Turn it off when one host serves several resources.
    pub fn serve_root(mut self, serve: bool) -> Self {
        self.serve_root = serve;
        self
    }

    /// Checks the document and serialises it.
    ///
    /// # Errors
    ///
    /// - [`BuildError::Url`] or [`BuildError::InvalidUrl`] for a `resource` that is not
    ///   an https (or loopback http) URL without a fragment, and [`BuildError::Url`] for
    ///   an authorization server or `jwks_uri` that is not https (or loopback http);
    /// - [`BuildError::InvalidUrl`] for a documentation, policy or terms URL that is
    ///   not an absolute URL;
    /// - [`BuildError::MetadataSigning`] when `signed_metadata` cannot be signed.
    pub fn build(self) -> Result<ProtectedResourceMetadata, BuildError> {
        let mut document = self.document;
        let resource = ResourceId::parse(&document.resource)?;
        for server in &document.authorization_servers {
            fetch::check_url(server)?;
        }
        if let Some(jwks_uri) = &document.jwks_uri {
            fetch::check_url(jwks_uri)?;
        }
        for url in [&document.resource_documentation, &document.resource_policy_uri, &document.resource_tos_uri]
            .into_iter()
            .flatten()
        {
            url::Url::parse(url).map_err(|_| BuildError::InvalidUrl)?;
        }
        let mut seen = std::collections::HashSet::new();
        document.authorization_servers.retain(|server| seen.insert(server.clone()));
        let mut value = serde_json::to_value(&document).map_err(|_| BuildError::InvalidUrl)?;
        if let (Some((key, issuer)), Value::Object(members)) = (&self.signer, &mut value) {
            let mut claims = members.clone();
            claims.insert("iss".into(), Value::String(issuer.clone()));
            claims.insert("iat".into(), Value::from(crate::signing::now_secs()));
            let jwt = key.sign(&Value::Object(claims).to_string()).map_err(BuildError::MetadataSigning)?;
            members.insert("signed_metadata".into(), Value::String(jwt));
        }
        Ok(ProtectedResourceMetadata {
            inner: Arc::new(Inner {
                url: resource.metadata_url(),
                path: resource.metadata_path(),
                resource,
                json: Bytes::from(value.to_string()),
                max_age: self.max_age,
                serve_root: self.serve_root,
            }),
        })
    }
}

#[cfg(test)]
mod tests;
