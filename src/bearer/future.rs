use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::body::ResponseBody;

/// The slow path's future: one shared key refresh or an introspection, then the inner
/// call.
pub(crate) type Refreshing<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// The response future of [`BearerAuth`](super::BearerAuth).
    ///
    /// Nothing is boxed on the hot path: a request with a valid token polls the inner
    /// future in place, and a rejected one is ready at once. Only a token whose `kid`
    /// needs a key refresh, or that is to be introspected, takes a boxed future.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        state: State<F, B, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B, E> {
        Inner { #[pin] future: F, nonce: Option<HeaderValue> },
        Rejected { response: Option<Response<ResponseBody<B>>> },
        Refreshing { future: Refreshing<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    /// The inner service's answer, with the DPoP server nonce to send, if any.
    pub(crate) fn inner(future: F, nonce: Option<HeaderValue>) -> Self {
        ResponseFuture { state: State::Inner { future, nonce } }
    }

    pub(crate) fn rejected(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture { state: State::Rejected { response: Some(response) } }
    }

    pub(crate) fn refreshing(future: Refreshing<B, E>) -> Self {
        ResponseFuture { state: State::Refreshing { future } }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, nonce } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(nonce) = nonce.take() {
                    response.headers_mut().insert(super::extract::DPOP_NONCE, nonce);
                }
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            StateProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion")))
            }
            StateProj::Refreshing { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, B, E> std::fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Inner { .. } => "inner",
            State::Rejected { .. } => "rejected",
            State::Refreshing { .. } => "refreshing",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}
