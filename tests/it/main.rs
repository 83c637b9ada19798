//! The integration tests, in one test binary (one link instead of one per file). A module
//! per area; the servers and helpers they share are in `tests/support`.
//!
//! Three suites have binaries of their own because they need a process to themselves:
//! `faults` (it measures the process's peak memory), `secrets` (it installs the
//! process-wide subscriber) and `bearer_logs` (its scoped subscriber must see every
//! callsite: tracing caches a callsite's interest per process, and tests on other
//! threads without a subscriber race with it). `vectors` and `jwe_vectors` read the conformance vectors.

#[path = "../support/mod.rs"]
mod support;

/// The example gRPC server, for `grpc` and `client_layer`.
#[path = "../../examples/grpc_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod grpc_server;

mod bearer;
mod client;
mod client_auth;
mod client_auth_oidc;
mod client_credentials_example;
mod client_keycloak;
mod client_layer;
mod client_oidc_provider;
mod client_reqwest;
mod dpop;
mod dpop_oidc;
mod gateway_example;
mod grpc;
mod introspection;
mod introspection_oidc;
mod jwe;
mod key_store;
mod mcp;
mod mtls;
mod oidc_jwe;
mod oidc_provider;
mod properties;
mod redis_store;
mod resource_metadata;
mod resource_server;
mod step_up;
mod tenants;
mod test_issuer;
mod userinfo;
mod validator;
