//! Shared by the `client*` tests: a hand-made HTTP/1.1 server on 127.0.0.1 that records
//! every request and answers with whatever the test programs, and an API that checks
//! tokens with a real `Validator`.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Canned {
    pub fn json(status: u16, body: impl Into<String>) -> Canned {
        Canned { status, headers: vec![("content-type", "application/json".into())], body: body.into() }
    }

    pub fn status(status: u16) -> Canned {
        Canned { status, headers: Vec::new(), body: String::new() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Canned {
        self.headers.push((name, value.into()));
        self
    }
}

/// A server that answers each request with the next queued answer, or the default.
#[derive(Clone)]
pub struct Server {
    pub url: String,
    state: Arc<Mutex<State>>,
}

struct State {
    seen: Vec<Seen>,
    queue: VecDeque<Canned>,
    default: Canned,
}

impl Server {
    pub async fn start(default: Canned) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { seen: Vec::new(), queue: VecDeque::new(), default }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), request));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Server { url, state }
    }

    pub fn set_default(&self, canned: Canned) {
        self.state.lock().unwrap().default = canned;
    }

    pub fn push(&self, canned: Canned) {
        self.state.lock().unwrap().queue.push_back(canned);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    request: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let canned = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen { method: parts.method, path: parts.uri.path().to_owned(), headers: parts.headers, body });
        state.queue.pop_front().unwrap_or_else(|| state.default.clone())
    };
    let mut response = Response::new(Full::new(Bytes::from(canned.body)));
    *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
    for (name, value) in canned.headers {
        response.headers_mut().append(name, value.parse().unwrap());
    }
    Ok(response)
}
