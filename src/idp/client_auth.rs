//! Client authentication to the authorization server (RFC 6749 §2.3, RFC 7523 §2.2,
//! RFC 8705 §2): how the token endpoint and the introspection endpoint learn who is
//! asking.
//!
//! A [`ClientAuth`] is the client id, one credential and one method. Each method
//! contributes, per request, an `Authorization` header and/or pairs of the form body:
//!
//! | method | `Authorization` | form pairs |
//! |---|---|---|
//! | `client_secret_basic` | `Basic` of the id and secret, each form-urlencoded first (§2.3.1) | none |
//! | the same, unencoded | `Basic` of the id and secret as they are | none |
//! | `client_secret_post` | none | `client_id`, `client_secret` |
//! | `client_secret_jwt` | none | `client_id`, `client_assertion_type`, `client_assertion` (HS256 with the secret) |
//! | `private_key_jwt` | none | `client_id`, `client_assertion_type`, `client_assertion` (signed with the key) |
//! | `tls_client_auth`, `self_signed_tls_client_auth` | none | `client_id` (the certificate is the HTTP client's) |
//! | `none` | none | `client_id` |
//!
//! An assertion is made fresh for every request (its own `jti`, `iat` now, `exp` a
//! minute later) and never reused.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use crate::Secret;
use crate::error::BuildError;
use crate::idp::assertion::{self, ClientKey};
use crate::idp::fetch::Form;
use crate::signing::KeyError;

/// How the client authenticates to the token or introspection endpoint (RFC 6749
/// §2.3, RFC 7523 §2.2, RFC 8705 §2; the names are those of the IANA "OAuth Token
/// Endpoint Authentication Methods" registry).
///
/// The method must fit the [`ClientCredential`]: a secret for the `client_secret_*`
/// methods, a [`ClientKey`] for `private_key_jwt`, and
/// [`ClientCredential::TlsCertificate`] for the two mTLS methods (the certificate
/// itself is the HTTP client's, see `TokenEndpointBuilder::tls_identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic with the id and secret form-urlencoded first
    /// (RFC 6749 §2.3.1). The default for a secret, and the method every server must
    /// support.
    #[default]
    ClientSecretBasic,
    /// `client_secret_basic` as some servers implement it: the id and secret are
    /// joined and base64-encoded without being form-urlencoded first. Only for a server
    /// that refuses the RFC's encoding of credentials holding characters such as
    /// `&`, `+`, `%`, `/`, `=` or `:`; with credentials made only of letters, digits and
    /// `*-._` both forms are the same.
    ClientSecretBasicUnencoded,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): an assertion signed
    /// with HMAC-SHA256 keyed by the secret. The secret itself never travels, but the
    /// server must hold it in the clear; prefer `private_key_jwt`.
    ClientSecretJwt,
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): an assertion signed
    /// with the client's private key. FAPI 2.0's method, with the mTLS ones.
    PrivateKeyJwt,
    /// `tls_client_auth` (RFC 8705 §2.1): the TLS client certificate, issued by a CA
    /// the server trusts, authenticates the client; only `client_id` is sent.
    TlsClientAuth,
    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): a self-signed TLS client
    /// certificate registered with the server authenticates the client.
    SelfSignedTlsClientAuth,
    /// `none`: a public client, identified by `client_id` alone. For grants whose
    /// assertion is the proof (the JWT bearer grant), with servers that allow it.
    None,
}

