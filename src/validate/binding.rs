//! Sender-constrained tokens: the key a token is bound to (`cnf`, RFC 7800), checked
//! against what the request presented: a DPoP proof's key (RFC 9449 §7.1) or the TLS
//! client certificate (RFC 8705 §3); and the issuer's DPoP policy.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::ValidationError;
use super::claims::Confirmation;

/// Whether an issuer's tokens may, or must, come with a DPoP proof (RFC 9449).
///
/// Whatever the policy, a token bound to a DPoP key (`cnf.jkt`) is never accepted as a
/// bearer token (RFC 9449 §7.2), and a token bound to a certificate (`cnf.x5t#S256`)
/// only over a connection that presented that certificate (RFC 8705 §3).
///
/// | policy | `Authorization: Bearer` | `Authorization: DPoP` + proof |
/// |---|---|---|
/// | [`Off`](DpopMode::Off) | unbound and certificate-bound tokens | refused |
/// | [`Allowed`](DpopMode::Allowed) (default) | unbound and certificate-bound tokens | DPoP-bound tokens |
/// | [`Required`](DpopMode::Required) | refused | DPoP-bound tokens |
///
/// Proofs are checked only by a [`BearerAuthLayer`](crate::BearerAuthLayer) given a
/// [`DpopVerifier`](crate::validate::dpop::DpopVerifier); without one, the `DPoP` scheme
/// is not recognised at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopMode {
    /// DPoP is refused: only bearer tokens (and certificate-bound ones) are accepted.
    Off,
    /// Bearer tokens and DPoP-bound tokens with their proofs are both accepted.
    #[default]
    Allowed,
    /// Every token must be DPoP-bound and come with its proof.
    Required,
}

impl std::str::FromStr for DpopMode {
    type Err = UnknownDpopMode;

    /// `off`, `allowed` or `required`, as the examples' `OAUTH_DPOP` takes them.
    fn from_str(s: &str) -> Result<DpopMode, UnknownDpopMode> {
        match s {
            "off" => Ok(DpopMode::Off),
            "allowed" => Ok(DpopMode::Allowed),
            "required" => Ok(DpopMode::Required),
            _ => Err(UnknownDpopMode),
        }
    }
}

/// A DPoP policy name other than `off`, `allowed` or `required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownDpopMode;

impl std::fmt::Display for UnknownDpopMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unknown DPoP policy; expected off, allowed or required")
    }
}

impl std::error::Error for UnknownDpopMode {}

/// A thumbprint a token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Thumbprint {
    /// The SHA-256 the `cnf` member names.
    Sha256([u8; 32]),
    /// Not a base64url SHA-256: no key or certificate can match it.
    Unmatchable,
}

impl Thumbprint {
    fn read(text: &str) -> Thumbprint {
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
            Ok(32) => Thumbprint::Sha256(out),
            _ => Thumbprint::Unmatchable,
        }
    }

    fn matches(self, presented: &[u8; 32]) -> bool {
        self == Thumbprint::Sha256(*presented)
    }
}

/// What a verified token is bound to, and its issuer's DPoP policy: everything the
/// check against the request needs, kept with a cached token too. Small for the common
/// unbound token: what a bound one names is shared, not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    mode: DpopMode,
    bound: Option<Arc<Bound>>,
}

/// The confirmation methods of a bound token.
#[derive(Debug, PartialEq, Eq)]
struct Bound {
    jkt: Option<Thumbprint>,
    x5t_s256: Option<Thumbprint>,
    others: bool,
}

/// How the request presented the token: the default is a bearer token with no
/// certificate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Presentation {
    /// The RFC 7638 thumbprint of a verified DPoP proof's key (the `DPoP` scheme).
    pub(crate) dpop: Option<[u8; 32]>,
    /// The SHA-256 thumbprint of the TLS client certificate, when the connection
    /// presented one.
    pub(crate) certificate: Option<[u8; 32]>,
}

impl Binding {
    pub(crate) fn new(mode: DpopMode, cnf: Option<&Confirmation<'_>>) -> Binding {
        let read = |text: &Option<std::borrow::Cow<'_, str>>| text.as_deref().map(Thumbprint::read);
        let bound = cnf.map(|cnf| Bound { jkt: read(&cnf.jkt), x5t_s256: read(&cnf.x5t_s256), others: cnf.others });
        // An empty `cnf` binds nothing.
        let bound = bound.filter(|b| b.jkt.is_some() || b.x5t_s256.is_some() || b.others).map(Arc::new);
        Binding { mode, bound }
    }

    /// Whether a proof of possession is needed at all: the fast path of an unbound
    /// bearer token skips [`Binding::check`]'s work.
    pub(crate) fn is_plain(&self) -> bool {
        self.bound.is_none() && self.mode != DpopMode::Required
    }

