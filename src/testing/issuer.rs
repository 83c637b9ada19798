//! The issuer handle and its builder.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use super::grants::Grants;
use super::keyring::{KeyRing, STARTUP_ALGORITHMS};
use super::state::{self, Shared};
use super::{Endpoint, Fault, TestKey, TokenBuilder, server};
use crate::Algorithm;

/// A real OAuth 2.0 authorization server on 127.0.0.1 for tests, benchmarks and
/// demos.
///
/// It serves OpenID Connect discovery and RFC 8414 metadata, a JWK Set with one key
/// per asymmetric algorithm, and a token endpoint with the `client_credentials`,
/// `refresh_token` and `authorization_code` grants, which binds access tokens to the
/// client's DPoP key when the request carries a proof (RFC 9449 §5). Tokens can also be minted
/// directly with [`TestIssuer::mint`], keys rotated, and faults injected per
/// endpoint.
///
/// The handle is cheap to clone. The server stops, and its open connections are
/// dropped, when the last handle is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_oauth::testing::{Endpoint, Fault, TestIssuer};
///
/// # async fn demo() -> std::io::Result<()> {
/// let issuer = TestIssuer::builder()
///     .path_prefix("/auth/realms/provider")
///     .audience("my-api")
///     .start()
///     .await?;
///
/// // A valid RS256 access token for `my-api`, and some that are not.
/// let token = issuer.mint().scope("read write").sign();
/// let expired = issuer.mint().expired().sign();
///
/// // Make the JWKS endpoint slow, then rotate keys.
/// issuer.set_fault(Endpoint::Jwks, Fault::Delay(Duration::from_secs(2)));
/// issuer.rotate_keys();
/// assert_eq!(issuer.requests(Endpoint::Jwks), 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TestIssuer {
    handle: Arc<Handle>,
}

/// Owns the server task: dropping the last handle aborts it.
struct Handle {
    shared: Arc<Shared>,
    server: AbortHandle,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    /// The client id registered by default.
    pub const DEFAULT_CLIENT_ID: &'static str = state::DEFAULT_CLIENT_ID;
    /// The secret of [`TestIssuer::DEFAULT_CLIENT_ID`].
    pub const DEFAULT_CLIENT_SECRET: &'static str = state::DEFAULT_CLIENT_SECRET;
    /// The default `aud` of issued tokens.
    pub const DEFAULT_AUDIENCE: &'static str = state::DEFAULT_AUDIENCE;

    /// Starts an issuer with the defaults of [`TestIssuerBuilder`].
    ///
    /// # Errors
    ///
    /// If no port can be bound on 127.0.0.1.
    pub async fn start() -> std::io::Result<TestIssuer> {
        TestIssuer::builder().start().await
    }

