//! The built-in token source: an OAuth 2.0 token endpoint (RFC 6749 §3.2).

use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use url::Url;

use super::grant::{AssertionSource, JWT_BEARER, TOKEN_EXCHANGE, TokenExchange};
use super::key::{CacheKey, GrantKind, normalize_scope};
use super::source::{FetchFuture, TokenSource};
use super::{DpopKey, ErrorCode, TokenError, TokenResponse};
use crate::Secret;
use crate::error::BuildError;
use crate::idp::client_auth::{AssertionAudience, Audience, AuthMethod, ClientAuth, ClientCredential, form_urlencoded};
use crate::idp::endpoint::{IdpEndpoint, MetadataMember};
use crate::idp::fetch::{self, DEFAULT_MAX_BODY_SIZE, Form, Limits, Target, client_or_default};

/// An OAuth 2.0 token endpoint and the client's credentials and grant: the
/// [`TokenSource`] a [`TokenCache`](super::TokenCache) normally uses.
///
/// Every request is a `POST` of `application/x-www-form-urlencoded` parameters with
/// `Accept: application/json`, bounded by a timeout (default 10 s) and a response body
/// cap (default 64 KiB), to an https URL (or http on loopback). Redirects are not
/// followed: a redirected token request would carry the credentials somewhere else.
///
/// Grants:
/// - `client_credentials` (RFC 6749 §4.4), the default;
/// - `refresh_token` (§6) from [`refresh_token`](TokenEndpointBuilder::refresh_token):
///   each response's new refresh token replaces the old one (rotation), and `scope` is
///   sent when configured (a subset of the original grant);
/// - an authorization code (§4.1.3) from
///   [`authorization_code`](TokenEndpointBuilder::authorization_code), exchanged once,
///   then refreshed with the refresh token it returned;
/// - the JWT bearer grant (RFC 7523 §2.1) from [`jwt_bearer`](TokenEndpointBuilder::jwt_bearer):
///   an assertion, read afresh from its [`AssertionSource`] at each request;
/// - token exchange (RFC 8693) from [`token_exchange`](TokenEndpointBuilder::token_exchange).
///
/// Client authentication follows the credential given to the builder (a secret, a
/// [`ClientKey`](super::ClientKey), the TLS certificate, or none) and
/// [`auth_method`](TokenEndpointBuilder::auth_method): see [`AuthMethod`]. A client
/// that authenticates with its TLS certificate, or has a TLS identity, uses the
/// issuer's `mtls_endpoint_aliases` when the endpoint is discovered (RFC 8705 §5).
///
/// `Debug` shows neither the secret nor any token.
///
/// ```no_run
/// use tower_oauth::client::{AuthMethod, TokenEndpoint};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token", "my-service", "s3cret")
///     .auth_method(AuthMethod::ClientSecretPost)
///     .scope("orders:read")
///     .resource("https://orders.example")
///     .build()?;
/// let response = endpoint.request_token().await?;
/// println!("expires in {:?}", response.expires_in());
/// # Ok(()) }
/// ```
pub struct TokenEndpoint {
    client: reqwest::Client,
    endpoint: IdpEndpoint,
    auth: ClientAuth,
    grant: GrantState,
    key: CacheKey,
    limits: Limits,
    dpop: Option<DpopKey>,
}

enum GrantState {
    ClientCredentials,
    /// `None` once a server answered without a refresh token where one was needed.
    RefreshToken(Option<Secret>),
    Code {
        code: Secret,
        redirect_uri: String,
    },
    JwtBearer(AssertionSource),
    TokenExchange(TokenExchange),
}

impl TokenEndpoint {
    /// Configures a token endpoint at `token_url` for the client `client_id`, which
    /// authenticates with `credential`: a client secret (`&str`, `String`,
    /// [`Secret`]), a [`ClientKey`](super::ClientKey), or a [`ClientCredential`].
    pub fn builder(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        credential: impl Into<ClientCredential>,
    ) -> TokenEndpointBuilder {
        TokenEndpointBuilder::new(Target::Url(token_url.into()), client_id.into(), credential.into())
    }

