use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::retry::{Attempt, Replay, Retry, set_token};

/// The error of [`ClientCredentials`](super::ClientCredentials), as Tower middleware
/// usually spells it: the inner service's error, or a [`TokenError`](super::TokenError).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BoxedResponse<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`ClientCredentials`](super::ClientCredentials).
    ///
    /// With a cached token, it polls the inner future in place: nothing is boxed. Only
    /// a cold cache (waiting for the first token) and a 401 retry take a boxed future.
    pub struct ClientCredentialsFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        stage: Stage<S, B>,
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<S, B>
    where
        S: Service<Request<B>>,
    {
        // The request is with the inner service; `attempt` is set when it carries a token.
        Sent { #[pin] future: S::Future, attempt: Option<Attempt<Resend<S, B>>> },
        // Waiting for the first token, or retrying after a 401.
        Boxed { future: BoxedResponse<S::Response> },
    }
}

impl<S, B> ClientCredentialsFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn sent(future: S::Future, attempt: Option<Attempt<Resend<S, B>>>) -> Self {
        ClientCredentialsFuture { stage: Stage::Sent { future, attempt } }
    }

    pub(crate) fn boxed(future: BoxedResponse<S::Response>) -> Self {
        ClientCredentialsFuture { stage: Stage::Boxed { future } }
    }
}

impl<S, B, ResBody> Future for ClientCredentialsFuture<S, B>
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
            match this.stage.as_mut().project() {
                StageProj::Sent { future, attempt } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    match attempt.take().and_then(|attempt| attempt.judge(response.status(), response.headers())) {
                        Some(retry) => this.stage.set(Stage::Boxed { future: Box::pin(resend(retry, response)) }),
                        None => return Poll::Ready(Ok(response)),
                    }
                }
                StageProj::Boxed { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

impl<S, B> fmt::Debug for ClientCredentialsFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the request: its headers may hold secrets.
        let stage = match &self.stage {
            Stage::Sent { attempt: Some(_), .. } => "inner, token attached",
            Stage::Sent { attempt: None, .. } => "inner",
            Stage::Boxed { .. } => "boxed",
        };
        f.debug_struct("ClientCredentialsFuture").field("state", &stage).finish()
    }
}

/// What the Tower layer keeps to send a request once more: a clone of the service
/// (made ready when needed) and the request head. The body is empty, so `B::default()`
/// rebuilds it.
pub(crate) struct Resend<S, B> {
    service: S,
    head: http::request::Parts,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> Resend<S, B> {
    #[inline]
    pub(crate) fn new(service: S, head: http::request::Parts) -> Self {
        Resend { service, head, _body: PhantomData }
    }
}

impl<S, B: Default> Replay for Resend<S, B> {
    type Request = (S, Request<B>);

    fn authorize(self, authorization: HeaderValue) -> (S, Request<B>) {
        let mut request = Request::from_parts(self.head, B::default());
        set_token(request.headers_mut(), authorization);
        (self.service, request)
    }
}

/// The one retry after a 401: the request again with a new token, or the 401 when
/// there is none.
pub(crate) async fn resend<S, B, ResBody>(
    retry: Retry<Resend<S, B>>,
    rejected: Response<ResBody>,
) -> Result<Response<ResBody>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    let Some((mut service, request)) = retry.authorize().await else {
        return Ok(rejected);
    };
    drop(rejected);
    std::future::poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
    service.call(request).await.map_err(Into::into)
}