    /// A builder to configure the issuer before starting it.
    pub fn builder() -> TestIssuerBuilder {
        TestIssuerBuilder::default()
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` followed by the path prefix:
    /// the `iss` of every token and the base of discovery.
    pub fn issuer(&self) -> &str {
        &self.shared().issuer
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// The URL of the JWK Set.
    pub fn jwks_uri(&self) -> String {
        self.shared().jwks_uri()
    }

    /// The URL of the token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.shared().token_endpoint()
    }

    /// The URL of the introspection endpoint (RFC 7662).
    pub fn introspection_endpoint(&self) -> String {
        self.shared().introspection_endpoint()
    }

    /// The URL of the userinfo endpoint (OpenID Connect Core 1.0 §5.3).
    pub fn userinfo_endpoint(&self) -> String {
        self.shared().userinfo_endpoint()
    }

    /// An opaque access token with the default claims (see [`TokenBuilder`]): the same
    /// as `mint().opaque()`.
    pub fn mint_opaque(&self) -> String {
        self.mint().opaque()
    }

    /// Revokes an access token, opaque or JWT: introspection answers `active: false`
    /// for it from now on, and the userinfo endpoint refuses it. (A resource server
    /// that verifies JWTs locally does not notice.)
    pub fn revoke(&self, token: &str) {
        self.shared().revoke(token);
    }

    /// The claims the userinfo endpoint returns for `subject`, besides `sub`: the
    /// members of `claims`, a JSON object. A `sub` among them replaces the real one,
    /// for tests of a userinfo answer about someone else.
    pub fn set_user_claims(&self, subject: &str, claims: Value) {
        let claims = match claims {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self.shared().set_user_claims(subject, claims);
    }

    /// The default `aud` of minted and issued tokens.
    pub fn audience(&self) -> &str {
        &self.shared().audience
    }

    /// A builder for a token signed by this issuer: by default a valid access token
    /// with the configured signing algorithm and this issuer's `iss` and audience.
    pub fn mint(&self) -> TokenBuilder {
        TokenBuilder::new(Arc::clone(self.shared()))
    }

    /// The key that currently signs tokens for `alg`.
    ///
    /// An algorithm without a key yet (the issuer starts with keys for RS256,
    /// PS256, ES256, ES384, ES512 and EdDSA, plus the signing algorithm) gets one
    /// now, published from then on. For an HMAC algorithm this is a shared secret
    /// that is never published; configure the validator with
    /// [`TestKey::hmac_secret`].
    pub fn current_key(&self, alg: Algorithm) -> TestKey {
        self.shared().current_key(alg)
    }

    /// The document the JWKS endpoint serves now (the override, when one is set).
    pub fn jwks(&self) -> Value {
        self.shared().keys().jwks()
    }

    /// Gives every asymmetric algorithm a new current key. The previous keys stay
    /// published, as during a real rotation, until [`TestIssuer::retire_old_keys`].
    ///
    /// This generates keys on the calling thread (RSA takes tens of milliseconds).
    pub fn rotate_keys(&self) {
        let algorithms = self.shared().keys().rotating_algorithms();
        let keys = algorithms.into_iter().map(TestKey::generate).collect();
        self.shared().keys().rotate(keys);
    }

    /// Unpublishes the keys that rotations replaced. Keys added with
    /// [`TestIssuer::publish_key`] stay.
    pub fn retire_old_keys(&self) {
        self.shared().keys().retire();
    }

    /// Publishes `key` in the JWK Set (replacing a published key with the same
    /// `kid`). Tokens signed with it via [`TokenBuilder::sign_with`] then verify.
    pub fn publish_key(&self, key: &TestKey) {
        self.shared().keys().publish(key.clone());
    }

    /// Removes the key with this `kid` from the JWK Set, even a current key: tokens
    /// it signs then carry an unknown `kid`.
    pub fn unpublish_key(&self, kid: &str) {
        self.shared().keys().unpublish(kid);
    }

    /// Serves this raw JSON at the JWKS endpoint instead of the key set, for hostile
    /// key-set tests; `None` serves the keys again.
    pub fn set_jwks_override(&self, jwks: Option<Value>) {
        self.shared().keys().set_override(jwks);
    }

    /// Makes `endpoint` misbehave until the fault is cleared.
    pub fn set_fault(&self, endpoint: Endpoint, fault: Fault) {
        self.shared().set_fault(endpoint, Some(fault));
    }

    /// Lets `endpoint` behave normally again.
    pub fn clear_fault(&self, endpoint: Endpoint) {
        self.shared().set_fault(endpoint, None);
    }

    /// Lets every endpoint behave normally again.
    pub fn clear_faults(&self) {
        self.shared().clear_faults();
    }

    /// How many requests reached `endpoint`, whatever the method and including
    /// those answered by a fault.
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        self.shared().requests(endpoint)
    }

    /// Sets every request counter to zero.
    pub fn reset_counters(&self) {
        self.shared().reset_counters();
    }

    /// Registers a confidential client for the token endpoint, or changes its secret.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.shared().grants().register_client(client_id, secret);
    }

    /// Issues a one-time authorization code, as if `subject` had just approved
    /// `client_id` at the authorization endpoint (RFC 6749 §4.1.2). It is valid for
    /// ten minutes at the token endpoint with the same `redirect_uri`.
    pub fn issue_code(&self, client_id: &str, redirect_uri: &str, scope: &str, subject: &str) -> String {
        self.shared().grants().issue_code(client_id, redirect_uri, scope, subject)
    }

    /// Issues a refresh token of a new family to `client_id`. It rotates on every
    /// use, and a reused one revokes its family.
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str, subject: &str) -> String {
        self.shared().grants().issue_refresh_token(client_id, scope, subject)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer").field("issuer", &self.issuer()).field("addr", &self.addr()).finish_non_exhaustive()
    }
}

/// Configures a [`TestIssuer`]; from [`TestIssuer::builder`].
#[must_use]
pub struct TestIssuerBuilder {
    bind: SocketAddr,
    path_prefix: String,
    token_path: String,
    audience: String,
    token_lifetime: Duration,
    jwks_max_age: Option<u64>,
    clients: Vec<(String, String)>,
    access_token_typ: String,
    opaque_access_tokens: bool,
    #[cfg(feature = "jwe")]
    access_token_encryption: Option<super::TestEncryptionKey>,
    signing_alg: Algorithm,
    dpop_nonce: bool,
    require_dpop: bool,
}

impl Default for TestIssuerBuilder {
    fn default() -> Self {
        TestIssuerBuilder {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            path_prefix: String::new(),
            token_path: "/token".to_owned(),
            audience: TestIssuer::DEFAULT_AUDIENCE.to_owned(),
            token_lifetime: Duration::from_secs(300),
            jwks_max_age: Some(300),
            clients: Vec::new(),
            access_token_typ: "at+jwt".to_owned(),
            opaque_access_tokens: false,
            #[cfg(feature = "jwe")]
            access_token_encryption: None,
            signing_alg: Algorithm::RS256,
            dpop_nonce: false,
            require_dpop: false,
        }
    }
}

impl TestIssuerBuilder {
    /// The address to listen on; default `127.0.0.1:0` (a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// A path under which the issuer lives, like Keycloak's `/auth/realms/NAME`: the
    /// issuer becomes `http://127.0.0.1:PORT{prefix}` and every endpoint moves under
    /// it. Default: none.
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.path_prefix = normalize_path(prefix);
        self
    }

