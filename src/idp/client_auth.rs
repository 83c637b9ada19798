//! Client authentication to the authorization server (RFC 6749 §2.3): how the token
//! endpoint and the introspection endpoint learn who is asking.
//!
//! A [`ClientAuth`] is the client id and one method. Each method contributes, per
//! request, an `Authorization` header and/or pairs of the form body:
//!
//! | method | `Authorization` | form pairs |
//! |---|---|---|
//! | `client_secret_basic` | `Basic` of the id and secret, each form-urlencoded first (§2.3.1) | none |
//! | `client_secret_post` | none | `client_id`, `client_secret` |
//!
//! `private_key_jwt` (RFC 7523 §2.2: `client_assertion_type` and a fresh, signed
//! `client_assertion` per request) and `tls_client_auth` (RFC 8705 §2: `client_id`,
//! the certificate being the HTTP client's) are each one more [`AuthMethod`] and one
//! more arm in [`ClientAuth::authenticate`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

use crate::Secret;
use crate::idp::fetch::Form;

/// How the client authenticates to the token or introspection endpoint (RFC 6749
/// §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `client_secret_basic`: HTTP Basic with the id and secret form-urlencoded first.
    /// The default, and the method every server must support.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// A client's id, its credential and how it presents them. `Debug` shows the id and the
/// method, never the secret.
pub(crate) struct ClientAuth {
    client_id: String,
    credential: Credential,
}

/// The credential, ready for the wire.
enum Credential {
    /// The precomputed `Authorization: Basic …` value, marked sensitive, and the secret
    /// it was made from.
    Basic {
        authorization: HeaderValue,
        secret: Secret,
    },
    Post {
        secret: Secret,
    },
}

impl ClientAuth {
    /// `client_id` authenticating with `secret` by `method`.
    pub(crate) fn new(client_id: String, secret: Secret, method: AuthMethod) -> ClientAuth {
        let credential = match method {
            AuthMethod::ClientSecretBasic => {
                Credential::Basic { authorization: basic_authorization(&client_id, secret.expose()), secret }
            }
            AuthMethod::ClientSecretPost => Credential::Post { secret },
        };
        ClientAuth { client_id, credential }
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method.
    pub(crate) fn method(&self) -> AuthMethod {
        match self.credential {
            Credential::Basic { .. } => AuthMethod::ClientSecretBasic,
            Credential::Post { .. } => AuthMethod::ClientSecretPost,
        }
    }

    /// Authenticates one request: adds the method's pairs to `form`, and returns the
    /// `Authorization` header it needs, if any (marked sensitive).
    pub(crate) fn authenticate(&self, form: &mut Form) -> Option<&HeaderValue> {
        match &self.credential {
            Credential::Basic { authorization, .. } => Some(authorization),
            Credential::Post { secret } => {
                form.pair("client_id", self.client_id.as_bytes());
                form.pair("client_secret", secret.expose());
                None
            }
        }
    }

    /// Every form the client's secret takes on the wire: raw, form-urlencoded, and the
    /// base64 of the Basic credentials. An error response that echoes one is redacted.
    pub(crate) fn credentials(&self) -> Vec<Vec<u8>> {
        let secret = match &self.credential {
            Credential::Basic { secret, .. } | Credential::Post { secret } => secret.expose(),
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
/// or `%` in either survives the trip.
fn basic_authorization(client_id: &str, secret: &[u8]) -> HeaderValue {
    let mut credentials = form_urlencoded(client_id.as_bytes());
    credentials.push(b':');
    credentials.extend(form_urlencoded(secret));
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .expect("base64 is always a valid header value");
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_of(auth: &ClientAuth) -> (String, Option<HeaderValue>) {
        let mut form = Form::default();
        let authorization = auth.authenticate(&mut form).cloned();
        (String::from_utf8(form.into_bytes()).unwrap(), authorization)
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        // The Keycloak sample (seed 001): nothing to encode.
        assert_eq!(
            basic_authorization("cop-client-id", b"cop-client-secret"),
            "Basic Y29wLWNsaWVudC1pZDpjb3AtY2xpZW50LXNlY3JldA=="
        );
        let value = basic_authorization("svc:special", b"p@ss:w+rd%/ &=");
        let decoded = STANDARD.decode(&value.as_bytes()[6..]).unwrap();
        assert_eq!(decoded, b"svc%3Aspecial:p%40ss%3Aw%2Brd%25%2F+%26%3D");
        assert!(value.is_sensitive());
    }

    #[test]
    fn basic_sends_a_header_and_no_form_pairs() {
        let auth = ClientAuth::new("c".into(), Secret::from("s"), AuthMethod::ClientSecretBasic);
        let (form, authorization) = form_of(&auth);
        assert_eq!(form, "");
        assert_eq!(authorization.unwrap(), "Basic Yzpz");
        assert_eq!((auth.client_id(), auth.method()), ("c", AuthMethod::ClientSecretBasic));
    }

    #[test]
    fn post_sends_form_pairs_and_no_header() {
        let auth = ClientAuth::new("svc:1".into(), Secret::from("p&ss"), AuthMethod::ClientSecretPost);
        let mut form = Form::default();
        form.pair("token", b"t");
        assert_eq!(auth.authenticate(&mut form), None);
        assert_eq!(String::from_utf8(form.into_bytes()).unwrap(), "token=t&client_id=svc%3A1&client_secret=p%26ss");
        assert_eq!(auth.method(), AuthMethod::ClientSecretPost);
    }

    #[test]
    fn the_secret_is_redacted_in_every_form_it_takes_and_never_shown() {
        let basic = ClientAuth::new("c".into(), Secret::from("a b"), AuthMethod::ClientSecretBasic);
        assert_eq!(basic.credentials(), [b"a b".to_vec(), b"a+b".to_vec(), b"YzphK2I=".to_vec()]);
        let post = ClientAuth::new("c".into(), Secret::from("a b"), AuthMethod::ClientSecretPost);
        assert_eq!(post.credentials(), [b"a b".to_vec(), b"a+b".to_vec()]);
        for auth in [basic, post] {
            let debug = format!("{auth:?}");
            assert!(!debug.contains("a b") && !debug.contains("YzphK2I"), "{debug}");
        }
    }
}
