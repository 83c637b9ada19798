//! The JOSE header of a compact JWS (RFC 7515 §4), parsed without copying.

use std::borrow::Cow;

use serde::Deserialize;

use super::ValidationError;
use crate::Algorithm;

/// The members this crate acts on. `jku`, `x5u`, `jwk` and `x5c` are deliberately not
/// read: a key named by the token itself is never fetched or trusted (RFC 8725 §3.10).
#[derive(Deserialize)]
pub(crate) struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    crit: Option<Vec<Cow<'a, str>>>,
    b64: Option<bool>,
}

impl<'a> Header<'a> {
    pub(crate) fn parse(json: &'a [u8]) -> Result<Header<'a>, ValidationError> {
        // serde's derive rejects duplicate members, which RFC 7515 §5.2 allows us to do.
        serde_json::from_slice(json).map_err(|_| ValidationError::Malformed("header is not a JOSE header"))
    }

    /// The algorithm, refusing `none` and unknown names.
    pub(crate) fn algorithm(&self) -> Result<Algorithm, ValidationError> {
        let name = self.alg.as_deref().ok_or(ValidationError::Malformed("header has no alg"))?;
        if name.eq_ignore_ascii_case("none") {
            return Err(ValidationError::AlgorithmNone);
        }
        Algorithm::from_name(name).ok_or(ValidationError::UnsupportedAlgorithm)
    }

    /// RFC 7515 §4.1.11 and RFC 7797 §6: we process no extensions, so any critical
    /// member other than a harmless `b64: true` makes the token invalid; and an
    /// unencoded payload is never accepted for a bearer token.
    pub(crate) fn check_extensions(&self) -> Result<(), ValidationError> {
        if self.b64 == Some(false) {
            return Err(ValidationError::UnencodedPayload);
        }
        if let Some(crit) = &self.crit {
            let understood = |name: &Cow<'_, str>| name == "b64" && self.b64 == Some(true);
            if crit.is_empty() || !crit.iter().all(understood) {
                return Err(ValidationError::UnsupportedCriticalHeader);
            }
        }
        Ok(())
    }
}

/// Which `typ` header values are accepted.
///
/// Media types compare case-insensitively and may omit `application/` (RFC 7515 §4.1.9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypPolicy {
    /// `at+jwt`, `JWT`, or no `typ` at all: what real issuers send (Keycloak sends `JWT`,
    /// RFC 9068 issuers send `at+jwt`). Other types, such as `dpop+jwt` or
    /// `logout+jwt`, are rejected so other kinds of JWT cannot pass as access tokens.
    #[default]
    Lenient,
    /// RFC 9068 §4: `typ` must be `at+jwt` (or `application/at+jwt`).
    Rfc9068,
}

impl TypPolicy {
    pub(crate) fn check(self, typ: Option<&str>) -> Result<(), ValidationError> {
        let typ = typ.map(|t| {
            let lower = t.len() >= 12 && t.as_bytes()[..12].eq_ignore_ascii_case(b"application/");
            if lower { &t[12..] } else { t }
        });
        let ok = match (self, typ) {
            (TypPolicy::Lenient, None) => true,
            (TypPolicy::Lenient, Some(t)) => t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("jwt"),
            (TypPolicy::Rfc9068, Some(t)) => t.eq_ignore_ascii_case("at+jwt"),
            (TypPolicy::Rfc9068, None) => false,
        };
        if ok { Ok(()) } else { Err(ValidationError::InvalidType) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_policies() {
        for ok in [None, Some("JWT"), Some("jwt"), Some("at+jwt"), Some("application/at+JWT"), Some("application/jwt")]
        {
            assert_eq!(TypPolicy::Lenient.check(ok), Ok(()), "{ok:?}");
        }
        for bad in [Some("dpop+jwt"), Some(""), Some("application/"), Some("JOSE")] {
            assert_eq!(TypPolicy::Lenient.check(bad), Err(ValidationError::InvalidType), "{bad:?}");
        }
        for ok in [Some("at+jwt"), Some("application/at+jwt"), Some("AT+JWT")] {
            assert_eq!(TypPolicy::Rfc9068.check(ok), Ok(()), "{ok:?}");
        }
        for bad in [None, Some("JWT"), Some("jwt")] {
            assert_eq!(TypPolicy::Rfc9068.check(bad), Err(ValidationError::InvalidType), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_header_members_are_malformed() {
        assert!(Header::parse(br#"{"alg":"RS256","alg":"none"}"#).is_err());
    }

    #[test]
    fn crit_rules() {
        let check = |json: &str| Header::parse(json.as_bytes()).unwrap().check_extensions();
        assert_eq!(check(r#"{"alg":"RS256"}"#), Ok(()));
        assert_eq!(check(r#"{"alg":"RS256","crit":["b64"],"b64":true}"#), Ok(()));
        assert_eq!(check(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#), Err(ValidationError::UnsupportedCriticalHeader));
        assert_eq!(check(r#"{"alg":"RS256","crit":[]}"#), Err(ValidationError::UnsupportedCriticalHeader));
        assert_eq!(check(r#"{"alg":"RS256","crit":["b64"]}"#), Err(ValidationError::UnsupportedCriticalHeader));
        assert_eq!(check(r#"{"alg":"RS256","b64":false}"#), Err(ValidationError::UnencodedPayload));
    }
}
