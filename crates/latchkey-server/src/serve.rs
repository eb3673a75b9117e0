//! Accepting connections: TLS handshake, HTTP/1.1 and HTTP/2, connection bounds (overall and
//! per source), timeouts from the first byte to the last byte written, idle close and
//! graceful drain.
//!
//! Every connection holds a slot until it ends, so every way a peer can stall (sending
//! nothing, sending half a head, never reading its response, never opening HTTP/2 flow-control
//! windows) has a timeout that ends the connection and gives the slot back.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::{
    body::{Frame, Incoming, SizeHint},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tokio_rustls::TlsAcceptor;

use crate::{
    response::{self, Body},
    sources::{Peer, SourceGuard, Sources},
};

/// Connection limits and timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Connections one source (an IPv4 address, an IPv6 /64) may hold at once; 0: no limit
    /// (behind a proxy every connection comes from the proxy).
    pub max_connections_per_source: usize,
    pub tls_handshake_timeout: Duration,
    /// Time from the connection's start (after TLS) to its first complete request head, and
    /// for every later HTTP/1.1 head from its first byte.
    pub header_read_timeout: Duration,
    /// A response (or any write) that makes no progress for this long closes the connection;
    /// also the grace a closing connection gets to finish.
    pub write_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Requests handled at once over all connections (HTTP/2 streams whose body has not
    /// arrived included): bounds the memory held by requests. More are answered 503 at once;
    /// with a per-source connection limit, one source may hold a quarter of them. Split
    /// evenly over a listener's shards ([`serve_shard`]).
    pub max_pending_requests: usize,
    /// HTTP/2 streams one connection may have open.
    pub max_concurrent_streams: u32,
    /// HTTP/2 streams all connections together may have open: each connection that may speak
    /// HTTP/2 (h2 by ALPN, or plain HTTP) reserves its streams from this budget when it starts
    /// (fewer when little is left, at least one; HTTP/1.1 over TLS takes one), so
    /// the memory streams hold (a few KiB each until the peer ends them) has a bound however
    /// many connections there are.
    pub max_open_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_connections_per_source: 256,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(25),
            max_header_bytes: 16 * 1024,
            max_pending_requests: 4096,
            max_concurrent_streams: 32,
            max_open_streams: 8192,
        }
    }
}

/// Something that answers requests.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;
}

impl Handler for crate::App {
    fn call(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send {
        self.handle(req)
    }
}

/// Milliseconds since the connection started; 0 means "never" in the fields that use it, so
/// stored values are offset by one.
fn stamp(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64 + 1
}

/// What the connection's watchdog looks at.
struct Activity {
    started: Instant,
    /// Requests whose handler runs.
    in_flight: AtomicUsize,
    /// Responses handed to the connection and not yet fully taken by it.
    undrained: AtomicUsize,
    /// Requests seen on this connection.
    requests: AtomicU64,
    /// Last time a request started or ended.
    last_ms: AtomicU64,
    /// Last time a response body made progress.
    drained_ms: AtomicU64,
    /// Since when a socket write has been waiting (0: none waiting).
    write_blocked_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            undrained: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            drained_ms: AtomicU64::new(0),
            write_blocked_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        stamp(self.started)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn elapsed_since(&self, ms: u64) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(ms))
    }

    /// Why the connection must end now, if it must.
    fn verdict(&self, limits: &Limits) -> Verdict {
        let blocked = self.write_blocked_ms.load(Ordering::Relaxed);
        if blocked != 0 && self.elapsed_since(blocked) >= limits.write_timeout {
            return Verdict::Close("a write made no progress in time");
        }
        if self.undrained.load(Ordering::Acquire) > 0
            && self.elapsed_since(self.drained_ms.load(Ordering::Relaxed)) >= limits.write_timeout
        {
            return Verdict::Close("a response was not taken in time");
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            if self.started.elapsed() >= limits.header_read_timeout {
                return Verdict::Close("no request head in time");
            }
            return Verdict::Keep;
        }
        let busy = self.in_flight.load(Ordering::Acquire) > 0
            || self.undrained.load(Ordering::Acquire) > 0;
        if !busy && self.elapsed_since(self.last_ms.load(Ordering::Relaxed)) >= limits.idle_timeout
        {
            return Verdict::Idle;
        }
        Verdict::Keep
    }
}

