//! A [reqwest-middleware](https://docs.rs/reqwest-middleware) 0.5 `Middleware` that
//! attaches access tokens from a [`TokenCache`].
//!
//! It behaves like [`ClientCredentialsLayer`]:
//! a token goes to https requests (and http ones to loopback) unless
//! [`attach_if`](ClientCredentialsMiddleware::attach_if) says otherwise, an existing
//! `Authorization` header is never overwritten, the header is marked sensitive, and a
//! 401 causes one forced refresh (shared with every request that saw the same token
//! rejected) and one retry. Here any request that `try_clone` can copy is replayed:
//! every body but a stream.
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

use http::Extensions;
use http::header::AUTHORIZATION;
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};

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
        let replay = if config.retry { request.try_clone() } else { None };
        request.headers_mut().insert(AUTHORIZATION, token.header_value().clone());
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let Some(mut replay) = replay else {
            // Not replayable: the requests that follow get a new token.
            config.cache.hint_rejected(token.generation());
            return Ok(response);
        };
        match config.cache.force_refresh(&token).await {
            Ok(fresh) => {
                drop(response);
                replay.headers_mut().insert(AUTHORIZATION, fresh.header_value().clone());
                next.run(replay, extensions).await
            }
            Err(error) => {
                tracing::debug!(%error, "the API answered 401; no new token to retry with");
                Ok(response)
            }
        }
    }
}
