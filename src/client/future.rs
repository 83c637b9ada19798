use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::TokenCache;

/// The error of [`ClientCredentials`](super::ClientCredentials): the inner service's
/// error, or a [`TokenError`](super::TokenError).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`ClientCredentials`](super::ClientCredentials).
    ///
    /// With a cached token, it polls the inner future in place: nothing is boxed. Only
    /// a cold cache (waiting for the first token) and a 401 retry take a boxed future.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner { #[pin] future: S::Future, attached: Option<Attached<S>> },
        Boxed { future: Boxed<S::Response> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn inner(future: S::Future, attached: Option<Attached<S>>) -> Self {
        ResponseFuture { state: State::Inner { future, attached } }
    }

    pub(crate) fn boxed(future: Boxed<S::Response>) -> Self {
        ResponseFuture { state: State::Boxed { future } }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Default + Send + 'static,
    ResBody: Send + 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future, attached } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    match attached.take() {
                        Some(attached) if is_rejection(&response) => match attached.on_rejection(&response) {
                            Some(replay) => this.state.set(State::Boxed { future: Box::pin(replay.run(response)) }),
                            None => return Poll::Ready(Ok(response)),
                        },
                        _ => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Inner { attached: Some(_), .. } => "inner, token attached",
            State::Inner { attached: None, .. } => "inner",
            State::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

/// A token was attached: which one, and what a retry needs if the request can be
/// replayed.
pub(crate) struct Attached<S> {
    pub(crate) cache: TokenCache,
    pub(crate) generation: u64,
    pub(crate) replay: Option<(S, http::request::Parts)>,
}

impl<S> Attached<S> {
    /// A 401 can be retried once; otherwise (or for a gRPC UNAUTHENTICATED) the cache
    /// is told, so the requests that follow get a new token.
    pub(crate) fn on_rejection<B, R>(self, response: &Response<R>) -> Option<Replay<S, B>> {
        match self.replay {
            Some((service, parts)) if response.status() == StatusCode::UNAUTHORIZED => {
                Some(Replay::new(service, parts, self.cache, self.generation))
            }
            _ => {
                self.cache.hint_rejected(self.generation);
                None
            }
        }
    }
}

/// Whether the API refused the token: HTTP 401, or a gRPC UNAUTHENTICATED (16) in the
/// headers of a trailers-only response.
pub(crate) fn is_rejection<R>(response: &Response<R>) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        || response.headers().get("grpc-status").is_some_and(|status| status.as_bytes() == b"16")
}

/// What a 401 retry needs: a clone of the service (made ready when needed), the request
/// head, and which token was rejected.
pub(crate) struct Replay<S, B> {
    service: S,
    parts: http::request::Parts,
    cache: TokenCache,
    generation: u64,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Replay<S, B> {
    pub(crate) fn new(service: S, parts: http::request::Parts, cache: TokenCache, generation: u64) -> Self {
        Replay { service, parts, cache, generation, _body: PhantomData }
    }

    /// One forced refresh (shared with every other request that saw the same token
    /// rejected) and one retry; the 401 stands when there is no new token.
    pub(crate) async fn run<ResBody>(mut self, rejected: Response<ResBody>) -> Result<Response<ResBody>, BoxError>
    where
        S: Service<Request<B>, Response = Response<ResBody>>,
        S::Error: Into<BoxError>,
        B: Default,
    {
        let token = match self.cache.force_refresh_generation(self.generation).await {
            Ok(token) => token,
            Err(error) => {
                tracing::debug!(%error, "the API answered 401; no new token to retry with");
                return Ok(rejected);
            }
        };
        drop(rejected);
        let mut request = Request::from_parts(self.parts, B::default());
        request.headers_mut().insert(AUTHORIZATION, token.header_value().clone());
        std::future::poll_fn(|cx| self.service.poll_ready(cx)).await.map_err(Into::into)?;
        self.service.call(request).await.map_err(Into::into)
    }
}
