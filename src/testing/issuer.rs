//! The issuer handle and its builder.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use super::assertion::REPLAY_CAPACITY;
use super::clients::Clients;
use super::keyring::{KeyRing, STARTUP_ALGORITHMS};
use super::state::{self, Shared};
use super::{Endpoint, Fault, GrantType, TestKey, TokenBuilder, server};
use crate::validate::dpop::DpopReplayCache;
use crate::{Algorithm, KeySet};

/// A real OAuth 2.0 authorization server on 127.0.0.1 for tests, benchmarks and
/// demos.
///
/// It serves OpenID Connect discovery and RFC 8414 metadata, a JWK Set with one key
/// per asymmetric algorithm, and a token endpoint with the `client_credentials`,
/// `refresh_token`, `authorization_code`, JWT bearer (RFC 7523) and token exchange
/// (RFC 8693) grants, which binds access tokens to the client's DPoP key when the
/// request carries a proof (RFC 9449 §5), and to its certificate over mutual TLS
/// (RFC 8705). Clients authenticate with a secret (Basic or form), a JWT assertion
/// (`private_key_jwt`, `client_secret_jwt`) or, over TLS, their certificate. Tokens can
/// also be minted directly with [`TestIssuer::mint`], keys rotated, and faults injected
/// per endpoint.
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

    /// The issuer identifier, `http://127.0.0.1:PORT` (`https://` with
    /// [`TestIssuerBuilder::tls`]) followed by the path prefix: the `iss` of every token
    /// and the base of discovery.
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

    /// How many token requests named `grant` as their `grant_type`, whatever their
    /// outcome (a refused client or a bad grant included). Requests that never got as far
    /// as reading the form (a fault, a body that is too large or not a form) are not
    /// counted.
    pub fn grant_requests(&self, grant: GrantType) -> u64 {
        self.shared().grant_requests(grant)
    }

    /// Sets every request counter, and every grant counter, to zero.
    pub fn reset_counters(&self) {
        self.shared().reset_counters();
    }

    /// Registers a confidential client for the token endpoint, or changes its secret.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.shared().clients().set_secret(client_id, secret);
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
    basic_without_form_decoding: bool,
    /// Public JWK Sets (or JWKs) per client, parsed at start.
    client_jwks: Vec<(String, String)>,
    /// Public JWK Sets (or JWKs) per assertion issuer, parsed at start.
    assertion_issuers: Vec<(String, String)>,
    exchange_policies: Vec<(String, Vec<String>)>,
    #[cfg(feature = "mtls-rustls")]
    tls: Option<super::tls::TlsSettings>,
    /// Subject DNs per `tls_client_auth` client, parsed at start.
    #[cfg(feature = "mtls-rustls")]
    tls_clients: Vec<(String, String)>,
    /// Certificate thumbprints per `self_signed_tls_client_auth` client, decoded at start.
    #[cfg(feature = "mtls-rustls")]
    self_signed_tls_clients: Vec<(String, String)>,
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
            basic_without_form_decoding: false,
            client_jwks: Vec::new(),
            assertion_issuers: Vec::new(),
            exchange_policies: Vec::new(),
            #[cfg(feature = "mtls-rustls")]
            tls: None,
            #[cfg(feature = "mtls-rustls")]
            tls_clients: Vec::new(),
            #[cfg(feature = "mtls-rustls")]
            self_signed_tls_clients: Vec::new(),
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

    /// Registers `client_id` for `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core
    /// 1.0 §9) with its public keys: a JWK Set (`{"keys":[…]}`) or a single JWK, such
    /// as [`TestKey::public_jwk`] gives. A client may also have a secret
    /// ([`client`](Self::client)); the default client stays registered.
    ///
    /// The client authenticates with `client_assertion_type` =
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and a `client_assertion`
    /// signed with one of these keys (the one with the header's `kid`, or any that fits
    /// `alg` without one) with RS256, PS256, ES256 or EdDSA, whose claims are: `iss` and
    /// `sub` the client id; `aud` containing the issuer, the token endpoint or the
    /// endpoint called; `exp` in the future by at most ten minutes; `iat` and `nbf` not in
    /// the future; and a `jti` never used before. Thirty seconds of clock skew are allowed.
    ///
    /// An assertion signed with HS256, HS384 or HS512 is `client_secret_jwt`: the same
    /// claims, with the client's secret as the key, which must be at least as long as the
    /// hash (RFC 7518 §3.2: 32, 48 or 64 bytes). That needs no call here.
    ///
    /// The keys are parsed by [`start`](Self::start), which fails when there is no usable
    /// public key among them.
    pub fn client_jwks(mut self, client_id: impl Into<String>, jwks: &str) -> Self {
        self.client_jwks.push((client_id.into(), jwks.to_owned()));
        self
    }

    /// Trusts JWT bearer assertions (RFC 7523 §2.1) from `issuer`, signed with one of
    /// these public keys: a JWK Set or a single JWK, as for
    /// [`client_jwks`](Self::client_jwks).
    ///
    /// A token request with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
    /// an `assertion` signed so (RS256, PS256, ES256 or EdDSA), whose `iss` is `issuer`,
    /// `aud` contains the issuer or the token endpoint, `exp` is in the future, and `sub`
    /// is present, gets an access token for that `sub`; a `jti`, when present, is
    /// accepted once. Client authentication is optional for this grant; an authenticated
    /// client becomes the token's `client_id`.
    pub fn trust_assertion_issuer(mut self, issuer: impl Into<String>, jwks: &str) -> Self {
        self.assertion_issuers.push((issuer.into(), jwks.to_owned()));
        self
    }

    /// Lets `client_id` exchange tokens (RFC 8693) for these audiences: each `audience`
    /// or `resource` of its token exchange requests must be one of them (or, when it
    /// names none, the issuer's [`audience`](Self::audience) must be). Replaces an earlier
    /// policy for the client. A client without a policy is refused with
    /// `unauthorized_client`.
    pub fn exchange_policy<A>(mut self, client_id: impl Into<String>, audiences: impl IntoIterator<Item = A>) -> Self
    where
        A: Into<String>,
    {
        self.exchange_policies.push((client_id.into(), audiences.into_iter().map(Into::into).collect()));
        self
    }

    /// Makes the issuer compare Basic credentials as they were sent, without the
    /// form-decoding of RFC 6749 §2.3.1, as some servers do, and answer a bare `403` (no
    /// body, no challenge) when they do not match a registered client byte for byte. For
    /// tests of how a client copes with such a server. By default the issuer decodes, and
    /// a client whose id or secret has reserved characters must encode them.
    pub fn basic_without_form_decoding(mut self) -> Self {
        self.basic_without_form_decoding = true;
        self
    }

    /// Serves HTTPS instead of HTTP (the issuer URL becomes `https://…`), with this
    /// certificate chain (the server's certificate first; it must be valid for
    /// `127.0.0.1` for clients to connect) and private key (PKCS #8, PKCS #1 or SEC1).
    ///
    /// Every client is asked for a certificate and none is required. A connection's
    /// certificate binds the access tokens issued on it (`cnf.x5t#S256`, RFC 8705 §3),
    /// whatever the client authenticated with, and authenticates clients registered with
    /// [`tls_client`](Self::tls_client) (which must chain to a CA of `client_ca_pem`) or
    /// [`self_signed_tls_client`](Self::self_signed_tls_client). The metadata then lists
    /// `tls_client_auth` and `self_signed_tls_client_auth`, says
    /// `tls_client_certificate_bound_access_tokens: true`, and gives the endpoints
    /// themselves as `mtls_endpoint_aliases`.
    ///
    /// The PEM is read by [`start`](Self::start), which fails when it holds nothing usable.
    #[cfg(feature = "mtls-rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    pub fn tls(mut self, cert_chain_pem: &[u8], key_pem: &[u8], client_ca_pem: Option<&[u8]>) -> Self {
        self.tls = Some(super::tls::TlsSettings {
            cert_chain_pem: cert_chain_pem.to_vec(),
            key_pem: crate::Secret::new(key_pem),
            client_ca_pem: client_ca_pem.map(<[u8]>::to_vec),
        });
        self
    }

    /// Registers `client_id` for `tls_client_auth` (RFC 8705 §2.1): it authenticates by
    /// sending its `client_id` over a connection whose client certificate chains to the
    /// client CA of [`tls`](Self::tls), is valid now, and has this subject, an RFC 4514
    /// string such as `CN=client-a,O=Example`. Attribute types compare by OID, whatever
    /// their case; values compare exactly.
    ///
    /// The subject is parsed by [`start`](Self::start), which fails when it is not a
    /// distinguished name or there is no [`tls`](Self::tls).
    #[cfg(feature = "mtls-rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    pub fn tls_client(mut self, client_id: impl Into<String>, subject_dn: &str) -> Self {
        self.tls_clients.push((client_id.into(), subject_dn.to_owned()));
        self
    }

    /// Registers `client_id` for `self_signed_tls_client_auth` (RFC 8705 §2.2): it
    /// authenticates by sending its `client_id` over a connection whose client
    /// certificate has this SHA-256 thumbprint, base64url without padding (the
    /// `x5t#S256` form, as [`ClientCertificate::thumbprint_b64`](crate::mtls::ClientCertificate::thumbprint_b64)
    /// gives). No chain is checked.
    ///
    /// The thumbprint is decoded by [`start`](Self::start), which fails when it is not 32
    /// bytes of base64url or there is no [`tls`](Self::tls).
    #[cfg(feature = "mtls-rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mtls-rustls")))]
    pub fn self_signed_tls_client(mut self, client_id: impl Into<String>, cert_sha256_thumbprint: &str) -> Self {
        self.self_signed_tls_clients.push((client_id.into(), cert_sha256_thumbprint.to_owned()));
        self
    }

    /// Generates the keys, binds the listener and starts serving.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound; [`InvalidInput`](std::io::ErrorKind::InvalidInput)
    /// when a registration cannot be used: a JWK Set with no usable public key, a subject
    /// that is not a distinguished name, a thumbprint that is not one, or TLS PEM that
    /// holds no usable certificate or key.
    pub async fn start(self) -> std::io::Result<TestIssuer> {
        let mut clients = Clients::default();
        if self.clients.is_empty() {
            clients.set_secret(TestIssuer::DEFAULT_CLIENT_ID, TestIssuer::DEFAULT_CLIENT_SECRET);
        }
        for (id, secret) in &self.clients {
            clients.set_secret(id, secret);
        }
        for (id, jwks) in &self.client_jwks {
            clients.set_keys(id, public_keys(jwks).map_err(|error| invalid(format!("client_jwks of {id}: {error}")))?);
        }
        for (id, audiences) in &self.exchange_policies {
            clients.set_exchange_audiences(id, audiences.clone());
        }
        let mut assertion_issuers = std::collections::HashMap::new();
        for (issuer, jwks) in &self.assertion_issuers {
            let keys =
                public_keys(jwks).map_err(|error| invalid(format!("keys of assertion issuer {issuer}: {error}")))?;
            assertion_issuers.insert(issuer.clone(), keys);
        }
        #[cfg(feature = "mtls-rustls")]
        let tls = self.tls_registrations(&mut clients)?;
        #[cfg(feature = "mtls-rustls")]
        let scheme = if tls.is_some() { "https" } else { "http" };
        #[cfg(not(feature = "mtls-rustls"))]
        let scheme = "http";

        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let origin = format!("{scheme}://{addr}");

        let mut algorithms = STARTUP_ALGORITHMS.to_vec();
        if !algorithms.contains(&self.signing_alg) {
            algorithms.push(self.signing_alg);
        }
        let mut keys = KeyRing::default();
        for key in generate_keys(algorithms).await? {
            keys.install(key);
        }

        let dpop = super::dpop::verifier(&origin, self.dpop_nonce).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            issuer: format!("{origin}{}", self.path_prefix),
            origin,
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
            basic_without_form_decoding: self.basic_without_form_decoding,
            assertion_issuers,
            assertion_replay: DpopReplayCache::in_memory(REPLAY_CAPACITY),
            #[cfg(feature = "mtls-rustls")]
            tls,
            keys: Mutex::new(keys),
            opaque: Mutex::default(),
            revoked: Mutex::default(),
            user_claims: Mutex::default(),
            faults: Mutex::default(),
            counters: Default::default(),
            grant_counters: Default::default(),
            clients: Mutex::new(clients),
            grants: Mutex::default(),
        });
        let server = tokio::spawn(server::serve(listener, Arc::clone(&shared))).abort_handle();
        Ok(TestIssuer { handle: Arc::new(Handle { shared, server }) })
    }
}