    /// The token endpoint's path under the prefix; default `/token`.
    pub fn token_path(mut self, path: &str) -> Self {
        self.token_path = normalize_path(path);
        self
    }

    /// The default `aud` of tokens; default [`TestIssuer::DEFAULT_AUDIENCE`].
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// How long issued and minted tokens live; default 300 s.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// The `Cache-Control: max-age` of the JWK Set in seconds, or `None` to send no
    /// `Cache-Control`; default `Some(300)`.
    pub fn jwks_max_age(mut self, max_age: Option<u64>) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// Registers a confidential client. May be repeated; the first call replaces the
    /// default client ([`TestIssuer::DEFAULT_CLIENT_ID`] with
    /// [`TestIssuer::DEFAULT_CLIENT_SECRET`]).
    pub fn client(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((client_id.into(), secret.into()));
        self
    }

    /// Encrypts the access tokens the token endpoint issues to `key` (A256GCM, `cty:
    /// JWT`, the signed token inside), like an issuer whose access tokens are JWEs. ID
    /// tokens stay signed only. Tokens from [`TestIssuer::mint`] are not affected; use
    /// [`TokenBuilder::encrypt`](super::TokenBuilder::encrypt) for those.
    #[cfg(feature = "jwe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
    pub fn encrypt_access_tokens(mut self, key: super::TestEncryptionKey) -> Self {
        self.access_token_encryption = Some(key);
        self
    }

    /// The `typ` header of access tokens; default `at+jwt` (RFC 9068 §2.1). Keycloak
    /// sends `JWT`.
    pub fn access_token_typ(mut self, typ: impl Into<String>) -> Self {
        self.access_token_typ = typ.into();
        self
    }

    /// Makes the token endpoint issue opaque access tokens, which only the
    /// introspection endpoint can read, like issuers that do not issue JWTs. ID tokens
    /// stay signed JWTs. Tokens from [`TestIssuer::mint`] are not affected; use
    /// [`TokenBuilder::opaque`](super::TokenBuilder::opaque) for those.
    pub fn opaque_access_tokens(mut self) -> Self {
        self.opaque_access_tokens = true;
        self
    }

    /// The algorithm of tokens from the token endpoint and of [`TestIssuer::mint`]
    /// by default; default RS256.
    pub fn signing_alg(mut self, alg: Algorithm) -> Self {
        self.signing_alg = alg;
        self
    }

