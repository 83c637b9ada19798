//! The claims policy: what an issuer's tokens must satisfy beyond their signature
//! (algorithms, `typ`, `aud`, `exp`, `nbf`, `iat`), and how an issuer or a pattern
//! replaces parts of the validator's defaults.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ValidationError;
use super::binding::DpopMode;
use super::claims::Registered;
use super::header::TypPolicy;
use crate::Algorithm;
use crate::error::BuildError;
use crate::uri::ResourceId;

/// What one issuer's tokens must satisfy beyond their signature.
#[derive(Debug)]
pub(crate) struct IssuerPolicy {
    pub(crate) audiences: Box<[Box<str>]>,
    /// The resource identifier (RFC 9728, RFC 8707), accepted as an audience after
    /// RFC 3986 normalisation; only where no audience was set.
    pub(crate) resource: Option<ResourceId>,
    pub(crate) algorithms: AlgorithmSet,
    pub(crate) typ: TypPolicy,
    pub(crate) dpop: DpopMode,
}

/// `exp` and `nbf` of a token that passed the time checks, so a cache can repeat them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) expires_at: i64,
    pub(crate) not_before: Option<i64>,
}

impl IssuerPolicy {
    /// The claims checks: `aud` contains an accepted audience; `exp` is required;
    /// `exp`, `nbf` and `iat` hold as of `now`, give or take `leeway` seconds.
    pub(crate) fn check_claims(
        &self,
        registered: &Registered<'_>,
        now: SystemTime,
        leeway: i64,
    ) -> Result<Times, ValidationError> {
        // RFC 7519 §4.1.3: `aud` is a string or an array; one match is enough.
        let aud = registered.aud.as_ref().ok_or(ValidationError::MissingClaim("aud"))?;
        if !aud.iter().any(|a| self.audiences.iter().any(|ok| **ok == **a))
            && !self.resource.as_ref().is_some_and(|resource| aud.iter().any(|a| resource.matches(a)))
        {
            return Err(ValidationError::InvalidAudience);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let exp = registered.exp.ok_or(ValidationError::MissingClaim("exp"))?;
        if now.saturating_sub(leeway) >= exp {
            return Err(ValidationError::Expired);
        }
        if registered.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(ValidationError::NotYetValid);
        }
        if registered.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(ValidationError::IssuedInFuture);
        }
        Ok(Times { expires_at: exp, not_before: registered.nbf })
    }
}

/// A small bit set: the allow-list check on the hot path is one AND.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// The set of `list`, or `None` when it is empty.
    pub(crate) fn from_list(list: &[Algorithm]) -> Option<AlgorithmSet> {
        let mut set = AlgorithmSet::default();
        for alg in list {
            set.0 |= 1 << Self::bit(*alg);
        }
        (set.0 != 0).then_some(set)
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & (1 << Self::bit(alg)) != 0
    }

    /// The declaration order, which `Algorithm::ALL` follows (a unit test pins it).
    fn bit(alg: Algorithm) -> usize {
        alg as usize
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        Algorithm::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

/// The parts of the validator's policy an issuer or pattern replaces.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) audiences: Vec<String>,
    pub(crate) algorithms: Option<Vec<Algorithm>>,
    pub(crate) typ: Option<TypPolicy>,
    pub(crate) dpop: Option<DpopMode>,
}