impl AuthMethod {
    /// The method's registered name (`client_secret_basic`, `private_key_jwt`, …);
    /// [`AuthMethod::ClientSecretBasicUnencoded`] is `client_secret_basic` too.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretBasicUnencoded => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::TlsClientAuth => "tls_client_auth",
            AuthMethod::SelfSignedTlsClientAuth => "self_signed_tls_client_auth",
            AuthMethod::None => "none",
        }
    }

    /// Whether the method authenticates with the TLS client certificate, and so uses
    /// the server's `mtls_endpoint_aliases` (RFC 8705 §5).
    pub(crate) fn is_mtls(self) -> bool {
        matches!(self, AuthMethod::TlsClientAuth | AuthMethod::SelfSignedTlsClientAuth)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the client proves its identity with. A `&str`, `String` or [`Secret`] is a
/// client secret and a [`ClientKey`] a private key, so the token endpoint's and the
/// introspector's builders take either:
///
/// ```
/// use tower_oauth::Algorithm;
/// use tower_oauth::client::{ClientCredential, ClientKey, TokenEndpoint};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // client_secret_basic
/// let with_secret = TokenEndpoint::builder("https://idp.example/token", "svc", "s3cret").build()?;
/// // private_key_jwt
/// let key = ClientKey::generate_for(Algorithm::ES256)?.with_kid("svc-2026");
/// let with_key = TokenEndpoint::builder("https://idp.example/token", "svc", key).build()?;
/// // tls_client_auth: the certificate is the HTTP client's
/// let with_cert = TokenEndpoint::builder("https://idp.example/token", "svc", ClientCredential::TlsCertificate);
/// # let _ = (with_secret, with_key, with_cert);
/// # Ok(()) }
/// ```
///
/// `Debug` shows which kind it is, never the secret or the key.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientCredential {
    /// A client secret: `client_secret_basic` by default, or `client_secret_post`,
    /// `client_secret_jwt` and the unencoded Basic form.
    Secret(Secret),
    /// A private key: `private_key_jwt`.
    Key(ClientKey),
    /// The TLS client certificate of the HTTP client: `tls_client_auth` by default, or
    /// `self_signed_tls_client_auth`.
    TlsCertificate,
    /// Nothing: a public client (`none`).
    None,
}

impl ClientCredential {
    /// The method used when none is chosen.
    pub(crate) fn default_method(&self) -> AuthMethod {
        match self {
            ClientCredential::Secret(_) => AuthMethod::ClientSecretBasic,
            ClientCredential::Key(_) => AuthMethod::PrivateKeyJwt,
            ClientCredential::TlsCertificate => AuthMethod::TlsClientAuth,
            ClientCredential::None => AuthMethod::None,
        }
    }
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(***)"),
            ClientCredential::Key(key) => f.debug_tuple("Key").field(key).finish(),
            ClientCredential::TlsCertificate => f.write_str("TlsCertificate"),
            ClientCredential::None => f.write_str("None"),
        }
    }
}

impl From<Secret> for ClientCredential {
    fn from(secret: Secret) -> Self {
        ClientCredential::Secret(secret)
    }
}

impl From<&str> for ClientCredential {
    fn from(secret: &str) -> Self {
        ClientCredential::Secret(Secret::from(secret))
    }
}

impl From<String> for ClientCredential {
    fn from(secret: String) -> Self {
        ClientCredential::Secret(Secret::from(secret))
    }
}

impl From<&String> for ClientCredential {
    fn from(secret: &String) -> Self {
        ClientCredential::Secret(Secret::from(secret.as_str()))
    }
}

impl From<ClientKey> for ClientCredential {
    fn from(key: ClientKey) -> Self {
        ClientCredential::Key(key)
    }
}

/// The `aud` of the client assertions (`private_key_jwt`, `client_secret_jwt`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The issuer identifier, as FAPI 2.0 requires (and RFC 7523bis recommends). When
    /// the endpoint was configured by URL rather than discovered, the issuer is not
    /// known and the endpoint's URL is used instead; give
    /// [`AssertionAudience::Value`] to name the issuer then. The default.
    #[default]
    Issuer,
    /// The URL of the endpoint the assertion is sent to (RFC 7523 §3, OpenID Connect
    /// Core §9), for servers that want the token endpoint.
    Endpoint,
    /// This value.
    Value(String),
}

/// A client's id, its credential and how it presents them. `Debug` shows the id and the
/// method, never the secret or the key.
pub(crate) struct ClientAuth {
    client_id: String,
    credential: Credential,
    audience: AssertionAudience,
}