    /// Like [`builder`](Self::builder), with the token endpoint found in `issuer`'s
    /// metadata (OpenID Connect discovery, then RFC 8414) at the first request. The
    /// metadata must name the same issuer, and the endpoint must be https (or loopback).
    ///
    /// Client assertions are then aimed at the issuer (FAPI 2.0), unless
    /// [`assertion_audience`](TokenEndpointBuilder::assertion_audience) says otherwise.
    pub fn discover(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        credential: impl Into<ClientCredential>,
    ) -> TokenEndpointBuilder {
        TokenEndpointBuilder::new(Target::Issuer(issuer.into()), client_id.into(), credential.into())
    }

    /// What the tokens are for.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Requests a token now, and advances the grant: a returned refresh token replaces
    /// the previous one, and an authorization code is used only once.
    ///
    /// Calling this while a [`TokenCache`](super::TokenCache) uses the same grant
    /// elsewhere would spend a rotating refresh token twice; the cache owns its source
    /// for that reason.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] saying what failed: the server's RFC 6749 error, a status, the
    /// exchange, or the response.
    pub async fn request_token(&mut self) -> Result<TokenResponse, TokenError> {
        let assertion = match &self.grant {
            GrantState::JwtBearer(source) => match source.read().await {
                Ok(assertion) => Some(assertion),
                Err(error) => {
                    let error = TokenError::Assertion(std::sync::Arc::new(error));
                    crate::telemetry::token_request(self.grant.kind().as_str(), metric_result(&Err(error.clone())));
                    return Err(error);
                }
            },
            _ => None,
        };
        let result = self.send(&self.grant, assertion.as_ref()).await;
        if let Ok(response) = &result {
            self.grant.advance(response);
        }
        result
    }

    /// Exchanges `exchange`'s subject token at this endpoint (RFC 8693), with this
    /// endpoint's client authentication, target and scope, whatever its own grant: one
    /// request, no state. For the [`TokenExchangeLayer`](super::TokenExchangeLayer).
    pub(crate) async fn exchange(&self, exchange: &TokenExchange) -> Result<TokenResponse, TokenError> {
        self.send(&GrantState::TokenExchange(exchange.clone()), None).await
    }

    /// One token request for `grant`, to the endpoint found now: retried once for a
    /// DPoP nonce, counted, and reported when it suggests the endpoint moved.
    async fn send(&self, grant: &GrantState, assertion: Option<&Secret>) -> Result<TokenResponse, TokenError> {
        let url = self
            .endpoint
            .url(&self.client, self.limits.timeout)
            .await
            .map_err(|failed| TokenError::Discovery(failed.error))?;
        let mut result = self.post_once(&url, grant, assertion).await;
        // RFC 9449 §8: a server that wants a nonce says so with `use_dpop_nonce` and
        // sends one; the request is made once more with it.
        if self.dpop.is_some()
            && let Err(TokenError::OAuth(error)) = &result
            && *error.code() == ErrorCode::UseDpopNonce
        {
            result = self.post_once(&url, grant, assertion).await;
        }
        crate::telemetry::token_request(grant.kind().as_str(), metric_result(&result));
        // Anything but the server's considered answer may mean the endpoint moved: a
        // discovered one is looked up again at the next request.
        if let Err(error) = &result
            && error.oauth().is_none()
        {
            self.endpoint.failed(&url);
        }
        result
    }

    /// The form body (RFC 6749 Appendix B) of `grant`, with the JWT bearer grant's
    /// `assertion`. It holds secrets; it lives only as long as the request.
    fn form(&self, grant: &GrantState, assertion: Option<&Secret>) -> Result<Form, TokenError> {
        let mut form = Form::default();
        match grant {
            GrantState::ClientCredentials => {
                form.pair("grant_type", b"client_credentials");
                self.extras(&mut form, true);
            }
            GrantState::RefreshToken(Some(token)) => {
                form.pair("grant_type", b"refresh_token");
                form.pair("refresh_token", token.expose());
                self.extras(&mut form, true);
            }
            GrantState::RefreshToken(None) => return Err(TokenError::NoRefreshToken),
            GrantState::Code { code, redirect_uri } => {
                // RFC 6749 §4.1.3: the scope was settled at the authorization request.
                form.pair("grant_type", b"authorization_code");
                form.pair("code", code.expose());
                form.pair("redirect_uri", redirect_uri.as_bytes());
                self.extras(&mut form, false);
            }
            GrantState::JwtBearer(_) => {
                form.pair("grant_type", JWT_BEARER.as_bytes());
                form.pair("assertion", assertion.map_or(&b""[..], Secret::expose));
                self.extras(&mut form, true);
            }
            GrantState::TokenExchange(exchange) => {
                form.pair("grant_type", TOKEN_EXCHANGE.as_bytes());
                exchange.write(&mut form);
                self.extras(&mut form, true);
            }
        }
        Ok(form)
    }

