//! The JOSE header of a compact JWS (RFC 7515 §4), parsed without copying.

use std::borrow::Cow;

use std::marker::PhantomData;

use serde::Deserializer as _;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::ValidationError;
use super::claims::Str;
use crate::Algorithm;

/// The members this crate acts on. `jku`, `x5u`, `jwk` and `x5c` are deliberately not
/// read: a key named by the token itself is never fetched or trusted (RFC 8725 §3.10).
#[derive(Default)]
pub(crate) struct Header<'a> {
    alg: Option<Cow<'a, str>>,
    pub(crate) kid: Option<Cow<'a, str>>,
    pub(crate) typ: Option<Cow<'a, str>>,
    crit: Option<Vec<Cow<'a, str>>>,
    b64: Option<bool>,
    /// JWE only (RFC 7516 §4.1): content encryption, compression, content type.
    pub(crate) enc: Option<Cow<'a, str>>,
    pub(crate) zip: Option<Cow<'a, str>>,
    pub(crate) cty: Option<Cow<'a, str>>,
}

impl<'a> Header<'a> {
    /// RFC 7515 §4: the header is a JSON object; §5.2 lets us reject duplicate members,
    /// which we do for every member, known or not, so no two parsers can disagree on it.
    pub(crate) fn parse(json: &'a [u8]) -> Result<Header<'a>, ValidationError> {
        // Text checked once as a whole is read without checking each string again.
        let header = match std::str::from_utf8(json) {
            Ok(text) => Self::read(&mut serde_json::Deserializer::from_str(text)),
            Err(_) => Self::read(&mut serde_json::Deserializer::from_slice(json)),
        };
        header.map_err(|_| ValidationError::Malformed("header is not a JOSE header"))
    }

    fn read<R: serde_json::de::Read<'a>>(de: &mut serde_json::Deserializer<R>) -> serde_json::Result<Header<'a>> {
        let header = de.deserialize_map(HeaderVisitor(PhantomData))?;
        de.end()?;
        Ok(header)
    }

    /// The raw `alg` name (JWE algorithms are not JWS [`Algorithm`]s).
    #[cfg_attr(not(feature = "jwe"), allow(dead_code))]
    pub(crate) fn alg_name(&self) -> Option<&str> {
        self.alg.as_deref()
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

/// Real headers have three to six members.
const MAX_MEMBERS: usize = 24;

struct HeaderVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for HeaderVisitor<'a> {
    type Value = Header<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'a>, A::Error> {
        let mut header = Header::default();
        // Headers have a handful of members: a linear scan of a small array beats
        // hashing and allocating. More members than that is no header we accept.
        let mut seen: [Option<Cow<'a, str>>; MAX_MEMBERS] = Default::default();
        let mut count = 0;
        while let Some(Str(name)) = map.next_key::<Str<'a>>()? {
            if seen[..count].iter().any(|s| s.as_deref() == Some(&*name)) {
                return Err(de::Error::custom("duplicate header member"));
            }
            if count == MAX_MEMBERS {
                return Err(de::Error::custom("too many header members"));
            }
            match &*name {
                "alg" => header.alg = Some(map.next_value::<Str<'a>>()?.0),
                "kid" => header.kid = Some(map.next_value::<Str<'a>>()?.0),
                "typ" => header.typ = Some(map.next_value::<Str<'a>>()?.0),
                "crit" => {
                    let names: Vec<Str<'a>> = map.next_value()?;
                    header.crit = Some(names.into_iter().map(|s| s.0).collect());
                }
                "b64" => header.b64 = Some(map.next_value()?),
                "enc" => header.enc = Some(map.next_value::<Str<'a>>()?.0),
                "zip" => header.zip = Some(map.next_value::<Str<'a>>()?.0),
                "cty" => header.cty = Some(map.next_value::<Str<'a>>()?.0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen[count] = Some(name);
            count += 1;
        }
        Ok(header)
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

/// A JOSE `typ` or `cty` without its optional `application/` prefix (RFC 7515 §4.1.9),
/// which compares case-insensitively.
pub(crate) fn media_subtype(media_type: &str) -> &str {
    match media_type.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &media_type[12..],
        _ => media_type,
    }
}

impl TypPolicy {
    pub(crate) fn check(self, typ: Option<&str>) -> Result<(), ValidationError> {
        let typ = typ.map(media_subtype);
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
        assert!(Header::parse(br#"{"alg":"RS256","x":1,"x":2}"#).is_err());
    }

    #[test]
    fn a_header_must_be_an_object() {
        // serde would read a struct from an array; a JOSE header is an object (RFC 7515 §4).
        assert!(Header::parse(br#"["HS256",null,null,null,null]"#).is_err());
        assert!(Header::parse(br#""RS256""#).is_err());
        assert!(Header::parse(br#"{"alg":"RS256"} {}"#).is_err());
        assert!(Header::parse(br#"{"alg":"RS256","kid":7}"#).is_err());
        assert_eq!(Header::parse(br#"{"alg":"RS256","kid":"a\u0062"}"#).unwrap().kid.as_deref(), Some("ab"));
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
