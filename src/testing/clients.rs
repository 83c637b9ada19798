//! The registered clients: what each may authenticate with (RFC 6749 §2.3, RFC 7523
//! §2.2, RFC 8705 §2), and which audiences each may exchange tokens for (RFC 8693).

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;

#[cfg(feature = "mtls-rustls")]
use super::subject_dn::SubjectDn;
use crate::KeySet;

/// No `Debug`: the secrets are in here.
#[derive(Default)]
pub(crate) struct Clients {
    by_id: HashMap<String, Client>,
}

/// One client's registration; every part is optional, and a client may have several.
#[derive(Default)]
struct Client {
    /// For `client_secret_basic`, `client_secret_post` and `client_secret_jwt`.
    secret: Option<String>,
    /// Public keys for `private_key_jwt`.
    keys: Option<KeySet>,
    /// For `tls_client_auth`: the subject of a certificate issued by the client CA.
    #[cfg(feature = "mtls-rustls")]
    tls_subject: Option<SubjectDn>,
    /// For `self_signed_tls_client_auth`: the SHA-256 of the certificate's DER.
    #[cfg(feature = "mtls-rustls")]
    self_signed: Option<[u8; 32]>,
    /// The audiences (or resources) the client may exchange tokens for.
    exchange_audiences: Option<Vec<String>>,
}

/// How a client may authenticate with its TLS certificate (RFC 8705 §2).
#[cfg(feature = "mtls-rustls")]
#[derive(Clone)]
pub(crate) struct TlsRegistration {
    pub(crate) subject: Option<SubjectDn>,
    pub(crate) self_signed: Option<[u8; 32]>,
}

impl Clients {
    pub(crate) fn set_secret(&mut self, client_id: &str, secret: &str) {
        self.entry(client_id).secret = Some(secret.to_owned());
    }

    pub(crate) fn set_keys(&mut self, client_id: &str, keys: KeySet) {
        self.entry(client_id).keys = Some(keys);
    }

    #[cfg(feature = "mtls-rustls")]
    pub(crate) fn set_tls_subject(&mut self, client_id: &str, subject: SubjectDn) {
        self.entry(client_id).tls_subject = Some(subject);
    }

    #[cfg(feature = "mtls-rustls")]
    pub(crate) fn set_self_signed(&mut self, client_id: &str, thumbprint: [u8; 32]) {
        self.entry(client_id).self_signed = Some(thumbprint);
    }

    pub(crate) fn set_exchange_audiences(&mut self, client_id: &str, audiences: Vec<String>) {
        self.entry(client_id).exchange_audiences = Some(audiences);
    }

    fn entry(&mut self, client_id: &str) -> &mut Client {
        self.by_id.entry(client_id.to_owned()).or_default()
    }

    /// Whether `secret` is the registered secret of `client_id`.
    pub(crate) fn authenticate(&self, client_id: &str, secret: &[u8]) -> bool {
        // Constant time, so the test issuer models what a real one must do.
        self.secret(client_id).is_some_and(|expected| verify_slices_are_equal(expected.as_bytes(), secret).is_ok())
    }

    /// The secret of `client_id`, the HMAC key of its `client_secret_jwt` assertions.
    pub(crate) fn secret(&self, client_id: &str) -> Option<&str> {
        self.by_id.get(client_id)?.secret.as_deref()
    }

    /// The public keys of `client_id`, for its `private_key_jwt` assertions.
    pub(crate) fn keys(&self, client_id: &str) -> Option<&KeySet> {
        self.by_id.get(client_id)?.keys.as_ref()
    }

    /// How `client_id` may authenticate with a certificate; `None` when it may not.
    #[cfg(feature = "mtls-rustls")]
    pub(crate) fn tls(&self, client_id: &str) -> Option<TlsRegistration> {
        let client = self.by_id.get(client_id)?;
        if client.tls_subject.is_none() && client.self_signed.is_none() {
            return None;
        }
        Some(TlsRegistration { subject: client.tls_subject.clone(), self_signed: client.self_signed })
    }

    /// The audiences `client_id` may exchange tokens for; `None` when it has no
    /// exchange policy at all.
    pub(crate) fn exchange_audiences(&self, client_id: &str) -> Option<&[String]> {
        self.by_id.get(client_id)?.exchange_audiences.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_registered_secret_authenticates() {
        let mut clients = Clients::default();
        clients.set_secret("c", "s3cret");
        assert!(clients.authenticate("c", b"s3cret"));
        assert!(!clients.authenticate("c", b"s3cre"));
        assert!(!clients.authenticate("d", b"s3cret"));
    }

    #[test]
    fn a_client_with_keys_only_has_no_secret_to_match() {
        let mut clients = Clients::default();
        clients.set_keys("c", KeySet::new());
        assert!(!clients.authenticate("c", b""));
        assert!(clients.keys("c").is_some());
        assert_eq!(clients.exchange_audiences("c"), None);
    }
}