    /// Makes the token endpoint require a server nonce in DPoP proofs (RFC 9449 §8): a
    /// token request whose proof has no current nonce is answered `400` with
    /// `{"error":"use_dpop_nonce"}`, and every token response carries the current nonce
    /// in `DPoP-Nonce`, for the client's retry and its next request.
    ///
    /// Whatever this says, a token request with a `DPoP` proof is checked as RFC 9449
    /// §4.3 says (less `ath`, which a token request has no token for): a good proof gets
    /// an access token bound to its key (`cnf.jkt`) with `token_type: "DPoP"`, a bad one
    /// `400 invalid_dpop_proof`.
    pub fn dpop_nonce(mut self) -> Self {
        self.dpop_nonce = true;
        self
    }

    /// Makes the token endpoint refuse token requests without a DPoP proof (`400
    /// invalid_request`), like an authorization server that issues only DPoP-bound
    /// tokens. By default a request without a proof gets a bearer token.
    pub fn require_dpop(mut self) -> Self {
        self.require_dpop = true;
        self
    }

    /// Generates the keys, binds the listener and starts serving.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound.
    pub async fn start(self) -> std::io::Result<TestIssuer> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;

        let mut algorithms = STARTUP_ALGORITHMS.to_vec();
        if !algorithms.contains(&self.signing_alg) {
            algorithms.push(self.signing_alg);
        }
        let mut keys = KeyRing::default();
        for key in generate_keys(algorithms).await? {
            keys.install(key);
        }

        let mut grants = Grants::default();
        if self.clients.is_empty() {
            grants.register_client(TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET);
        }
        for (id, secret) in &self.clients {
            grants.register_client(id, secret);
        }

        let dpop = super::dpop::verifier(&format!("http://{addr}"), self.dpop_nonce).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}{}", self.path_prefix),
            addr,
            prefix: self.path_prefix,
            token_path: self.token_path,
            audience: self.audience,
            token_lifetime: self.token_lifetime,
            jwks_max_age: self.jwks_max_age,
            access_token_typ: self.access_token_typ,
            opaque_access_tokens: self.opaque_access_tokens,
            #[cfg(feature = "jwe")]
            access_token_encryption: self.access_token_encryption,
            signing_alg: self.signing_alg,
            dpop,
            require_dpop: self.require_dpop,
            keys: Mutex::new(keys),
            opaque: Mutex::default(),
            revoked: Mutex::default(),
            user_claims: Mutex::default(),
            faults: Mutex::default(),
            counters: Default::default(),
            grants: Mutex::new(grants),
        });
        let server = tokio::spawn(server::serve(listener, Arc::clone(&shared))).abort_handle();
        Ok(TestIssuer { handle: Arc::new(Handle { shared, server }) })
    }
}

impl fmt::Debug for TestIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client_ids: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("TestIssuerBuilder")
            .field("bind", &self.bind)
            .field("path_prefix", &self.path_prefix)
            .field("token_path", &self.token_path)
            .field("audience", &self.audience)
            .field("token_lifetime", &self.token_lifetime)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("client_ids", &client_ids)
            .field("access_token_typ", &self.access_token_typ)
            .field("opaque_access_tokens", &self.opaque_access_tokens)
            .field("signing_alg", &self.signing_alg)
            .field("dpop_nonce", &self.dpop_nonce)
            .field("require_dpop", &self.require_dpop)
            .finish()
    }
}

/// Generates one key per algorithm on the blocking pool, in parallel, so that RSA
/// generation neither stalls the runtime nor runs one key after another.
async fn generate_keys(algorithms: Vec<Algorithm>) -> std::io::Result<Vec<TestKey>> {
    let tasks: Vec<_> =
        algorithms.into_iter().map(|alg| tokio::task::spawn_blocking(move || TestKey::generate(alg))).collect();
    let mut keys = Vec::with_capacity(tasks.len());
    for task in tasks {
        keys.push(task.await.map_err(std::io::Error::other)?);
    }
    Ok(keys)
}

/// `""` or `/a/b`: one leading slash, no trailing one.
fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") }
}
