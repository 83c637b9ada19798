//! A [reqwest-middleware](https://docs.rs/reqwest-middleware) 0.5 `Middleware` that
//! attaches access tokens from a [`TokenCache`].
//!
//! It behaves like [`ClientCredentialsLayer`]:
//! a token goes to https requests (and http ones to loopback) unless
//! [`attach_if`](ClientCredentialsMiddleware::attach_if) says otherwise, an existing
//! `Authorization` header is never overwritten, the header is marked sensitive, and a
//! 401 causes one forced refresh (shared with every request that saw the same token
//! rejected) and one retry. Here any request that `try_clone` can copy is replayed:
//! every body but a stream. A 401 to a request that cannot be replayed, or a gRPC
//! UNAUTHENTICATED (`grpc-status: 16` in the headers), is the answer, and the cache is
//! told, so the requests that follow get a new token.
//!
//! A token that cannot be had fails the request with
//! [`reqwest_middleware::Error::Middleware`] wrapping the [`TokenError`](crate::client::TokenError).
//!
//! ```no_run
//! use tower_oauth::client::{TokenCache, TokenEndpoint};
//! use tower_oauth::reqwest::ClientCredentialsMiddleware;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let endpoint = TokenEndpoint::builder("https://idp.example/token", "my-service", "s3cret").build()?;
//! let cache = TokenCache::new(endpoint)?;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(ClientCredentialsMiddleware::new(cache))
//!     .build();
//! let orders = client.get("https://orders.example/v1/orders").send().await?;
//! # let _ = orders;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::client::retry::{Attempt, Replay, set_token};
use crate::client::{Attach, ClientCredentialsLayer, RequestTarget, TokenCache};

/// Attaches access tokens to a reqwest-middleware client's requests; see the
/// [module docs](self).
#[derive(Clone)]
#[must_use]
pub struct ClientCredentialsMiddleware {
    config: Arc<Attach>,
}

impl ClientCredentialsMiddleware {
    /// Tokens from `cache` for https requests (and http ones to loopback), with one
    /// retry on a 401.
    pub fn new(cache: TokenCache) -> Self {
        ClientCredentialsMiddleware { config: ClientCredentialsLayer::new(cache).config }
    }

    /// Decides which requests get a token; see
    /// [`ClientCredentialsLayer::attach_if`](crate::client::ClientCredentialsLayer::attach_if).
    pub fn attach_if(self, predicate: impl Fn(&RequestTarget<'_>) -> bool + Send + Sync + 'static) -> Self {
        ClientCredentialsMiddleware {
            config: ClientCredentialsLayer { config: self.config }.attach_if(predicate).config,
        }
    }

    /// Whether a 401 causes one forced refresh and one retry; default `true`.
    pub fn retry_on_unauthorized(self, retry: bool) -> Self {
        ClientCredentialsMiddleware {
            config: ClientCredentialsLayer { config: self.config }.retry_on_unauthorized(retry).config,
        }
    }

    /// The cache the tokens come from.
    pub fn cache(&self) -> &TokenCache {
        &self.config.cache
    }
}

impl From<ClientCredentialsLayer> for ClientCredentialsMiddleware {
    /// The same cache and rules as the Tower layer.
    fn from(layer: ClientCredentialsLayer) -> Self {
        ClientCredentialsMiddleware { config: layer.config }
    }
}

impl fmt::Debug for ClientCredentialsMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsMiddleware").field("config", &self.config).finish()
    }
}

#[async_trait::async_trait]
impl Middleware for ClientCredentialsMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let config = &*self.config;
        if !config.predicate.allows(&RequestTarget::from_reqwest(&request)) {
            return next.run(request, extensions).await;
        }
        let token = config.cache.token().await.map_err(reqwest_middleware::Error::middleware)?;
        let replay = if config.retry { request.try_clone().map(Resend) } else { None };
        set_token(request.headers_mut(), token.header_value().clone());
        let attempt = Attempt::new(config.cache.clone(), token.generation(), replay);
        let response = next.clone().run(request, extensions).await?;
        let Some(retry) = attempt.judge(response.status(), response.headers()) else {
            return Ok(response);
        };
        match retry.authorize().await {
            Some(replay) => {
                drop(response);
                next.run(replay, extensions).await
            }
            None => Ok(response),
        }
    }
}

/// A copy of a request, from `try_clone` (every body but a stream), to send once more.
struct Resend(Request);

impl Replay for Resend {
    type Request = Request;

    fn authorize(self, authorization: HeaderValue) -> Request {
        let mut request = self.0;
        set_token(request.headers_mut(), authorization);
        request
    }
}