enum Verdict {
    Keep,
    Idle,
    Close(&'static str),
}

/// Ends the handler's share of the activity even when a request future is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that tells the watchdog when it moves and when it is fully taken.
pub struct Tracked {
    inner: Body,
    activity: Option<Arc<Activity>>,
}

impl Tracked {
    fn new(inner: Body, activity: Arc<Activity>) -> Tracked {
        activity.undrained.fetch_add(1, Ordering::AcqRel);
        activity
            .drained_ms
            .store(activity.now_ms(), Ordering::Relaxed);
        Tracked {
            inner,
            activity: Some(activity),
        }
    }

    fn finish(&mut self) {
        if let Some(a) = self.activity.take() {
            a.touch();
            a.undrained.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                if let Some(a) = &this.activity {
                    a.drained_ms.store(a.now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that records since when a write has been waiting on the peer.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    fn note<T>(&self, polled: &Poll<std::io::Result<T>>) {
        match polled {
            Poll::Pending => {
                let _ = self.activity.write_blocked_ms.compare_exchange(
                    0,
                    self.activity.now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => self.activity.write_blocked_ms.store(0, Ordering::Relaxed),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What every shard of one listener shares: the bounds on its connections. A connection
/// takes from these once, when it starts; requests never touch them.
#[derive(Debug)]
pub struct Bounds {
    slots: Arc<Semaphore>,
    /// The HTTP/2 stream budget.
    streams: Arc<Semaphore>,
    sources: Sources,
}

impl Bounds {
    pub fn new(limits: &Limits) -> Arc<Bounds> {
        Arc::new(Bounds {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            streams: Arc::new(Semaphore::new(limits.max_open_streams.max(1))),
            sources: Sources::new(limits.max_connections_per_source),
        })
    }
}

/// What a connection shares with its shard: the per-request bounds are per shard, so no
/// request writes a line another serving core writes.
struct Shared<H> {
    handler: Arc<H>,
    limits: Limits,
    /// Requests in progress in this shard (its share of `max_pending_requests`).
    pending: Arc<Semaphore>,
    /// Requests in progress per source in this shard: a quarter of `pending` each, so one
    /// source cannot take every request place either.
    pending_by_source: Sources,
    bounds: Arc<Bounds>,
    /// Turns true when the listener stops; each connection watches a clone.
    shutdown: watch::Receiver<bool>,
}

/// Serve `listener` until `shutdown` turns true, then stop accepting, let in-flight requests
/// finish (bounded by the drain timeout) and return.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let bounds = Bounds::new(&limits);
    serve_shard(listener, tls, handler, limits, bounds, 1, shutdown).await;
}

/// One of `shards` listeners (sockets bound to one address with `SO_REUSEPORT`, each served
/// by its own thread) that share `bounds`: [`serve`] for this shard's connections. Each shard
/// takes `1/shards` of `max_pending_requests`, and drains only its own connections.
pub async fn serve_shard<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    limits: Limits,
    bounds: Arc<Bounds>,
    shards: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let pending = limits.max_pending_requests.max(1).div_ceil(shards.max(1));
    // This shard's own connections, so its drain waits for them alone.
    let live = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared {
        handler,
        pending: Arc::new(Semaphore::new(pending)),
        pending_by_source: Sources::new(if limits.max_connections_per_source == 0 {
            0
        } else {
            per_source_pending(pending, &limits)
        }),
        bounds,
        limits: limits.clone(),
        shutdown: shutdown.clone(),
    });
    loop {
        if *shutdown.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = shared.bounds.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let Ok(mine) = live.clone().try_acquire_owned() else {
            break; // never: a shard holds no more connections than all shards together
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(source) = shared.bounds.sources.admit(peer.ip()) else {
            // Over its share: closed at once, the slot stays free for others.
            tracing::debug!(%peer, "connection refused: too many from this source");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(accepted(
            stream,
            peer,
            tls.clone(),
            shared.clone(),
            (permit, mine, source),
        ));
    }
    drop(listener);
    // Every connection of this shard holds one of `live`: all back means all are done.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, live.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached with connections still open");
    }
}

/// Requests one source may have in progress in a shard with `pending` places: a quarter of
/// them, but never fewer than one connection's HTTP/2 streams, so that with many shards (and
/// small shares) one multiplexed connection is still never refused by this rule alone.
fn per_source_pending(pending: usize, limits: &Limits) -> usize {
    (pending / 4)
        .max(limits.max_concurrent_streams as usize)
        .min(pending)
        .max(1)
}

async fn accepted<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared<H>>,
    held: (OwnedSemaphorePermit, OwnedSemaphorePermit, SourceGuard),
) {
    let _held = held;
    let activity = Arc::new(Activity::new());
    let stream = Watched {
        inner: stream,
        activity: activity.clone(),
    };
    match tls {
        // Plain HTTP may be HTTP/2 with prior knowledge: it reserves streams.
        None => connection(stream, peer, activity, &shared, true).await,
        Some(acceptor) => {
            match tokio::time::timeout(shared.limits.tls_handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(s)) => {
                    // Over TLS, only a connection that chose h2 by ALPN reserves streams.
                    let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    connection(s, peer, activity, &shared, h2).await
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// RFC 9112 §3.2 Host rules hyper leaves to the application: an HTTP/1.1 request without
/// exactly one Host (or an HTTP/1.0 one with several) is answered 400 and its connection
/// closed. (Framing is hyper's: a request with both Transfer-Encoding and Content-Length is
/// read by Transfer-Encoding alone, Content-Length dropped, and the connection closed after the
/// answer, as RFC 9112 §6.3 requires; a body can never be read two ways.)
pub fn strict_http1<B>(req: &Request<B>) -> Option<Response<Body>> {
    let v = req.version();
    if v != Version::HTTP_11 && v != Version::HTTP_10 {
        return None;
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    let reason = if hosts > 1 {
        "bad request: more than one Host header\n"
    } else if hosts == 0 && v == Version::HTTP_11 {
        "bad request: no Host header\n"
    } else {
        return None;
    };
    let mut res = response::text(StatusCode::BAD_REQUEST, reason);
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(res)
}

fn overloaded() -> Response<Body> {
    let mut res = response::text(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many requests in progress\n",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

async fn connection<I, H>(
    io: I,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: &Arc<Shared<H>>,
    h2_likely: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut shutdown = shared.shutdown.clone();
    let limits = &shared.limits;
    let tracker = activity.clone();
    let state = shared.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        tracker.requests.fetch_add(1, Ordering::Relaxed);
        tracker.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(tracker.clone());
        let state = state.clone();
        let tracker = tracker.clone();
        async move {
            let res = match strict_http1(&req) {
                Some(res) => res,
                None => match (
                    state.pending_by_source.admit(peer.ip()),
                    state.pending.clone().try_acquire_owned(),
                ) {
                    (Some(share), Ok(permit)) => {
                        req.extensions_mut().insert(Peer(peer));
                        let res = state.handler.call(req).await;
                        drop((share, permit));
                        res
                    }
                    _ => overloaded(),
                },
            };
            drop(guard);
            Ok::<_, Infallible>(res.map(|b| Tracked::new(b, tracker)))
        }
    });
    // This connection's share of the stream budget, held until it ends.
    let want = if h2_likely {
        shared
            .bounds
            .streams
            .available_permits()
            .min(limits.max_concurrent_streams as usize)
            .max(1)
    } else {
        1
    };
    let reserved = shared
        .bounds
        .streams
        .clone()
        .try_acquire_many_owned(want as u32)
        .ok();
    let streams = if reserved.is_some() { want as u32 } else { 1 };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let _reserved = reserved;
    let shortest = limits
        .idle_timeout
        .min(limits.write_timeout)
        .min(limits.header_read_timeout);
    let check_every = (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut closing: Option<Instant> = None;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = tokio::time::sleep(check_every) => {
                match activity.verdict(limits) {
                    Verdict::Close(why) => {
                        tracing::debug!(%peer, why, "connection closed");
                        return;
                    }
                    Verdict::Idle if closing.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    _ => {}
                }
                // A graceful close waits for the peer: it gets one write timeout (the drain
                // timeout on shutdown), then the connection is dropped.
                let grace = if *shutdown.borrow() {
                    limits.drain_timeout
                } else {
                    limits.write_timeout
                };
                if closing.is_some_and(|t| t.elapsed() >= grace) {
                    tracing::debug!(%peer, "connection closed: graceful close took too long");
                    return;
                }
            }
        }
    }
}

/// Compile-time check that the watched socket can carry TLS.
#[allow(dead_code)]
fn _assert_io(s: Watched<TcpStream>) -> impl AsyncRead + AsyncWrite + Unpin + Send {
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/oauth2/token");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn a_source_gets_a_quarter_of_a_shard_and_at_least_one_connections_streams() {
        let limits = Limits::default(); // 4096 pending, 32 streams per connection
        assert_eq!(per_source_pending(4096, &limits), 1024); // one shard
        assert_eq!(per_source_pending(4096usize.div_ceil(64), &limits), 32); // 64 shards
        assert_eq!(per_source_pending(8, &limits), 8); // never more than the shard has
        assert_eq!(per_source_pending(1, &limits), 1);
    }

    #[test]
    fn http1_framing_and_host_rules() {
        let ok = req(Version::HTTP_11, &[("host", "a")]);
        assert!(strict_http1(&ok).is_none());
        let res = strict_http1(&req(Version::HTTP_11, &[]))
            .map(|r| (r.status(), r.headers().get("connection").cloned()));
        assert_eq!(
            res,
            Some((
                StatusCode::BAD_REQUEST,
                Some(HeaderValue::from_static("close"))
            ))
        );
        assert!(strict_http1(&req(Version::HTTP_11, &[])).is_some());
        assert!(strict_http1(&req(Version::HTTP_11, &[("host", "a"), ("host", "b")])).is_some());
        // HTTP/1.0 may omit Host; HTTP/2 carries :authority instead.
        assert!(strict_http1(&req(Version::HTTP_10, &[])).is_none());
        assert!(strict_http1(&req(Version::HTTP_2, &[])).is_none());
    }

    #[test]
    fn a_connection_without_a_request_closes_after_the_header_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::ZERO,
            ..Limits::default()
        };
        let a = Activity::new();
        assert!(matches!(a.verdict(&limits), Verdict::Close(_)));
        a.requests.store(1, Ordering::Relaxed);
        a.touch();
        assert!(matches!(a.verdict(&limits), Verdict::Keep));
    }

    #[test]
    fn a_stalled_write_or_response_closes_after_the_write_timeout() {
        let limits = Limits {
            write_timeout: Duration::ZERO,
            ..Limits::default()
        };
        let a = Activity::new();
        a.requests.store(1, Ordering::Relaxed);
        a.touch();
        assert!(matches!(a.verdict(&limits), Verdict::Keep));
        a.write_blocked_ms.store(1, Ordering::Relaxed);
        assert!(matches!(a.verdict(&limits), Verdict::Close(_)));
        a.write_blocked_ms.store(0, Ordering::Relaxed);
        a.undrained.store(1, Ordering::Relaxed);
        assert!(matches!(a.verdict(&limits), Verdict::Close(_)));
    }
}