    fn extras(&self, form: &mut Form, with_scope: bool) {
        if with_scope && let Some(scope) = &self.key.scope {
            form.pair("scope", scope.as_bytes());
        }
        // RFC 8707 §2: one `resource` parameter per resource.
        for resource in &self.key.resources {
            form.pair("resource", resource.as_bytes());
        }
        if let Some(audience) = &self.key.audience {
            form.pair("audience", audience.as_bytes());
        }
    }

    /// Every form a credential of this endpoint's requests takes on the wire: the
    /// client's (from its authentication), and the refresh token or code, raw and
    /// form-urlencoded. An error response that echoes any of them is redacted.
    fn credentials(&self, grant: &GrantState, assertion: Option<&Secret>) -> Vec<Vec<u8>> {
        let mut secrets = self.auth.credentials();
        if let Some(assertion) = assertion {
            secrets.push(assertion.expose().to_vec());
        }
        match grant {
            GrantState::RefreshToken(Some(token)) => {
                secrets.extend([token.expose().to_vec(), form_urlencoded(token.expose())])
            }
            GrantState::Code { code, .. } => secrets.extend([code.expose().to_vec(), form_urlencoded(code.expose())]),
            GrantState::TokenExchange(exchange) => {
                let subject = exchange.subject_token.expose();
                secrets.extend([subject.to_vec(), form_urlencoded(subject)]);
                if let Some((actor, _)) = &exchange.actor {
                    secrets.extend([actor.expose().to_vec(), form_urlencoded(actor.expose())]);
                }
            }
            GrantState::ClientCredentials | GrantState::RefreshToken(None) | GrantState::JwtBearer(_) => {}
        }
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }

    /// One token request: the form, the client's authentication and, with a DPoP key,
    /// a proof with the nonce this server last sent.
    async fn post_once(
        &self,
        url: &Url,
        grant: &GrantState,
        assertion: Option<&Secret>,
    ) -> Result<TokenResponse, TokenError> {
        let mut form = self.form(grant, assertion)?;
        let to = Audience { issuer: self.endpoint.issuer(), endpoint: url.as_str() };
        let authorization = self.auth.authenticate(&mut form, to).map_err(TokenError::ClientAssertion)?;
        let proof = match &self.dpop {
            Some(key) => Some(key.proof_for(&Method::POST, url, None).map_err(TokenError::DpopProof)?),
            None => None,
        };
        let posted = self.post(url, authorization.as_ref(), proof.as_deref(), form.into_bytes(), grant, assertion);
        match posted.await {
            // A refusal of Basic credentials that the RFC's encoding changed may come
            // from a server that does not decode them: say so.
            Err(error) if self.auth.encoding_may_matter() && refuses_client(&error) => {
                Err(TokenError::BasicEncoding(Box::new(error)))
            }
            result => result,
        }
    }

    async fn post(
        &self,
        url: &Url,
        authorization: Option<&HeaderValue>,
        proof: Option<&str>,
        body: Vec<u8>,
        grant: &GrantState,
        assertion: Option<&Secret>,
    ) -> Result<TokenResponse, TokenError> {
        let posted = fetch::post_form_with_proof(&self.client, url, authorization, proof, body, self.limits)
            .await
            .map_err(TokenError::from)?;
        let fetch::Reply { status, retry_after, body, dpop_nonce, .. } = posted;
        if let (Some(key), Some(nonce)) = (&self.dpop, dpop_nonce.as_ref().and_then(|n| n.to_str().ok()))
            && let Ok(origin) = super::dpop::origin(url)
        {
            key.remember_nonce(&origin, nonce);
        }
        if status.is_success() {
            let response = TokenResponse::parse(&body.map_err(TokenError::from)?)?;
            // RFC 9449 §5: a DPoP token is of use only to a client that holds the key.
            if response.is_dpop() && self.dpop.is_none() {
                return Err(TokenError::UnsupportedTokenType("DPoP".into()));
            }
            return Ok(response);
        }
        // RFC 6749 §5.2: errors come as 400 (401 for invalid_client) with a JSON
        // body; a body that is not one, or too large, leaves the status to speak.
        let oauth = match (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS, body) {
            (true, Ok(body)) => {
                super::error::ErrorResponse::parse_redacting(status, &body, &self.credentials(grant, assertion))
            }
            _ => None,
        };
        Err(oauth.map_or_else(|| TokenError::from_status(status, retry_after), TokenError::OAuth))
    }
}