#[cfg(feature = "mtls-rustls")]
impl TestIssuerBuilder {
    /// The issuer's TLS, and the clients that authenticate with their certificate.
    fn tls_registrations(&self, clients: &mut Clients) -> std::io::Result<Option<super::tls::IssuerTls>> {
        use base64::Engine as _;

        use super::subject_dn::SubjectDn;

        let tls = self
            .tls
            .as_ref()
            .map(super::tls::IssuerTls::new)
            .transpose()
            .map_err(|error| invalid(format!("tls: {error}")))?;
        let registers = !self.tls_clients.is_empty() || !self.self_signed_tls_clients.is_empty();
        if registers && tls.is_none() {
            return Err(invalid("mutual-TLS clients need `tls`".to_owned()));
        }
        for (id, subject) in &self.tls_clients {
            let subject = SubjectDn::parse(subject).map_err(|error| invalid(format!("subject DN of {id}: {error}")))?;
            clients.set_tls_subject(id, subject);
        }
        for (id, thumbprint) in &self.self_signed_tls_clients {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(thumbprint).ok();
            let thumbprint = decoded
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| invalid(format!("thumbprint of {id}: not 32 bytes of base64url")))?;
            clients.set_self_signed(id, thumbprint);
        }
        Ok(tls)
    }
}

impl fmt::Debug for TestIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client_ids: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        let mut debug = f.debug_struct("TestIssuerBuilder");
        debug
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
            .field("basic_without_form_decoding", &self.basic_without_form_decoding)
            .field("client_jwks", &self.client_jwks.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .field("assertion_issuers", &self.assertion_issuers.iter().map(|(iss, _)| iss.as_str()).collect::<Vec<_>>())
            .field("exchange_policies", &self.exchange_policies);
        #[cfg(feature = "mtls-rustls")]
        debug
            .field("tls", &self.tls)
            .field("tls_clients", &self.tls_clients)
            .field("self_signed_tls_clients", &self.self_signed_tls_clients);
        debug.finish()
    }
}

/// The public keys of a JWK Set or of one JWK.
fn public_keys(json: &str) -> Result<KeySet, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|_| "not JSON".to_owned())?;
    let set = if value.get("keys").is_some() { value } else { serde_json::json!({ "keys": [value] }) };
    let keys = KeySet::from_jwks(set.to_string().as_bytes()).map_err(|error| error.to_string())?;
    if keys.is_empty() {
        return Err("no usable public key".to_owned());
    }
    Ok(keys)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
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
