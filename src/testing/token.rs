//! Minting tokens: valid ones by default, and every way to make them invalid.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::TestKey;
use super::key::{b64, random_id};
use super::state::{DEFAULT_CLIENT_ID, Shared};
use crate::Algorithm;

/// A JWT under construction; from [`TestIssuer::mint`](super::TestIssuer::mint).
///
/// By default it is a valid access token (RFC 9068 §2):
///
/// - header: `alg` (the issuer's signing algorithm, RS256 unless configured), `typ`
///   (`at+jwt` unless configured), `kid` (the current key for `alg`);
/// - claims: `iss`, `sub: "test-subject"`, `aud` (the issuer's audience), `iat`,
///   `exp` (now + the token lifetime), a random `jti`, `client_id: "test-client"`
///   and `scope: "read"`.
///
/// Each method changes one thing; a terminal method (`sign`, `sign_with`,
/// `unsigned`, `sign_then`, `tampered_*`) produces the compact serialization.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use std::time::Duration;
/// use tower_oauth::Algorithm;
/// use tower_oauth::testing::TestIssuer;
///
/// let issuer = TestIssuer::start().await?;
/// let admin = issuer.mint().scope("read admin").subject("alice").sign();
/// let es256 = issuer.mint().alg(Algorithm::ES256).sign();
/// let early = issuer.mint().not_before_in(Duration::from_secs(600)).sign();
/// let other_audience = issuer.mint().audience(vec!["a", "b"]).sign();
/// let forged = issuer.mint().tampered_signature();
/// # Ok(()) }
/// ```
#[must_use]
pub struct TokenBuilder {
    shared: Arc<Shared>,
    alg: Algorithm,
    now: i64,
    /// Header members set explicitly; they override the defaults.
    header: Map<String, Value>,
    /// Header members removed explicitly, defaults included.
    removed_header: BTreeSet<String>,
    claims: Map<String, Value>,
}

/// The three segments of a compact JWS, still base64url-encoded, for tests that
/// break a token after signing (RFC 7515 §7.1). `Display` joins them with dots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParts {
    /// The encoded protected header.
    pub header: String,
    /// The encoded payload.
    pub payload: String,
    /// The encoded signature.
    pub signature: String,
}

impl fmt::Display for TokenParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.header, self.payload, self.signature)
    }
}