impl Overrides {
    /// The issuer's policy: the defaults where nothing is overridden (shared, not copied).
    pub(crate) fn apply(&self, defaults: &Arc<IssuerPolicy>) -> Result<Arc<IssuerPolicy>, BuildError> {
        if self.audiences.iter().any(String::is_empty) {
            return Err(BuildError::MissingAudience);
        }
        let nothing_overridden =
            self.audiences.is_empty() && self.algorithms.is_none() && self.typ.is_none() && self.dpop.is_none();
        let policy = if nothing_overridden {
            defaults.clone()
        } else {
            let algorithms = match &self.algorithms {
                Some(list) => AlgorithmSet::from_list(list).ok_or(BuildError::NoAlgorithms)?,
                None => defaults.algorithms,
            };
            // An issuer's own audiences replace the validator's, the resource included.
            let (audiences, resource) = if self.audiences.is_empty() {
                (defaults.audiences.clone(), defaults.resource.clone())
            } else {
                (self.audiences.iter().map(|a| a.as_str().into()).collect(), None)
            };
            Arc::new(IssuerPolicy {
                audiences,
                resource,
                algorithms,
                typ: self.typ.unwrap_or(defaults.typ),
                dpop: self.dpop.unwrap_or(defaults.dpop),
            })
        };
        // Without an audience every token would be accepted for any API.
        if policy.audiences.is_empty() && policy.resource.is_none() {
            return Err(BuildError::MissingAudience);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(audiences: &[&str], algorithms: &[Algorithm]) -> Arc<IssuerPolicy> {
        Arc::new(IssuerPolicy {
            audiences: audiences.iter().map(|a| (*a).into()).collect(),
            resource: None,
            algorithms: AlgorithmSet::from_list(algorithms).unwrap(),
            typ: TypPolicy::Lenient,
            dpop: DpopMode::Allowed,
        })
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    #[test]
    fn the_algorithm_set_holds_exactly_its_list() {
        assert_eq!(AlgorithmSet::from_list(&[]), None);
        let set = AlgorithmSet::from_list(&[Algorithm::RS256, Algorithm::EdDSA]).unwrap();
        for alg in Algorithm::ALL {
            assert_eq!(set.contains(alg), matches!(alg, Algorithm::RS256 | Algorithm::EdDSA), "{alg}");
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [Algorithm::RS256, Algorithm::EdDSA]);
        // Every algorithm has its own bit.
        let all = AlgorithmSet::from_list(&Algorithm::ALL).unwrap();
        assert_eq!(all.iter().collect::<Vec<_>>(), Algorithm::ALL);
    }

    #[test]
    fn claims_need_an_accepted_audience_and_an_unexpired_exp() {
        let p = policy(&["api", "other"], &[Algorithm::RS256]);
        let check = |json: &str, now: u64| p.check_claims(&Registered::parse(json.as_bytes()).unwrap(), at(now), 60);
        assert_eq!(check(r#"{"aud":["x","other"],"exp":1000}"#, 900), Ok(Times { expires_at: 1000, not_before: None }));
        assert_eq!(check(r#"{"aud":"x","exp":1000}"#, 900), Err(ValidationError::InvalidAudience));
        assert_eq!(check(r#"{"exp":1000}"#, 900), Err(ValidationError::MissingClaim("aud")));
        assert_eq!(check(r#"{"aud":"api"}"#, 900), Err(ValidationError::MissingClaim("exp")));
        // The leeway: `exp` passes until 60 s after it, `nbf` and `iat` from 60 s before.
        assert!(check(r#"{"aud":"api","exp":1000}"#, 1059).is_ok());
        assert_eq!(check(r#"{"aud":"api","exp":1000}"#, 1060), Err(ValidationError::Expired));
        assert_eq!(
            check(r#"{"aud":"api","exp":2000,"nbf":1000}"#, 940),
            Ok(Times { expires_at: 2000, not_before: Some(1000) })
        );
        assert_eq!(check(r#"{"aud":"api","exp":2000,"nbf":1000}"#, 939), Err(ValidationError::NotYetValid));
        assert_eq!(check(r#"{"aud":"api","exp":2000,"iat":1000}"#, 939), Err(ValidationError::IssuedInFuture));
        assert!(check(r#"{"aud":"api","exp":2000,"iat":1000}"#, 940).is_ok());
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let defaults = policy(&["api"], &[Algorithm::RS256]);
        let same = Overrides::default().apply(&defaults).unwrap();
        assert!(Arc::ptr_eq(&same, &defaults), "nothing overridden: the defaults are shared");

        let typ = Overrides { typ: Some(TypPolicy::Rfc9068), ..Overrides::default() }.apply(&defaults).unwrap();
        assert_eq!(
            (&*typ.audiences, typ.algorithms, typ.typ),
            (&*defaults.audiences, defaults.algorithms, TypPolicy::Rfc9068)
        );

        let own = Overrides {
            audiences: vec!["partner".into()],
            algorithms: Some(vec![Algorithm::ES256]),
            dpop: Some(DpopMode::Required),
            ..Overrides::default()
        }
        .apply(&defaults)
        .unwrap();
        assert_eq!(&*own.audiences, [Box::from("partner")]);
        assert!(own.algorithms.contains(Algorithm::ES256) && !own.algorithms.contains(Algorithm::RS256));
        assert_eq!((own.typ, own.dpop), (TypPolicy::Lenient, DpopMode::Required));
    }

    #[test]
    fn overrides_never_leave_a_policy_without_audience_or_algorithm() {
        let defaults = policy(&["api"], &[Algorithm::RS256]);
        let empty_audience = Overrides { audiences: vec![String::new()], ..Overrides::default() };
        assert!(matches!(empty_audience.apply(&defaults), Err(BuildError::MissingAudience)));
        let no_algorithms = Overrides { algorithms: Some(Vec::new()), ..Overrides::default() };
        assert!(matches!(no_algorithms.apply(&defaults), Err(BuildError::NoAlgorithms)));
        let no_defaults = Arc::new(IssuerPolicy {
            audiences: Box::new([]),
            resource: None,
            algorithms: defaults.algorithms,
            typ: TypPolicy::Lenient,
            dpop: DpopMode::Allowed,
        });
        assert!(matches!(Overrides::default().apply(&no_defaults), Err(BuildError::MissingAudience)));
    }
}
