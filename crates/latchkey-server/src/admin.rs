//! The admin listener (plain HTTP, loopback by default): liveness, readiness and metrics.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::{
    Metrics,
    response::{self, Body},
    serve::Handler,
};

/// Answers `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    /// True once the first state is loaded (standalone: files read; operator: lists synced).
    pub ready: Arc<AtomicBool>,
}

impl Admin {
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Body> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return response::method_not_allowed("GET, HEAD");
        }
        match req.uri().path() {
            "/healthz" | "/livez" => response::text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.ready.load(Ordering::Acquire) {
                    response::text(StatusCode::OK, "ready\n")
                } else {
                    response::text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }
            "/metrics" => {
                let mut res = Response::new(Body::from(self.metrics.encode()));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                res
            }
            _ => response::not_found(),
        }
    }
}

impl Handler for Admin {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        self.respond(&req)
    }
}
