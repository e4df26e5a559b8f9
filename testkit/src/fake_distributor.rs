//! A fake distributor download portal on loopback, behaving like the real ones do on their
//! bad days: 5xx during maintenance, 401 for a stale password, 429 with Retry-After, a 200
//! HTML login page instead of the file, a slow trickle, conditional GET with ETag (304).
//!
//! Replies are scripted: queued replies are served in order, then the fallback forever.
//! Every request is recorded with its arrival time and headers.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted reply.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Deliver the body in pieces over this long (a slow or busy server).
    pub trickle: Option<Duration>,
    /// Honour If-None-Match against this ETag with a 304.
    pub etag: Option<String>,
}

impl Reply {
    /// A CSV file with an ETag derived from its content.
    pub fn csv(text: &str) -> Reply {
        let etag = format!(
            "\"{:x}\"",
            text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()
        );
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/csv; charset=utf-8".into())],
            body: text.as_bytes().to_vec(),
            trickle: None,
            etag: Some(etag),
        }
    }

    /// An error status with a short body, as servers send them.
    pub fn status(status: u16) -> Reply {
        let body = match status {
            401 => "Unauthorized".to_string(),
            500 => "<html><body><h1>500 Internal Server Error</h1></body></html>".to_string(),
            503 => "Service Unavailable - maintenance".to_string(),
            _ => format!("HTTP {status}"),
        };
        Reply {
            status,
            headers: vec![],
            body: body.into_bytes(),
            trickle: None,
            etag: None,
        }
    }

    /// The portal's answer to a failed login: 200 and a login form.
    pub fn login_page(content_type: &str) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: b"<!DOCTYPE html>\n<html><head><title>Partner Portal - Sign in</title></head>\
                    <body><form action=\"/login\"><input name=\"user\"></form></body></html>"
                .to_vec(),
            trickle: None,
            etag: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn trickle(mut self, over: Duration) -> Reply {
        self.trickle = Some(over);
        self
    }
}

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    fallback: Option<Reply>,
    seen: Vec<Seen>,
}

/// The running fake; stops with the test's runtime.
#[derive(Clone)]
pub struct FakeDistributor {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeDistributor {
    pub async fn start(fallback: Reply) -> FakeDistributor {
        let inner = Arc::new(Mutex::new(Inner {
            fallback: Some(fallback),
            ..Inner::default()
        }));
        let app = Router::new().fallback(serve).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDistributor { base, inner }
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Queues replies served before the fallback.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().unwrap().script.extend(replies);
    }

    /// Replaces the fallback reply.
    pub fn set_fallback(&self, reply: Reply) {
        self.inner.lock().unwrap().fallback = Some(reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().seen.len()
    }
}

async fn serve(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.seen.push(Seen {
            at: Instant::now(),
            path: req.uri().path().to_string(),
            headers: req.headers().clone(),
        });
        match inner.script.pop_front() {
            Some(r) => r,
            None => inner.fallback.clone().expect("fallback"),
        }
    };
    if let (Some(etag), Some(asked)) = (&reply.etag, req.headers().get("if-none-match"))
        && asked.as_bytes() == etag.as_bytes()
    {
        return Response::builder()
            .status(304)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap();
    }
    let mut builder = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (k, v) in &reply.headers {
        builder = builder.header(k, HeaderValue::from_str(v).unwrap());
    }
    if let Some(etag) = &reply.etag {
        builder = builder.header("etag", etag);
    }
    let body = match reply.trickle {
        None => Body::from(reply.body),
        Some(over) => {
            builder = builder.header("content-length", reply.body.len());
            let pieces = 10usize;
            let chunk = reply.body.len().div_ceil(pieces).max(1);
            let parts: Vec<bytes::Bytes> = reply
                .body
                .chunks(chunk)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            let pause = over / pieces as u32;
            let stream = futures::stream::iter(parts).then(move |p| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, std::io::Error>(p)
            });
            Body::from_stream(stream)
        }
    };
    builder.body(body).unwrap()
}

use futures::StreamExt;
