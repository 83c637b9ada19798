//! One trusted issuer as configured: its identifier, where its keys come from, and the
//! parts of the validator's policy it replaces.

use std::fmt;

use super::binding::DpopMode;
use super::header::TypPolicy;
use super::policy::Overrides;
use crate::Algorithm;
use crate::introspect::Introspector;
use crate::jwks::KeyStore;

/// One trusted issuer: its identifier, where its keys come from, and optionally its own
/// policy in place of the validator's.
///
/// A plain string converts into an `Issuer` whose keys are found through discovery, so
/// [`ValidatorBuilder::issuer`](super::ValidatorBuilder::issuer) takes either.
///
/// ```
/// use tower_oauth::validate::Issuer;
/// use tower_oauth::{Algorithm, Validator};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let validator = Validator::builder()
///     .issuer("https://login.example.com/realms/main")
///     .issuer(Issuer::new("https://partner.example").audience("partner-api").algorithms([Algorithm::ES256]))
///     .audience("https://api.example.com")
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct Issuer {
    pub(super) name: String,
    pub(super) source: ConfiguredSource,
    pub(super) overrides: Overrides,
}

/// Where a configured issuer's keys come from (the live set's
/// [`IssuerSource`](super::issuer_set::IssuerSource) is what became of it).
#[derive(Clone)]
pub(super) enum ConfiguredSource {
    Discovery,
    Keys(KeyStore),
    Introspection(Introspector),
}

impl Issuer {
    /// An issuer whose keys are found through discovery
    /// (`{issuer}/.well-known/openid-configuration`, then RFC 8414 metadata). `iss` must
    /// equal this string exactly.
    pub fn new(issuer: impl Into<String>) -> Issuer {
        Issuer { name: issuer.into(), source: ConfiguredSource::Discovery, overrides: Overrides::default() }
    }

    /// Takes the keys from `keys` instead of discovery: a [`KeyStore`] built with its own
    /// settings, or a fixed set ([`KeyStore::from_key_set`]).
    pub fn keys(mut self, keys: KeyStore) -> Issuer {
        self.source = ConfiguredSource::Keys(keys);
        self
    }

    /// Asks `introspector` (RFC 7662) about this issuer's tokens instead of verifying them
    /// locally: for an issuer whose JWTs this server cannot verify (encrypted to a key it
    /// does not hold), or when revocation must be noticed within the introspection
    /// cache's lifetime rather than at `exp`. No key set is fetched for the issuer.
    ///
    /// The answer's claims go through the same policy as a JWT's: `iss` (when present)
    /// must be this issuer, `aud` must contain an accepted audience, `exp` is required,
    /// and `exp`, `nbf` and `iat` are checked with the leeway.
    pub fn introspection(mut self, introspector: Introspector) -> Issuer {
        self.source = ConfiguredSource::Introspection(introspector);
        self
    }

    /// Accepts this issuer's tokens for `audience`, in place of the validator's
    /// audiences. Call again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Issuer {
        self.overrides.audiences.push(audience.into());
        self
    }

    /// The algorithm allow-list for this issuer, in place of the validator's.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Issuer {
        self.overrides.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The `typ` policy for this issuer, in place of the validator's.
    pub fn typ(mut self, policy: TypPolicy) -> Issuer {
        self.overrides.typ = Some(policy);
        self
    }

    /// The DPoP policy for this issuer, in place of the validator's; see [`DpopMode`].
    pub fn dpop(mut self, mode: DpopMode) -> Issuer {
        self.overrides.dpop = Some(mode);
        self
    }

    /// Strict RFC 9068 `typ` for this issuer. Shorthand for `.typ(TypPolicy::Rfc9068)`.
    pub fn require_at_jwt(self) -> Issuer {
        self.typ(TypPolicy::Rfc9068)
    }

    /// The issuer identifier.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl From<&str> for Issuer {
    fn from(issuer: &str) -> Issuer {
        Issuer::new(issuer)
    }
}

impl From<String> for Issuer {
    fn from(issuer: String) -> Issuer {
        Issuer::new(issuer)
    }
}

impl From<&String> for Issuer {
    fn from(issuer: &String) -> Issuer {
        Issuer::new(issuer.as_str())
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            ConfiguredSource::Discovery => "discovery",
            ConfiguredSource::Keys(_) => "keys",
            ConfiguredSource::Introspection(_) => "introspection",
        };
        f.debug_struct("Issuer")
            .field("name", &self.name)
            .field("source", &source)
            .field("audiences", &self.overrides.audiences)
            .field("algorithms", &self.overrides.algorithms)
            .field("typ", &self.overrides.typ)
            .field("dpop", &self.overrides.dpop)
            .finish()
    }
}
