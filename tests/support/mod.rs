//! Shared by the integration tests that declare `mod support;`:
//!
//! - [`oidc_idp`]: the independent IdP (node-oidc-provider, `tests/oidc/idp.mjs`) and the API
//!   under test, for `oidc_provider`, `oidc_jwe` and `client_oidc_provider`;
//! - [`backoff`]: how many discoveries the discovery backoff allows in a time, for
//!   `introspection` and `userinfo`;
//! - [`vectors`]: reading `tests/vectors/` and comparing Wycheproof labels with what we do,
//!   for `vectors` and `jwe_vectors`.
//!
//! Every test compiles all of it and uses only part, hence the `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod backoff;
pub(crate) mod oidc_idp;
pub(crate) mod vectors;
