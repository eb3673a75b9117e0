//! A stand-in API server for controller tests without a cluster: a `kube::Client` whose
//! requests arrive at the test, which checks each one and answers it (in the style of
//! kube-rs controller-rs's `ApiServerVerifier`).

// Each test file uses its own part of the stand-in.
#![allow(dead_code)]

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

/// How long (tokio time, paused in these tests) a test waits for a request it expects, or
/// watches for one it does not.
pub const WAIT: Duration = Duration::from_secs(60);

/// The test's side of the client.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// One request as the API server would see it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub headers: http::HeaderMap,
    /// The query's `key=value` pairs, in order.
    pub query: Vec<(String, String)>,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Call {
    /// The value of one query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Content-Type header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Answer with `status` and a JSON body.
    pub fn respond(self, status: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .expect("a valid response");
        self.reply.send_response(response);
    }

    /// Answer with a Kubernetes `Status` failure (409 Conflict, 404 NotFound, …).
    pub fn fail(self, status: StatusCode, reason: &str) {
        let code = status.as_u16();
        self.respond(
            status,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("test: {reason}"),
                "reason": reason,
                "code": code,
            }),
        );
    }
}

/// A client for namespace "default" and the API server behind it.
pub fn pair() -> (kube::Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer { handle })
}

impl ApiServer {
    /// The next request; fails the test when none comes within [`WAIT`].
    pub async fn next(&mut self) -> Call {
        self.try_next().await.expect("a request within the wait")
    }

    /// The next request, or `None` when none comes within [`WAIT`] or the client is gone.
    pub async fn try_next(&mut self) -> Option<Call> {
        let (request, reply) = tokio::time::timeout(WAIT, self.handle.next_request())
            .await
            .ok()??;
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a readable request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON request body")
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect();
        Some(Call {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            query,
            body,
            reply,
        })
    }

    /// Fails the test if any request arrives within [`WAIT`] (time the runtime skips while
    /// idle, so timers such as resyncs run meanwhile).
    pub async fn expect_silence(&mut self) {
        if let Ok(Some((request, _))) = tokio::time::timeout(WAIT, self.handle.next_request()).await
        {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}
