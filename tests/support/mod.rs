//! Shared by the test binaries (`it`, `faults`, `secrets`, `bearer_logs`, `vectors`, `jwe_vectors`):
//!
//! - [`server`]: the scripted server, for every fault and answer the
//!   [`TestIssuer`](tower_oauth::testing::TestIssuer) does not make: scripted statuses,
//!   bodies, headers and delays, bodies that never end, floods, bytes that are not HTTP;
//!   it counts and records every connection and request;
//! - [`api`]: the API under test on 127.0.0.1, and the helpers every suite needs
//!   (`now`, a validator and a token endpoint for a test issuer);
//! - [`oidc_idp`]: the independent IdP (node-oidc-provider, `tests/oidc/idp.mjs`) and the API
//!   under test, for `oidc_provider`, `oidc_jwe`, `client_oidc_provider`, `dpop_oidc` and
//!   `mcp`;
//! - [`dpop_node`]: an independent DPoP client and resource server (npm `dpop` and
//!   `oauth4webapi`, `tests/oidc/dpop.mjs`), for `dpop_oidc`;
//! - [`redis`]: `redis-server` processes on free ports, for `redis_store`;
//! - [`logs`]: log lines of a scoped `tracing` subscriber, kept for assertions;
//! - [`backoff`]: how many discoveries the discovery backoff, and how many on-demand JWKS
//!   fetches the key store's pacing, allow in a time, for `key_store`, `jwks`,
//!   `introspection` and `userinfo`;
//! - [`vectors`]: reading `tests/vectors/` and comparing Wycheproof labels with what we do,
//!   for `vectors` and `jwe_vectors`.
//!
//! Every test compiles all of it and uses only part, hence the `dead_code` allowance.
#![allow(dead_code)]

#[cfg(feature = "testing")]
pub(crate) mod api;
pub(crate) mod backoff;
pub(crate) mod dpop_node;
pub(crate) mod logs;
pub(crate) mod oidc_idp;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod server;
pub(crate) mod vectors;
