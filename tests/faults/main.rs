//! Fault injection: what the key store and the token endpoint do when the authorization
//! server misbehaves (slow, huge, garbage, gone). A binary of its own: the memory tests
//! measure the peak of this process, which other suites running alongside would raise.

#[path = "../support/mod.rs"]
mod support;

mod jwks;
mod observe;
mod token;
