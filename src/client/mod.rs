//! Outbound tokens: obtain access tokens, keep them fresh, attach them to requests.
//!
//! - A [`TokenEndpoint`] obtains tokens from an OAuth 2.0 token endpoint (given, or
//!   discovered from an issuer) with the `client_credentials`, `refresh_token`,
//!   authorization-code, JWT bearer ([`AssertionSource`]) or token-exchange
//!   ([`TokenExchange`]) grant, authenticating with `client_secret_basic` (id and
//!   secret form-urlencoded first, RFC 6749 §2.3.1), `client_secret_post`,
//!   `client_secret_jwt`, `private_key_jwt` (a [`ClientKey`]) or mTLS (see
//!   [`AuthMethod`]).
//! - A [`TokenExchangeLayer`] behind `BearerAuthLayer` exchanges each caller's token
//!   for one aimed at a downstream API (RFC 8693) and hands it to the handler as an
//!   [`ExchangedToken`].
//! - A [`TokenCache`] holds the current token in an `ArcSwap` (reads never lock) and
//!   refreshes it ahead of expiry with one background task: callers of a cold cache
//!   share one fetch, a rotating refresh token is never spent twice, failures back off
//!   with jitter and honour `Retry-After`, and the current token serves until its real
//!   expiry through an outage.
//! - [`ClientCredentialsLayer`] attaches the token to requests of any
//!   `Service<http::Request<B>>` (hyper-util's client, a tonic `Channel`, …);
//!   `tower_oauth::reqwest::ClientCredentialsMiddleware` (feature `reqwest-middleware`)
//!   does the same for a reqwest-middleware client.
//! - A [`store::SharedStore`] lets a fleet of processes share one token per key
//!   (Redis with the `redis` feature), with one fetch per refresh fleet-wide.
//! - A [`DpopKey`] is the client's DPoP key (RFC 9449): it signs one proof per request,
//!   bound to the request's method and URL and to the access token sent with it.
//!
//! # Which requests get a token
//!
//! By default, requests to https URLs, and to http URLs on loopback (`localhost`,
//! `127.0.0.0/8`, `[::1]`); a request with only a path (no scheme and host) gets none.
//! [`ClientCredentialsLayer::attach_if`] replaces the rule. A request that already has
//! an `Authorization` header is never touched. The header is marked sensitive.
//!
//! # A 401 from the API
//!
//! The layer asks the cache for a token other than the one the API rejected (one
//! refresh for every request that saw the same token rejected, none if the token was
//! already replaced) and sends the request once more. Only once: a second 401 is the
//! answer. The Tower layer can replay a request only when its body is known to be
//! empty (`is_end_stream()`, or a size hint of exactly 0), rebuilding it with
//! `B::default()`; other requests return the 401 as it is (the next request uses the
//! new token). The reqwest middleware replays any request that `try_clone` can copy
//! (every body but a stream). A gRPC `UNAUTHENTICATED` (`grpc-status: 16` in a
//! trailers-only response) is never replayed: it stands, and the cache refreshes the
//! token for the requests that follow, in the layer and the middleware alike.
//!
//! # Example
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service as _, ServiceBuilder, ServiceExt as _};
//! use tower_oauth::client::{ClientCredentialsLayer, TokenCache, TokenEndpoint};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let endpoint = TokenEndpoint::builder("https://idp.example/token", "my-service", "s3cret")
//!     .scope("orders:read")
//!     .build()?;
//! let cache = TokenCache::new(endpoint)?;
//!
//! let http = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let mut client = ServiceBuilder::new().layer(ClientCredentialsLayer::new(cache)).service(http);
//!
//! let request = http::Request::get("https://orders.example/v1/orders").body(Empty::new())?;
//! let response = client.ready().await?.call(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```

mod cache;
mod dpop;
mod endpoint;
mod error;
pub(crate) mod exchange;
mod future;
mod grant;
mod key;
mod layer;
mod refresher;
mod response;
pub(crate) mod retry;
mod service;
mod source;
pub mod store;
mod target;
mod token;

pub use crate::idp::assertion::ClientKey;
pub use crate::idp::client_auth::{AssertionAudience, AuthMethod, ClientCredential};
pub use crate::idp::fetch::DEFAULT_MAX_BODY_SIZE;
pub use crate::signing::KeyError;
pub use cache::{TokenCache, TokenCacheBuilder};
pub use dpop::{DpopKey, Htu};
pub use endpoint::{TokenEndpoint, TokenEndpointBuilder};
pub use error::{ErrorCode, ErrorResponse, InvalidResponse, TokenError};
#[cfg(feature = "axum")]
pub use exchange::MissingExchangedToken;
pub use exchange::{DEFAULT_EXCHANGE_CACHE_CAPACITY, ExchangedToken, TokenExchangeLayer, TokenExchangeService};
pub use future::ClientCredentialsFuture;
pub use grant::{AssertionSource, TokenExchange, token_type};
pub use key::{CacheKey, GrantKind};
#[cfg(feature = "reqwest-middleware")]
pub(crate) use layer::Attach;
pub use layer::ClientCredentialsLayer;
pub use response::TokenResponse;
pub use service::ClientCredentials;
pub use source::{FetchFuture, TokenSource};
pub use target::RequestTarget;
pub use token::AccessToken;
