//! The one road to the authorization server: every exchange with it (metadata, key
//! sets, tokens, introspection, userinfo) goes through here.
//!
//! - [`fetch`]: bounded GET and POST, the https-or-loopback rule, the default clients;
//! - [`answers`]: the single-flight cache of per-token answers, and how long one lives;
//! - [`background`]: the plumbing of a value refreshed by a background task;
//! - [`client_auth`]: client authentication, one type for every method, and
//!   [`assertion`]: the client assertions of `private_key_jwt` and `client_secret_jwt`;
//! - [`discovery`]: authorization server metadata (OIDC Discovery, RFC 8414);
//! - [`endpoint`]: an endpoint that is a URL or a member of the issuer's metadata, with
//!   one single-flight lookup and one rule for looking again.

pub(crate) mod answers;
pub(crate) mod assertion;
pub(crate) mod background;
pub(crate) mod client_auth;
pub(crate) mod discovery;
pub(crate) mod endpoint;
pub(crate) mod fetch;
