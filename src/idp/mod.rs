//! The one road to the authorization server: every exchange with it (metadata, key
//! sets, tokens, introspection, userinfo) goes through here.
//!
//! - [`fetch`]: bounded GET and POST, the https-or-loopback rule, the default clients;
//! - [`discovery`]: authorization server metadata (OIDC Discovery, RFC 8414);
//! - [`background`]: the plumbing of a value refreshed by a background task.

pub(crate) mod background;
pub(crate) mod discovery;
pub(crate) mod fetch;