/// Whether `error` is the server refusing the client's credentials: `invalid_client`,
/// or a bare 401 or 403.
fn refuses_client(error: &TokenError) -> bool {
    match error {
        TokenError::OAuth(response) => *response.code() == ErrorCode::InvalidClient,
        TokenError::Unauthorized | TokenError::Forbidden => true,
        _ => false,
    }
}

impl GrantState {
    /// The grant's kind.
    fn kind(&self) -> GrantKind {
        match self {
            GrantState::ClientCredentials => GrantKind::ClientCredentials,
            GrantState::RefreshToken(_) => GrantKind::RefreshToken,
            GrantState::Code { .. } => GrantKind::AuthorizationCode,
            GrantState::JwtBearer(_) => GrantKind::JwtBearer,
            GrantState::TokenExchange(_) => GrantKind::TokenExchange,
        }
    }

    /// RFC 6749 §6: a new refresh token replaces the old one, which the client must
    /// discard; without one, the old one stays in use.
    fn advance(&mut self, response: &TokenResponse) {
        let fresh = response.refresh_token().cloned();
        match self {
            GrantState::ClientCredentials | GrantState::JwtBearer(_) | GrantState::TokenExchange(_) => {}
            GrantState::RefreshToken(current) => {
                if fresh.is_some() {
                    *current = fresh;
                }
            }
            GrantState::Code { .. } => *self = GrantState::RefreshToken(fresh),
        }
    }

    /// Continues with a refresh token that another holder of the grant obtained: it
    /// replaces ours, and a code (single-use, RFC 6749 §4.1.2) that someone else
    /// exchanged is never sent.
    fn adopt(&mut self, refresh_token: Secret) {
        match self {
            GrantState::ClientCredentials | GrantState::JwtBearer(_) | GrantState::TokenExchange(_) => {}
            GrantState::RefreshToken(_) | GrantState::Code { .. } => {
                *self = GrantState::RefreshToken(Some(refresh_token));
            }
        }
    }
}

impl TokenSource for TokenEndpoint {
    fn key(&self) -> &CacheKey {
        &self.key
    }

    fn dpop_key(&self) -> Option<&DpopKey> {
        self.dpop.as_ref()
    }