    /// The token as presented, against what it is bound to and the issuer's policy.
    pub(crate) fn check(&self, presented: Presentation) -> Result<(), ValidationError> {
        const UNBOUND: Bound = Bound { jkt: None, x5t_s256: None, others: false };
        let bound = self.bound.as_deref().unwrap_or(&UNBOUND);
        if bound.others {
            // RFC 7800 §3.1: a confirmation method this server cannot check proves
            // nothing; accepting the token would make it a bearer token.
            return Err(ValidationError::SenderConstrained);
        }
        match (self.mode, presented.dpop) {
            (DpopMode::Off, Some(_)) => return Err(ValidationError::DpopNotAllowed),
            (DpopMode::Required, None) => return Err(ValidationError::DpopRequired),
            _ => {}
        }
        match (bound.jkt, presented.dpop) {
            (None, None) => {}
            // RFC 9449 §7.2: a DPoP-bound token presented as a bearer token.
            (Some(_), None) => return Err(ValidationError::SenderConstrained),
            // RFC 9449 §7.1: the proof's key must be the one the token is bound to; a
            // token bound to no key cannot be proven with one.
            (None, Some(_)) => return Err(ValidationError::ProofKeyMismatch),
            (Some(jkt), Some(key)) if !jkt.matches(&key) => return Err(ValidationError::ProofKeyMismatch),
            (Some(_), Some(_)) => {}
        }
        match (bound.x5t_s256, presented.certificate) {
            (None, _) => Ok(()),
            (Some(x5t), Some(certificate)) if x5t.matches(&certificate) => Ok(()),
            // RFC 8705 §3: no certificate, or another one.
            (Some(_), _) => Err(ValidationError::CertificateMismatch),
        }
    }

    /// For a caller that presents the token as a bearer token, with no certificate.
    #[cfg(test)]
    fn check_bearer(&self) -> Result<(), ValidationError> {
        if self.is_plain() { Ok(()) } else { self.check(Presentation::default()) }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const KEY: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [8; 32];

    fn b64(bytes: &[u8; 32]) -> Cow<'static, str> {
        Cow::Owned(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn bound(mode: DpopMode, jkt: Option<&[u8; 32]>, x5t: Option<&[u8; 32]>) -> Binding {
        let cnf = Confirmation { jkt: jkt.map(b64), x5t_s256: x5t.map(b64), others: false };
        Binding::new(mode, Some(&cnf))
    }

    fn dpop(key: &[u8; 32]) -> Presentation {
        Presentation { dpop: Some(*key), certificate: None }
    }

    #[test]
    fn an_unbound_token_follows_the_issuers_dpop_policy() {
        let plain = |mode| Binding::new(mode, None);
        assert_eq!(plain(DpopMode::Allowed).check_bearer(), Ok(()));
        assert_eq!(plain(DpopMode::Off).check_bearer(), Ok(()));
        assert_eq!(plain(DpopMode::Required).check_bearer(), Err(ValidationError::DpopRequired));
        assert_eq!(plain(DpopMode::Off).check(dpop(&KEY)), Err(ValidationError::DpopNotAllowed));
        // The DPoP scheme with a token bound to no key proves nothing.
        assert_eq!(plain(DpopMode::Allowed).check(dpop(&KEY)), Err(ValidationError::ProofKeyMismatch));
        let empty = Confirmation::default();
        assert!(Binding::new(DpopMode::Allowed, Some(&empty)).is_plain());
    }

    #[test]
    fn a_dpop_bound_token_needs_a_proof_with_its_key() {
        for mode in [DpopMode::Allowed, DpopMode::Required] {
            let token = bound(mode, Some(&KEY), None);
            assert_eq!(token.check(dpop(&KEY)), Ok(()));
            assert_eq!(token.check(dpop(&OTHER)), Err(ValidationError::ProofKeyMismatch));
        }
        // Never as a bearer token, whatever the policy.
        for mode in [DpopMode::Off, DpopMode::Allowed] {
            assert_eq!(bound(mode, Some(&KEY), None).check_bearer(), Err(ValidationError::SenderConstrained));
        }
        let garbled = Confirmation { jkt: Some("not-a-thumbprint".into()), ..Confirmation::default() };
        assert_eq!(
            Binding::new(DpopMode::Allowed, Some(&garbled)).check(dpop(&KEY)),
            Err(ValidationError::ProofKeyMismatch)
        );
    }

    #[test]
    fn a_certificate_bound_token_needs_its_certificate() {
        let token = bound(DpopMode::Allowed, None, Some(&KEY));
        let with = |certificate: Option<&[u8; 32]>| Presentation { dpop: None, certificate: certificate.copied() };
        assert_eq!(token.check(with(Some(&KEY))), Ok(()));
        assert_eq!(token.check(with(Some(&OTHER))), Err(ValidationError::CertificateMismatch));
        assert_eq!(token.check(with(None)), Err(ValidationError::CertificateMismatch));
        assert_eq!(token.check_bearer(), Err(ValidationError::CertificateMismatch));
        // Bound to both: the proof and the certificate.
        let both = bound(DpopMode::Allowed, Some(&KEY), Some(&OTHER));
        assert_eq!(both.check(Presentation { dpop: Some(KEY), certificate: Some(OTHER) }), Ok(()));
        assert_eq!(both.check(dpop(&KEY)), Err(ValidationError::CertificateMismatch));
    }

    #[test]
    fn a_confirmation_method_that_cannot_be_checked_is_refused() {
        let cnf = Confirmation { jkt: Some(b64(&KEY)), others: true, ..Confirmation::default() };
        let token = Binding::new(DpopMode::Allowed, Some(&cnf));
        assert_eq!(token.check(dpop(&KEY)), Err(ValidationError::SenderConstrained));
    }

    #[test]
    fn dpop_modes_parse_from_their_names() {
        assert_eq!("off".parse(), Ok(DpopMode::Off));
        assert_eq!("allowed".parse(), Ok(DpopMode::Allowed));
        assert_eq!("required".parse(), Ok(DpopMode::Required));
        assert_eq!("Required".parse::<DpopMode>(), Err(UnknownDpopMode));
    }
}
