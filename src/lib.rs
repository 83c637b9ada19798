#![doc = include_str!("../docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod algorithm;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod bearer;
pub mod client;
mod error;
#[cfg(feature = "_fuzzing")]
mod fuzzing;
mod idp;
pub mod introspect;
pub mod jwk;
pub mod jwks;
pub mod mtls;
#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub mod reqwest;
pub mod resource;
mod secret;
mod signing;
mod telemetry;
mod uri;
pub mod userinfo;
pub mod validate;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use algorithm::{Algorithm, KeyFamily, UnknownAlgorithm};
pub use bearer::{BearerAuth, BearerAuthLayer};
pub use client::{ClientCredentials, ClientCredentialsLayer, DpopKey, TokenCache, TokenEndpoint};
pub use error::{BuildError, FetchError};
#[cfg(feature = "_fuzzing")]
#[doc(hidden)]
pub use fuzzing::__fuzz;
pub use jwk::{Jwk, JwkError, KeySet};
pub use jwks::{KeyStore, KeyStoreBuilder};
pub use secret::Secret;
pub use validate::{Claims, TypPolicy, ValidationError, Validator, ValidatorBuilder};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
