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

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::client::AccessToken;
use crate::client::retry::{Attempt, DpopTarget, Replay, attach_token};
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
        // A request on a caller's behalf (`RequestBuilder::with_extension(exchanged_token)`)
        // carries the token exchanged for the caller's instead of the service's own, once.
        if let Some(exchanged) = extensions.get::<crate::client::ExchangedToken>() {
            let header = exchanged.header_value().clone();
            request.headers_mut().entry(http::header::AUTHORIZATION).or_insert(header);
            return next.run(request, extensions).await;
        }
        let token = config.cache.token().await.map_err(reqwest_middleware::Error::middleware)?;
        let replay = if config.retry { request.try_clone().map(Resend) } else { None };
        let (method, url) = (request.method().clone(), request.url().clone());
        attach_token(request.headers_mut(), &token, &method, &url).map_err(reqwest_middleware::Error::middleware)?;
        let dpop = token.dpop_key().and_then(|key| DpopTarget::new(key, &url));
        let attempt = Attempt::new(config.cache.clone(), token.generation(), replay).with_dpop(dpop);
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

    fn authorize(self, token: &AccessToken) -> Option<Request> {
        let mut request = self.0;
        let (method, url) = (request.method().clone(), request.url().clone());
        attach_token(request.headers_mut(), token, &method, &url).ok()?;
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use reqwest::StatusCode;

    use super::*;
    use base64::Engine as _;

    use crate::client::retry::tests::{proof_claims, until_generation, warm_cache, warm_dpop_cache};

    /// Stands in for the network: answers with the queued answers, then 200, and
    /// records each request's `Authorization` header and body.
    #[derive(Clone, Default)]
    struct Scripted {
        answers: Arc<Mutex<VecDeque<http::Response<&'static str>>>>,
        seen: Arc<Mutex<Vec<Seen>>>,
        proofs: Arc<Mutex<Vec<Option<String>>>>,
    }

    /// A request's `Authorization` header and body.
    type Seen = (String, Vec<u8>);

    #[async_trait::async_trait]
    impl Middleware for Scripted {
        async fn handle(
            &self,
            request: Request,
            _: &mut Extensions,
            _: Next<'_>,
        ) -> reqwest_middleware::Result<Response> {
            let authorization = request.headers().get("authorization").map_or("", |v| v.to_str().unwrap()).to_owned();
            let body = request.body().and_then(|body| body.as_bytes()).unwrap_or_default().to_vec();
            self.seen.lock().unwrap().push((authorization, body));
            let proof = request.headers().get("dpop").map(|v| v.to_str().unwrap().to_owned());
            self.proofs.lock().unwrap().push(proof);
            let answer = self.answers.lock().unwrap().pop_front().unwrap_or_else(|| http::Response::new(""));
            Ok(Response::from(answer))
        }
    }

    impl Scripted {
        fn answering(answers: impl IntoIterator<Item = http::Response<&'static str>>) -> Scripted {
            let scripted = Scripted::default();
            scripted.answers.lock().unwrap().extend(answers);
            scripted
        }

        fn authorizations(&self) -> Vec<String> {
            self.seen.lock().unwrap().iter().map(|(authorization, _)| authorization.clone()).collect()
        }

        fn client(&self, middleware: ClientCredentialsMiddleware) -> reqwest_middleware::ClientWithMiddleware {
            reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(middleware).with(self.clone()).build()
        }
    }

    fn status(code: u16) -> http::Response<&'static str> {
        http::Response::builder().status(code).body("").unwrap()
    }

    fn use_dpop_nonce(nonce: &'static str) -> http::Response<&'static str> {
        http::Response::builder()
            .status(401)
            .header("www-authenticate", r#"DPoP error="use_dpop_nonce", algs="ES256""#)
            .header("dpop-nonce", nonce)
            .body("")
            .unwrap()
    }

    #[tokio::test]
    async fn an_exchanged_token_in_the_extensions_goes_instead_of_the_services_own() {
        let (cache, _) = warm_dpop_cache().await;
        let api = Scripted::default();
        let client = api.client(ClientCredentialsMiddleware::new(cache));
        let exchanged = crate::client::ExchangedToken::new(
            AccessToken::new("for-alice", std::time::Instant::now(), std::time::Duration::from_secs(60), None, 1, None)
                .unwrap(),
        );
        client.get("https://api.example/orders").with_extension(exchanged).send().await.unwrap();
        client.get("https://api.example/orders").send().await.unwrap();
        assert_eq!(api.authorizations(), ["Bearer for-alice", "DPoP dpop-1"]);
        assert_eq!(api.proofs.lock().unwrap()[0], None, "no proof for a bearer token");
    }

    #[tokio::test]
    async fn a_dpop_token_goes_with_a_fresh_proof_for_each_request() {
        let (cache, key) = warm_dpop_cache().await;
        let api = Scripted::default();
        let client = api.client(ClientCredentialsMiddleware::new(cache));
        client.get("https://api.example/orders?page=2#top").send().await.unwrap();
        client.post("https://api.example/orders").body("{}").send().await.unwrap();
        assert_eq!(api.authorizations(), ["DPoP dpop-1", "DPoP dpop-1"]);
        let proofs: Vec<String> = api.proofs.lock().unwrap().iter().map(|p| p.clone().unwrap()).collect();
        let (first, second) = (proof_claims(&proofs[0]), proof_claims(&proofs[1]));
        assert_eq!((first["htm"].as_str(), first["htu"].as_str()), (Some("GET"), Some("https://api.example/orders")));
        assert_eq!(second["htm"], "POST");
        assert_ne!(first["jti"], second["jti"], "a proof is never reused");
        assert!(first.get("nonce").is_none());
        // RFC 9449 §4.2: `ath` is the token's SHA-256.
        let ath = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"dpop-1"));
        assert_eq!(first["ath"], ath.as_str());
        // The proof verifies with the key the token is bound to.
        let jwk = crate::Jwk::from_json(key.public_jwk().as_bytes()).unwrap();
        let (input, signature) = proofs[0].rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(jwk.verify(crate::Algorithm::ES256, input.as_bytes(), &signature));
    }

    #[tokio::test]
    async fn use_dpop_nonce_is_retried_once_with_the_same_token_and_the_servers_nonce() {
        let (cache, _) = warm_dpop_cache().await;
        let api = Scripted::answering([use_dpop_nonce("n-1")]);
        let client = api.client(ClientCredentialsMiddleware::new(cache.clone()));
        let response = client.get("https://api.example/orders").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(api.authorizations(), ["DPoP dpop-1", "DPoP dpop-1"], "no new token for a nonce");
        let proofs: Vec<String> = api.proofs.lock().unwrap().iter().map(|p| p.clone().unwrap()).collect();
        assert!(proof_claims(&proofs[0]).get("nonce").is_none());
        assert_eq!(proof_claims(&proofs[1])["nonce"], "n-1");
        // The nonce is remembered for the next request to that server, and only that one.
        client.get("https://api.example/other").send().await.unwrap();
        client.get("https://elsewhere.example/").send().await.unwrap();
        let proofs: Vec<String> = api.proofs.lock().unwrap().iter().map(|p| p.clone().unwrap()).collect();
        assert_eq!(proof_claims(&proofs[2])["nonce"], "n-1");
        assert!(proof_claims(&proofs[3]).get("nonce").is_none());
        assert_eq!(cache.cached().unwrap().generation(), 1);
    }

    #[tokio::test]
    async fn a_second_use_dpop_nonce_is_the_answer() {
        let (cache, _) = warm_dpop_cache().await;
        let api = Scripted::answering([use_dpop_nonce("n-1"), use_dpop_nonce("n-2")]);
        let client = api.client(ClientCredentialsMiddleware::new(cache));
        let response = client.get("https://api.example/orders").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations().len(), 2);
    }

    #[tokio::test]
    async fn a_401_replays_the_request_and_its_body_once_with_a_new_token() {
        let cache = warm_cache().await;
        let api = Scripted::answering([status(401), status(401)]);
        let client = api.client(ClientCredentialsMiddleware::new(cache.clone()));
        let response = client.post("https://api.example/orders").body("{\"n\":1}").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a second 401 is the answer");
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"]);
        assert_eq!(api.seen.lock().unwrap()[1].1, b"{\"n\":1}");
    }

    #[tokio::test]
    async fn a_grpc_unauthenticated_is_not_replayed_but_the_cache_refreshes() {
        let cache = warm_cache().await;
        let unauthenticated = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "16")
            .body("")
            .unwrap();
        let api = Scripted::answering([unauthenticated]);
        let client = api.client(ClientCredentialsMiddleware::new(cache.clone()));
        let response = client.get("https://api.example/grpc.Service/Call").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16", "the answer stands");
        assert_eq!(api.authorizations(), ["Bearer token-1"]);
        until_generation(&cache, 2).await;
        client.get("https://api.example/grpc.Service/Call").send().await.unwrap();
        assert_eq!(api.authorizations(), ["Bearer token-1", "Bearer token-2"], "the next request has the new token");
    }

    #[tokio::test]
    async fn with_retries_off_a_401_is_the_answer_and_the_cache_refreshes() {
        let cache = warm_cache().await;
        let api = Scripted::answering([status(401)]);
        let client = api.client(ClientCredentialsMiddleware::new(cache.clone()).retry_on_unauthorized(false));
        let response = client.get("https://api.example/orders").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Bearer token-1"]);
        until_generation(&cache, 2).await;
    }

    #[tokio::test]
    async fn an_existing_authorization_header_is_never_overwritten() {
        let cache = warm_cache().await;
        let api = Scripted::answering([status(401)]);
        let client = api.client(ClientCredentialsMiddleware::new(cache.clone()));
        let response = client.get("https://api.example/orders").basic_auth("me", Some("pw")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(api.authorizations(), ["Basic bWU6cHc="]);
    }
}