    fn fetch(&mut self) -> FetchFuture<'_> {
        Box::pin(self.request_token())
    }

    fn adopt_refresh_token(&mut self, refresh_token: Secret) {
        self.grant.adopt(refresh_token);
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("key", &self.key)
            .field("client_secret", &"***")
            .field("auth_method", &self.auth.method())
            .field("timeout", &self.limits.timeout)
            .field("max_body_size", &self.limits.max_body)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenEndpoint`]; from [`TokenEndpoint::builder`] or
/// [`TokenEndpoint::discover`].
#[must_use]
pub struct TokenEndpointBuilder {
    target: Target,
    client_id: String,
    credential: ClientCredential,
    method: Option<AuthMethod>,
    assertion_audience: AssertionAudience,
    grant: GrantState,
    scope: Option<String>,
    resources: Vec<String>,
    audience: Option<String>,
    http_client: Option<reqwest::Client>,
    #[cfg(feature = "rustls")]
    identity: Option<reqwest::Identity>,
    dpop: Option<DpopKey>,
    limits: Limits,
}

impl TokenEndpointBuilder {
    fn new(target: Target, client_id: String, credential: ClientCredential) -> Self {
        TokenEndpointBuilder {
            target,
            client_id,
            credential,
            method: None,
            assertion_audience: AssertionAudience::default(),
            grant: GrantState::ClientCredentials,
            scope: None,
            resources: Vec::new(),
            audience: None,
            http_client: None,
            #[cfg(feature = "rustls")]
            identity: None,
            dpop: None,
            limits: Limits { timeout: fetch::DEFAULT_TIMEOUT, max_body: DEFAULT_MAX_BODY_SIZE },
        }
    }

    /// Asks for DPoP-bound tokens (RFC 9449): each token request carries a proof made
    /// with `key`, and the tokens a `DPoP` answer brings are sent with the `DPoP`
    /// scheme and a fresh proof per request by [`ClientCredentialsLayer`](super::ClientCredentialsLayer)
    /// and the reqwest middleware. A server's `use_dpop_nonce` is answered with one
    /// retry, and the nonce each server sends is remembered for the next proof.
    ///
    /// A server that answers with a bearer token anyway (RFC 9449 §5 allows it) gets
    /// its token used as a bearer token. Tokens are cached, and shared through a
    /// [`SharedStore`](super::store::SharedStore), per key thumbprint: a process with
    /// another key, or none, never receives them.
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// A TLS client certificate for the default HTTP client (RFC 8705): for
    /// `tls_client_auth` and for certificate-bound tokens. The same identity must be
    /// presented to the APIs the tokens are for (with the `reqwest` client, through
    /// `reqwest::ClientBuilder::identity`). Ignored when
    /// [`http_client`](Self::http_client) gives a client, which carries its own.
    ///
    /// The default client trusts the platform's roots: for an authorization server
    /// whose certificate comes from a private CA, give a client with both the identity and
    /// that CA (`tls_certs_merge`) through [`http_client`](Self::http_client) instead.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_identity(mut self, identity: reqwest::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// How the client authenticates. The default follows the credential:
    /// [`AuthMethod::ClientSecretBasic`] for a secret, [`AuthMethod::PrivateKeyJwt`]
    /// for a [`ClientKey`](super::ClientKey), [`AuthMethod::TlsClientAuth`] for
    /// [`ClientCredential::TlsCertificate`], and [`AuthMethod::None`] for
    /// [`ClientCredential::None`]. A method that does not fit the credential fails
    /// [`build`](Self::build).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The `aud` of client assertions (`private_key_jwt`, `client_secret_jwt`); default
    /// [`AssertionAudience::Issuer`].
    pub fn assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// Uses the JWT bearer grant (RFC 7523 §2.1): each token request sends the
    /// assertion `source` gives then, with `scope`, `resource` and `audience` when
    /// configured. Client authentication is optional for this grant: use
    /// [`ClientCredential::None`] when the server asks for none.
    pub fn jwt_bearer(mut self, source: AssertionSource) -> Self {
        self.grant = GrantState::JwtBearer(source);
        self
    }

    /// Uses token exchange (RFC 8693 §2.1) with `exchange`'s subject token; the target
    /// is set with [`audience`](Self::audience) and [`resource`](Self::resource), the
    /// scope with [`scope`](Self::scope). To exchange each caller's token, see
    /// [`TokenExchangeLayer`](super::TokenExchangeLayer).
    pub fn token_exchange(mut self, exchange: TokenExchange) -> Self {
        self.grant = GrantState::TokenExchange(exchange);
        self
    }

    /// The `scope` to request (space-separated). For a refresh token, a subset of the
    /// original grant (RFC 6749 §6); unset, the server grants the original scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = normalize_scope(scope);
        self
    }

    /// An RFC 8707 `resource` (an absolute URI without a fragment) the token is for.
    /// May be repeated.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// The `audience` parameter that Auth0-style servers use instead of `resource`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Uses the `refresh_token` grant with this refresh token, which is replaced by
    /// each new one the server returns.
    pub fn refresh_token(mut self, refresh_token: impl Into<Secret>) -> Self {
        self.grant = GrantState::RefreshToken(Some(refresh_token.into()));
        self
    }

    /// Exchanges this authorization code (with the `redirect_uri` of the authorization
    /// request) at the first request, then renews with the refresh token it returns.
    pub fn authorization_code(mut self, code: impl Into<Secret>, redirect_uri: impl Into<String>) -> Self {
        self.grant = GrantState::Code { code: code.into(), redirect_uri: redirect_uri.into() };
        self
    }

    /// The time limit of one exchange (and of discovery); default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The largest response body read; default 64 KiB
    /// ([`DEFAULT_MAX_BODY_SIZE`](crate::client::DEFAULT_MAX_BODY_SIZE)).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// The HTTP client for custom roots, mTLS or a proxy. It should not follow
    /// redirects (the default client does not); a response from an insecure URL is
    /// refused all the same.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`BuildError::Url`] for a URL that does not parse or is plain http off loopback,
    /// [`BuildError::InvalidUrl`] for a resource that does not parse (or has a fragment,
    /// RFC 8707 §2), [`BuildError::MissingIssuer`] for an empty issuer, and
    /// [`BuildError::HttpClient`] when the default client cannot be built.
    pub fn build(self) -> Result<TokenEndpoint, BuildError> {
        let auth = ClientAuth::new(self.client_id.clone(), self.credential, self.method, self.assertion_audience)?;
        #[cfg(feature = "rustls")]
        let has_identity = self.identity.is_some();
        #[cfg(not(feature = "rustls"))]
        let has_identity = false;
        // RFC 8705 §5: a client that presents a certificate uses the mTLS aliases.
        let member =
            if auth.method().is_mtls() || has_identity { MetadataMember::MtlsToken } else { MetadataMember::Token };
        let endpoint = IdpEndpoint::new(self.target, member)?;
        for resource in &self.resources {
            if Url::parse(resource).map_or(true, |url| url.fragment().is_some()) {
                return Err(BuildError::InvalidUrl);
            }
        }
        #[cfg(feature = "rustls")]
        let client = match (self.http_client, self.identity) {
            (None, Some(identity)) => {
                fetch::default_client_builder().identity(identity).build().map_err(BuildError::HttpClient)?
            }
            (client, _) => client_or_default(client)?,
        };
        #[cfg(not(feature = "rustls"))]
        let client = client_or_default(self.http_client)?;
        let grant = self.grant.kind();
        let key = CacheKey::new(
            endpoint.target().to_owned(),
            self.client_id.clone(),
            grant,
            self.scope.as_deref(),
            self.resources,
            self.audience.as_deref(),
        )
        .with_dpop(self.dpop.as_ref().map(DpopKey::thumbprint));
        Ok(TokenEndpoint { client, endpoint, auth, grant: self.grant, key, limits: self.limits, dpop: self.dpop })
    }
}

impl fmt::Debug for TokenEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpointBuilder")
            .field("target", &self.target.as_str())
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("auth_method", &self.method)
            .field("scope", &self.scope)
            .field("resources", &self.resources)
            .field("audience", &self.audience)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

/// The result label of a token request: `ok`, or the kind of failure.
fn metric_result(result: &Result<TokenResponse, TokenError>) -> &'static str {
    use TokenError as E;
    match result {
        Ok(_) => "ok",
        Err(E::RateLimited { .. }) => "rate_limited",
        Err(E::ServerError { .. }) => "server_error",
        Err(E::Timeout | E::Transport(_)) => "transport",
        Err(E::InvalidResponse(_) | E::BodyTooLarge { .. } | E::UnsupportedTokenType(_)) => "invalid_response",
        Err(E::Discovery(_)) => "discovery",
        Err(error) if error.oauth().is_some() => "oauth_error",
        Err(_) => "rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FetchError;

    fn form_of(builder: TokenEndpointBuilder) -> String {
        let endpoint = builder.build().unwrap();
        let mut form = endpoint.form(&endpoint.grant, None).unwrap();
        let to = Audience { issuer: None, endpoint: "https://idp.example/token" };
        endpoint.auth.authenticate(&mut form, to).unwrap();
        String::from_utf8(form.into_bytes()).unwrap()
    }

    #[test]
    fn each_grant_sends_its_parameters() {
        let base = || TokenEndpoint::builder("https://idp.example/token", "c", "s");
        assert_eq!(form_of(base()), "grant_type=client_credentials");
        assert_eq!(
            form_of(
                base()
                    .scope("b a")
                    .resource("https://r2.example")
                    .resource("https://r1.example")
                    .audience("aud")
                    .auth_method(AuthMethod::ClientSecretPost)
            ),
            "grant_type=client_credentials&scope=a+b&resource=https%3A%2F%2Fr1.example\
             &resource=https%3A%2F%2Fr2.example&audience=aud&client_id=c&client_secret=s"
        );
        assert_eq!(
            form_of(base().refresh_token("r&1").scope("read")),
            "grant_type=refresh_token&refresh_token=r%261&scope=read"
        );
        assert_eq!(
            form_of(base().authorization_code("c0de", "https://app/cb").scope("read")),
            "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Fapp%2Fcb"
        );
    }

    #[test]
    fn the_newer_grants_send_their_parameters() {
        let base = || TokenEndpoint::builder("https://idp.example/token", "c", ClientCredential::None);
        let endpoint = base().jwt_bearer(AssertionSource::fixed("a.b.c")).scope("read").build().unwrap();
        let mut form = endpoint.form(&endpoint.grant, Some(&Secret::from("a.b.c"))).unwrap();
        let to = Audience { issuer: None, endpoint: "https://idp.example/token" };
        endpoint.auth.authenticate(&mut form, to).unwrap();
        assert_eq!(
            String::from_utf8(form.into_bytes()).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&scope=read&client_id=c"
        );
        assert_eq!(endpoint.key().grant(), GrantKind::JwtBearer);
        assert_eq!(
            form_of(
                TokenEndpoint::builder("https://idp.example/token", "c", "s")
                    .token_exchange(TokenExchange::access_token("t"))
                    .audience("https://down.example")
            ),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&audience=https%3A%2F%2Fdown.example"
        );
        let mismatch =
            TokenEndpoint::builder("https://idp.example/token", "c", "s").auth_method(AuthMethod::PrivateKeyJwt);
        assert!(matches!(mismatch.build(), Err(BuildError::AuthMethod(_))));
    }

    #[test]
    fn a_refused_basic_credential_that_the_encoding_changed_says_so() {
        let error = TokenError::BasicEncoding(Box::new(TokenError::Forbidden));
        assert!(error.to_string().contains("ClientSecretBasicUnencoded"), "{error}");
        assert!(refuses_client(&TokenError::Unauthorized) && refuses_client(&TokenError::Forbidden));
        assert!(!refuses_client(&TokenError::Timeout));
    }

    #[test]
    fn the_grant_advances_with_rotation() {
        let mut grant = GrantState::Code { code: Secret::from("c"), redirect_uri: "https://app/cb".into() };
        let with_refresh = |r: &str| {
            TokenResponse::parse(
                format!(r#"{{"access_token":"a","token_type":"Bearer","refresh_token":"{r}"}}"#).as_bytes(),
            )
            .unwrap()
        };
        let without = TokenResponse::parse(br#"{"access_token":"a","token_type":"Bearer"}"#).unwrap();
        grant.advance(&with_refresh("r1"));
        assert!(matches!(&grant, GrantState::RefreshToken(Some(t)) if t.expose() == b"r1"));
        grant.advance(&without);
        assert!(matches!(&grant, GrantState::RefreshToken(Some(t)) if t.expose() == b"r1"));
        grant.advance(&with_refresh("r2"));
        assert!(matches!(&grant, GrantState::RefreshToken(Some(t)) if t.expose() == b"r2"));
        grant.adopt(Secret::from("r9"));
        assert!(matches!(&grant, GrantState::RefreshToken(Some(t)) if t.expose() == b"r9"));

        // A code someone else exchanged is dropped for the refresh token they got.
        let mut code = GrantState::Code { code: Secret::from("c"), redirect_uri: "https://app/cb".into() };
        code.adopt(Secret::from("r1"));
        assert!(matches!(&code, GrantState::RefreshToken(Some(t)) if t.expose() == b"r1"));
        let mut client = GrantState::ClientCredentials;
        client.adopt(Secret::from("r1"));
        assert!(matches!(client, GrantState::ClientCredentials));
    }

    #[test]
    fn insecure_or_malformed_configuration_is_refused() {
        let build = |url: &str| TokenEndpoint::builder(url, "c", "s").build().map(|_| ());
        assert!(matches!(build("http://idp.example/token"), Err(BuildError::Url(FetchError::InsecureUrl))));
        assert!(matches!(build("not a url"), Err(BuildError::Url(FetchError::InvalidUrl))));
        assert!(build("http://127.0.0.1:8080/token").is_ok());
        let resource = TokenEndpoint::builder("https://idp/token", "c", "s").resource("https://api#frag").build();
        assert!(matches!(resource, Err(BuildError::InvalidUrl)));
        assert!(matches!(TokenEndpoint::discover(" ", "c", "s").build(), Err(BuildError::MissingIssuer)));
    }

    #[test]
    fn debug_shows_no_secret() {
        let endpoint =
            TokenEndpoint::builder("https://idp/token", "c", "hunter2").refresh_token("refresh-me").build().unwrap();
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("refresh-me"), "{debug}");
        let builder = TokenEndpoint::builder("https://idp/token", "c", "hunter2");
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
}