/// The credential, ready for the wire.
enum Credential {
    /// The precomputed `Authorization: Basic …` value, marked sensitive, the secret it
    /// was made from, and whether the pair was form-urlencoded first.
    Basic {
        authorization: HeaderValue,
        secret: Secret,
        encoded: bool,
    },
    Post {
        secret: Secret,
    },
    SecretJwt {
        secret: Secret,
    },
    PrivateKeyJwt {
        key: ClientKey,
    },
    Tls {
        self_signed: bool,
    },
    None,
}

/// Where a request goes, for the `aud` of its assertion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Audience<'a> {
    /// The issuer, when the endpoint was discovered from it.
    pub(crate) issuer: Option<&'a str>,
    /// The URL the request is posted to.
    pub(crate) endpoint: &'a str,
}

impl ClientAuth {
    /// `client_id` authenticating with `credential` by `method` (the credential's
    /// default when `None`).
    ///
    /// # Errors
    ///
    /// [`BuildError::AuthMethod`] when the method does not fit the credential.
    pub(crate) fn new(
        client_id: String,
        credential: ClientCredential,
        method: Option<AuthMethod>,
        audience: AssertionAudience,
    ) -> Result<ClientAuth, BuildError> {
        let method = method.unwrap_or_else(|| credential.default_method());
        let credential = match (credential, method) {
            (ClientCredential::Secret(secret), AuthMethod::ClientSecretBasic) => Credential::Basic {
                authorization: basic_authorization(&client_id, secret.expose(), true),
                secret,
                encoded: true,
            },
            // RFC 7617 §2: the user-id of Basic cannot hold a colon; only the RFC 6749
            // encoding (or the form body) can carry one.
            (ClientCredential::Secret(_), AuthMethod::ClientSecretBasicUnencoded) if client_id.contains(':') => {
                return Err(BuildError::AuthMethod(
                    "a client id with `:` cannot go unencoded in Basic; use client_secret_post",
                ));
            }
            (ClientCredential::Secret(secret), AuthMethod::ClientSecretBasicUnencoded) => Credential::Basic {
                authorization: basic_authorization(&client_id, secret.expose(), false),
                secret,
                encoded: false,
            },
            (ClientCredential::Secret(secret), AuthMethod::ClientSecretPost) => Credential::Post { secret },
            (ClientCredential::Secret(secret), AuthMethod::ClientSecretJwt) => {
                // RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
                if secret.expose().len() < 32 {
                    return Err(BuildError::AuthMethod("client_secret_jwt needs a secret of at least 32 bytes"));
                }
                Credential::SecretJwt { secret }
            }
            (ClientCredential::Key(key), AuthMethod::PrivateKeyJwt) => Credential::PrivateKeyJwt { key },
            (ClientCredential::TlsCertificate, AuthMethod::TlsClientAuth) => Credential::Tls { self_signed: false },
            (ClientCredential::TlsCertificate, AuthMethod::SelfSignedTlsClientAuth) => {
                Credential::Tls { self_signed: true }
            }
            (ClientCredential::None, AuthMethod::None) => Credential::None,
            _ => return Err(BuildError::AuthMethod("the auth method does not fit the client credential")),
        };
        Ok(ClientAuth { client_id, credential, audience })
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method.
    pub(crate) fn method(&self) -> AuthMethod {
        match &self.credential {
            Credential::Basic { encoded: true, .. } => AuthMethod::ClientSecretBasic,
            Credential::Basic { encoded: false, .. } => AuthMethod::ClientSecretBasicUnencoded,
            Credential::Post { .. } => AuthMethod::ClientSecretPost,
            Credential::SecretJwt { .. } => AuthMethod::ClientSecretJwt,
            Credential::PrivateKeyJwt { .. } => AuthMethod::PrivateKeyJwt,
            Credential::Tls { self_signed: false } => AuthMethod::TlsClientAuth,
            Credential::Tls { self_signed: true } => AuthMethod::SelfSignedTlsClientAuth,
            Credential::None => AuthMethod::None,
        }
    }

    /// Authenticates one request to `to`: adds the method's pairs to `form`, and
    /// returns the `Authorization` header it needs, if any (marked sensitive).
    ///
    /// # Errors
    ///
    /// [`KeyError::Signing`] if an assertion cannot be signed.
    pub(crate) fn authenticate(&self, form: &mut Form, to: Audience<'_>) -> Result<Option<HeaderValue>, KeyError> {
        let assertion = match &self.credential {
            Credential::Basic { authorization, .. } => return Ok(Some(authorization.clone())),
            Credential::Post { secret } => {
                form.pair("client_id", self.client_id.as_bytes());
                form.pair("client_secret", secret.expose());
                return Ok(None);
            }
            Credential::Tls { .. } | Credential::None => {
                // RFC 8705 §2: the certificate authenticates, `client_id` says who.
                form.pair("client_id", self.client_id.as_bytes());
                return Ok(None);
            }
            Credential::SecretJwt { secret } => {
                assertion::hs256(secret.expose(), &self.client_id, self.audience_for(to))?
            }
            Credential::PrivateKeyJwt { key } => key.assertion(&self.client_id, self.audience_for(to))?,
        };
        // RFC 7523 §2.2 and OpenID Connect Core §9; `client_id` is optional there but
        // some servers (and RFC 6749 §3.2.1 for unauthenticated clients) want it.
        form.pair("client_id", self.client_id.as_bytes());
        form.pair("client_assertion_type", assertion::CLIENT_ASSERTION_TYPE.as_bytes());
        form.pair("client_assertion", assertion.expose());
        Ok(None)
    }

    fn audience_for<'a>(&'a self, to: Audience<'a>) -> &'a str {
        match &self.audience {
            AssertionAudience::Issuer => to.issuer.unwrap_or(to.endpoint),
            AssertionAudience::Endpoint => to.endpoint,
            AssertionAudience::Value(value) => value,
        }
    }

    /// Whether a refusal of these credentials may come from a server that compares
    /// Basic credentials without form-decoding them: the RFC encoding is in use and it
    /// changes the id or the secret.
    pub(crate) fn encoding_may_matter(&self) -> bool {
        match &self.credential {
            Credential::Basic { secret, encoded: true, .. } => {
                form_urlencoded(self.client_id.as_bytes()) != self.client_id.as_bytes()
                    || form_urlencoded(secret.expose()) != secret.expose()
            }
            _ => false,
        }
    }

    /// Every form the client's secret takes on the wire: raw, form-urlencoded, and the
    /// base64 of the Basic credentials. An error response that echoes one is redacted.
    /// Assertions are made per request and key material never travels.
    pub(crate) fn credentials(&self) -> Vec<Vec<u8>> {
        let secret = match &self.credential {
            Credential::Basic { secret, .. } | Credential::Post { secret } | Credential::SecretJwt { secret } => {
                secret.expose()
            }
            Credential::PrivateKeyJwt { .. } | Credential::Tls { .. } | Credential::None => return Vec::new(),
        };
        let mut forms = vec![secret.to_vec(), form_urlencoded(secret)];
        if let Credential::Basic { authorization, .. } = &self.credential {
            let value = authorization.as_bytes();
            forms.push(value.strip_prefix(b"Basic ").unwrap_or(value).to_vec());
        }
        forms
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth")
            .field("client_id", &self.client_id)
            .field("method", &self.method())
            .field("client_secret", &"***")
            .finish()
    }
}

/// `value` form-urlencoded (RFC 6749 Appendix B).
pub(crate) fn form_urlencoded(value: &[u8]) -> Vec<u8> {
    url::form_urlencoded::byte_serialize(value).flat_map(str::bytes).collect()
}

/// `client_secret_basic`: RFC 6749 §2.3.1 form-urlencodes the id and the secret
/// (Appendix B) before RFC 7617 joins them with `:` and base64-encodes them, so a `:`
/// or `%` in either survives the trip. `encode: false` skips that step, for servers
/// that compare the credentials without decoding them.
fn basic_authorization(client_id: &str, secret: &[u8], encode: bool) -> HeaderValue {
    let mut credentials = if encode { form_urlencoded(client_id.as_bytes()) } else { client_id.as_bytes().to_vec() };
    credentials.push(b':');
    credentials.extend(if encode { form_urlencoded(secret) } else { secret.to_vec() });
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .expect("base64 is always a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: Audience<'static> = Audience { issuer: None, endpoint: "https://idp.example/token" };

    fn auth(secret: &str, method: AuthMethod) -> ClientAuth {
        ClientAuth::new("c".into(), secret.into(), Some(method), AssertionAudience::Issuer).unwrap()
    }

    fn form_of(auth: &ClientAuth, to: Audience<'_>) -> (String, Option<HeaderValue>) {
        let mut form = Form::default();
        let authorization = auth.authenticate(&mut form, to).unwrap();
        (String::from_utf8(form.into_bytes()).unwrap(), authorization)
    }

    fn pairs(form: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(form.as_bytes()).into_owned().collect()
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        // The Keycloak sample (seed 001): nothing to encode.
        assert_eq!(
            basic_authorization("cop-client-id", b"cop-client-secret", true),
            "Basic Y29wLWNsaWVudC1pZDpjb3AtY2xpZW50LXNlY3JldA=="
        );
        let value = basic_authorization("svc:special", b"p@ss:w+rd%/ &=", true);
        let decoded = STANDARD.decode(&value.as_bytes()[6..]).unwrap();
        assert_eq!(decoded, b"svc%3Aspecial:p%40ss%3Aw%2Brd%25%2F+%26%3D");
        assert!(value.is_sensitive());
    }

    #[test]
    fn the_unencoded_form_joins_the_raw_credentials() {
        let unencoded = |id: &str| {
            ClientAuth::new(
                id.into(),
                "s3cr&t+%/=".into(),
                Some(AuthMethod::ClientSecretBasicUnencoded),
                AssertionAudience::Issuer,
            )
        };
        // RFC 7617 §2: no colon in the user-id.
        assert!(matches!(unencoded("svc:client"), Err(BuildError::AuthMethod(_))));
        let auth = unencoded("svc.client").unwrap();
        let (form, authorization) = form_of(&auth, TO);
        assert_eq!(form, "");
        let authorization = authorization.unwrap();
        assert_eq!(STANDARD.decode(&authorization.as_bytes()[6..]).unwrap(), b"svc.client:s3cr&t+%/=");
        assert!(authorization.is_sensitive());
        assert_eq!(auth.method(), AuthMethod::ClientSecretBasicUnencoded);
        assert!(!auth.encoding_may_matter());
    }

    #[test]
    fn the_encoding_may_matter_only_when_it_changes_the_credentials() {
        assert!(!auth("plain-Secret_1.0*", AuthMethod::ClientSecretBasic).encoding_may_matter());
        assert!(auth("s3cr&t+%/=", AuthMethod::ClientSecretBasic).encoding_may_matter());
        assert!(!auth("s3cr&t+%/=", AuthMethod::ClientSecretPost).encoding_may_matter());
    }

    #[test]
    fn basic_sends_a_header_and_no_form_pairs() {
        let auth = auth("s", AuthMethod::ClientSecretBasic);
        let (form, authorization) = form_of(&auth, TO);
        assert_eq!(form, "");
        assert_eq!(authorization.unwrap(), "Basic Yzpz");
        assert_eq!((auth.client_id(), auth.method()), ("c", AuthMethod::ClientSecretBasic));
    }

    #[test]
    fn post_sends_form_pairs_and_no_header() {
        let auth = ClientAuth::new(
            "svc:1".into(),
            "p&ss".into(),
            Some(AuthMethod::ClientSecretPost),
            AssertionAudience::Issuer,
        )
        .unwrap();
        let mut form = Form::default();
        form.pair("token", b"t");
        assert_eq!(auth.authenticate(&mut form, TO).unwrap(), None);
        assert_eq!(String::from_utf8(form.into_bytes()).unwrap(), "token=t&client_id=svc%3A1&client_secret=p%26ss");
        assert_eq!(auth.method(), AuthMethod::ClientSecretPost);
    }

    #[test]
    fn mtls_and_public_clients_send_only_their_id() {
        for method in [AuthMethod::TlsClientAuth, AuthMethod::SelfSignedTlsClientAuth] {
            let auth =
                ClientAuth::new("c".into(), ClientCredential::TlsCertificate, Some(method), AssertionAudience::Issuer)
                    .unwrap();
            assert_eq!(form_of(&auth, TO), ("client_id=c".into(), None));
            assert_eq!(auth.method(), method);
            assert!(method.is_mtls());
        }
        let none = ClientAuth::new("c".into(), ClientCredential::None, None, AssertionAudience::Issuer).unwrap();
        assert_eq!(form_of(&none, TO), ("client_id=c".into(), None));
        assert!(none.credentials().is_empty());
    }

    #[test]
    fn assertions_are_fresh_and_aimed_at_the_configured_audience() {
        let key = ClientKey::generate_for(crate::Algorithm::ES256).unwrap();
        let audience = |audience: AssertionAudience, to: Audience<'_>| {
            let auth = ClientAuth::new("c".into(), key.clone().into(), None, audience).unwrap();
            let (form, authorization) = form_of(&auth, to);
            assert_eq!(authorization, None);
            let pairs = pairs(&form);
            assert_eq!(pairs[0], ("client_id".into(), "c".into()));
            assert_eq!(pairs[1].1, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
            let claims = pairs[2].1.split('.').nth(1).unwrap();
            let claims: serde_json::Value = serde_json::from_slice(&crate::jwk::B64.decode(claims).unwrap()).unwrap();
            (claims["aud"].as_str().unwrap().to_owned(), claims["jti"].as_str().unwrap().to_owned())
        };
        let discovered = Audience { issuer: Some("https://idp.example"), endpoint: "https://idp.example/token" };
        assert_eq!(audience(AssertionAudience::Issuer, discovered).0, "https://idp.example");
        assert_eq!(audience(AssertionAudience::Issuer, TO).0, "https://idp.example/token");
        assert_eq!(audience(AssertionAudience::Endpoint, discovered).0, "https://idp.example/token");
        assert_eq!(audience(AssertionAudience::Value("x".into()), discovered).0, "x");
        let (_, first) = audience(AssertionAudience::Issuer, TO);
        let (_, second) = audience(AssertionAudience::Issuer, TO);
        assert_ne!(first, second);
    }

    #[test]
    fn a_method_must_fit_its_credential() {
        let refused = |credential: ClientCredential, method: AuthMethod| {
            matches!(
                ClientAuth::new("c".into(), credential, Some(method), AssertionAudience::Issuer),
                Err(BuildError::AuthMethod(_))
            )
        };
        assert!(refused("s".into(), AuthMethod::PrivateKeyJwt));
        assert!(refused("s".into(), AuthMethod::TlsClientAuth));
        assert!(refused(ClientCredential::TlsCertificate, AuthMethod::ClientSecretPost));
        assert!(refused(ClientCredential::None, AuthMethod::ClientSecretBasic));
        let key = ClientKey::generate_for(crate::Algorithm::EdDSA).unwrap();
        assert!(refused(key.into(), AuthMethod::ClientSecretJwt));
        // HS256 wants a key as long as its hash.
        assert!(refused("short".into(), AuthMethod::ClientSecretJwt));
        assert!(!refused("a-secret-of-at-least-thirty-two-bytes".into(), AuthMethod::ClientSecretJwt));
    }

    #[test]
    fn the_secret_is_redacted_in_every_form_it_takes_and_never_shown() {
        let basic = auth("a b", AuthMethod::ClientSecretBasic);
        assert_eq!(basic.credentials(), [b"a b".to_vec(), b"a+b".to_vec(), b"YzphK2I=".to_vec()]);
        let post = auth("a b", AuthMethod::ClientSecretPost);
        assert_eq!(post.credentials(), [b"a b".to_vec(), b"a+b".to_vec()]);
        for auth in [basic, post] {
            let debug = format!("{auth:?}");
            assert!(!debug.contains("a b") && !debug.contains("YzphK2I"), "{debug}");
        }
        let credential = ClientCredential::from("hunter2");
        assert!(!format!("{credential:?}").contains("hunter2"));
    }
}