impl TokenBuilder {
    pub(crate) fn new(shared: Arc<Shared>) -> TokenBuilder {
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), shared.issuer.clone().into());
        claims.insert("sub".into(), "test-subject".into());
        claims.insert("aud".into(), shared.audience.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(secs(shared.token_lifetime)).into());
        claims.insert("jti".into(), random_id().into());
        claims.insert("client_id".into(), DEFAULT_CLIENT_ID.into());
        claims.insert("scope".into(), "read".into());
        TokenBuilder {
            alg: shared.signing_alg,
            shared,
            now,
            header: Map::new(),
            removed_header: BTreeSet::new(),
            claims,
        }
    }

    /// Signs with the issuer's current key for `alg`, and sets `alg` and `kid` to
    /// match. For an HMAC algorithm that is the issuer's unpublished shared secret
    /// (see [`TestIssuer::current_key`](super::TestIssuer::current_key)).
    pub fn alg(mut self, alg: Algorithm) -> Self {
        self.alg = alg;
        self
    }

    /// Sets a claim, replacing any previous value.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim, a default one included.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets a header member; it wins over the `alg`, `kid` and `typ` that signing
    /// would put there.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.removed_header.remove(name);
        self.header.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a header member, a default one included (`kid`, `typ`, even `alg`).
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self.removed_header.insert(name.to_owned());
        self
    }

    /// Sets `scope`, space-separated (RFC 9068 §2.2.3).
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    /// Sets `sub`.
    pub fn subject(self, subject: &str) -> Self {
        self.claim("sub", subject)
    }

    /// Sets `aud`: a string, or an array such as `vec!["a", "b"]`.
    pub fn audience(self, audience: impl Into<Value>) -> Self {
        self.claim("aud", audience)
    }

    /// Sets `iss`.
    pub fn issuer(self, issuer: &str) -> Self {
        self.claim("iss", issuer)
    }

    /// Sets `exp` to now plus `lifetime`.
    pub fn expires_in(self, lifetime: Duration) -> Self {
        let exp = self.now.saturating_add(secs(lifetime));
        self.claim("exp", exp)
    }

    /// Makes the token one that expired an hour ago (`iat` moves back too, so that
    /// only expiry is wrong).
    pub fn expired(self) -> Self {
        let exp = self.now - 3600;
        let iat = exp.saturating_sub(secs(self.shared.token_lifetime));
        self.claim("exp", exp).claim("iat", iat)
    }

    /// Sets `nbf` to now plus `delay`: not yet valid.
    pub fn not_before_in(self, delay: Duration) -> Self {
        let nbf = self.now.saturating_add(secs(delay));
        self.claim("nbf", nbf)
    }

    /// Sets `iat` to now plus `delay`: issued in the future.
    pub fn issued_in(self, delay: Duration) -> Self {
        let iat = self.now.saturating_add(secs(delay));
        self.claim("iat", iat)
    }

    /// Signs with the issuer's current key for the algorithm, giving a compact JWS.
    pub fn sign(self) -> String {
        let key = self.shared.current_key(self.alg);
        self.sign_with(&key)
    }

    /// Signs with `key`; `alg` and `kid` come from it unless set with
    /// [`TokenBuilder::header`].
    pub fn sign_with(self, key: &TestKey) -> String {
        let header = self.header_json(key.alg().as_str(), Some(key.kid()));
        key.sign_compact(&header, &self.claims_json())
    }

    /// Signs, then encrypts the signed token to `key` (A256GCM, `cty: JWT`): a nested
    /// JWE access token (RFC 7519 §5.2), as issuers that encrypt access tokens send.
    #[cfg(feature = "jwe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwe")))]
    pub fn encrypt(self, key: &super::TestEncryptionKey) -> String {
        key.encrypt(self.sign().as_bytes(), "A256GCM", Some("JWT"))
    }

    /// An unsecured JWT (RFC 7519 §6): `alg: "none"`, no `kid`, and an empty
    /// signature segment.
    pub fn unsigned(self) -> String {
        let header = self.header_json("none", None);
        format!("{}.{}.", b64(header), b64(self.claims_json()))
    }

    /// An opaque access token: random characters that say nothing, with these claims
    /// registered in the issuer behind them. The introspection and userinfo endpoints
    /// answer for it (until it expires or is [revoked](super::TestIssuer::revoke));
    /// nothing can verify it locally.
    pub fn opaque(self) -> String {
        let token = format!("{}{}", random_id(), random_id());
        self.shared.register_opaque(&token, self.claims);
        token
    }

    /// Signs, then lets `edit` change the encoded segments, and joins them.
    pub fn sign_then(self, edit: impl FnOnce(&mut TokenParts)) -> String {
        let token = self.sign();
        let mut segments = token.splitn(3, '.').map(str::to_owned);
        let mut parts = TokenParts {
            header: segments.next().unwrap_or_default(),
            payload: segments.next().unwrap_or_default(),
            signature: segments.next().unwrap_or_default(),
        };
        edit(&mut parts);
        parts.to_string()
    }

    /// A signed token with one bit of its signature flipped: well-formed, but the
    /// signature does not verify.
    pub fn tampered_signature(self) -> String {
        self.sign_then(|parts| {
            let mut signature = URL_SAFE_NO_PAD.decode(&parts.signature).unwrap_or_default();
            if let Some(first) = signature.first_mut() {
                *first ^= 1;
            }
            parts.signature = b64(signature);
        })
    }

    /// A signed token whose payload was changed afterwards (`sub` becomes
    /// `"attacker"`), so the signature no longer covers it.
    pub fn tampered_payload(self) -> String {
        let mut forged = self.claims.clone();
        forged.insert("sub".into(), "attacker".into());
        let forged = b64(Value::Object(forged).to_string());
        self.sign_then(|parts| parts.payload = forged)
    }

    fn header_json(&self, alg: &str, kid: Option<&str>) -> String {
        let mut header = Map::new();
        header.insert("alg".into(), alg.into());
        if let Some(kid) = kid {
            header.insert("kid".into(), kid.into());
        }
        header.insert("typ".into(), self.shared.access_token_typ.clone().into());
        header.extend(self.header.clone());
        header.retain(|name, _| !self.removed_header.contains(name));
        Value::Object(header).to_string()
    }

    fn claims_json(&self) -> String {
        Value::Object(self.claims.clone()).to_string()
    }
}

impl fmt::Debug for TokenBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBuilder")
            .field("alg", &self.alg)
            .field("header", &self.header)
            .field("removed_header", &self.removed_header)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch: the NumericDate of RFC 7519 §2.
fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, secs)
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
