//! The load generator and TLS measurements `tests/bench/bench.sh` drives (not a test).
//!
//! - `rate ADDR RPS SECONDS CONNECTIONS REQUEST [CA]`: an open-loop load at a fixed rate over
//!   keep-alive connections (TLS when a CA file is given); each request's latency counts from
//!   the moment it was due, not from when a connection was free, so queueing shows (no
//!   coordinated omission). Prints achieved rate, errors and latency percentiles.
//! - `handshakes ADDR SECONDS CONCURRENCY full|resumed CA`: a new TLS connection per request
//!   (GET of the metadata, `Connection: close`), resuming with the last ticket or never.
//! - `rustls SECONDS`: rustls's own server-side cost of a full and of a resumed TLS 1.3
//!   handshake, in memory on this thread, with a certificate like Latchkey's self-signed one
//!   (ECDSA P-256): the floor a handshake over the network is compared with.
//!
//! - `sign-in ADDR SECONDS CONCURRENCY logins|refreshes|guesses CA`: people signing in
//!   (`loadgen/sign_in.rs`).
//!
//! REQUEST is `token` (the APK seed request) or `get` (the RFC 8414 metadata). Output lines are
//! `name=value`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[path = "loadgen/sign_in.rs"]
mod sign_in;

use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
    pki_types::ServerName,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

const BASIC: &str = "NDVmMWM1YzgtYTkyZS0xMWVkLWFmYTEtMDI0MmFjMTIwMDAyOjRmYmQ2MmVjLWE5MmUtMTFlZC1hZmExLTAyNDJhYzEyMDAwMg==";

fn request(kind: &str, close: bool) -> Vec<u8> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    match kind {
        "token" => format!(
            "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {BASIC}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n{conn}\r\n\
             grant_type=client_credentials"
        )
        .into_bytes(),
        _ => format!(
            "GET /.well-known/oauth-authorization-server/token HTTP/1.1\r\nHost: localhost\r\n{conn}\r\n"
        )
        .into_bytes(),
    }
}

fn client_config(ca: &str) -> Arc<ClientConfig> {
    let pem = std::fs::read(ca).expect("CA file");
    let mut roots = RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.expect("CA PEM")).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Read one HTTP/1.1 response (headers and a Content-Length body); its status.
async fn read_response(io: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let status = head.get(9..12)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = io.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> Box<dyn Io> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    match tls {
        None => Box::new(tcp),
        Some(cfg) => {
            let name = ServerName::try_from("localhost").unwrap();
            let s = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            Box::new(s)
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

async fn rate(
    addr: SocketAddr,
    rps: f64,
    seconds: f64,
    connections: usize,
    kind: &str,
    ca: Option<&str>,
) {
    let tls = ca.map(client_config);
    let total = (rps * seconds) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let req = Arc::new(request(kind, false));
    let mut conns = Vec::new();
    for _ in 0..connections {
        conns.push(connect(addr, tls.as_ref()).await);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let interval = Duration::from_secs_f64(1.0 / rps);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut io| {
            let (next, errors, req) = (next.clone(), errors.clone(), req.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut buf = Vec::with_capacity(8192);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return lat;
                    }
                    let due = start + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due).await;
                    if io.write_all(&req).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return lat;
                    }
                    match read_response(&mut io, &mut buf).await {
                        Some(200) => lat.push(due.elapsed().as_micros() as u64),
                        Some(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return lat;
                        }
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total as usize);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!("target_rps={rps:.0}");
    println!("achieved_rps={:.0}", all.len() as f64 / elapsed);
    println!("errors={}", errors.load(Ordering::Relaxed));
    println!("p50_ms={:.3}", percentile(&all, 0.50));
    println!("p99_ms={:.3}", percentile(&all, 0.99));
    println!("p999_ms={:.3}", percentile(&all, 0.999));
}

async fn handshakes(addr: SocketAddr, seconds: f64, concurrency: usize, resume: bool, ca: &str) {
    let cfg = client_config(ca);
    let cfg = if resume {
        cfg
    } else {
        let mut c = (*cfg).clone();
        c.resumption = rustls::client::Resumption::disabled();
        Arc::new(c)
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let req = Arc::new(request("get", true));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (cfg, done, resumed, failed, req) = (
                cfg.clone(),
                done.clone(),
                resumed.clone(),
                failed.clone(),
                req.clone(),
            );
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let tcp = TcpStream::connect(addr).await.expect("connect");
                    tcp.set_nodelay(true).unwrap();
                    let name = ServerName::try_from("localhost").unwrap();
                    let Ok(mut s) = tokio_rustls::TlsConnector::from(cfg.clone())
                        .connect(name, tcp)
                        .await
                    else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                        resumed.fetch_add(1, Ordering::Relaxed);
                    }
                    let ok = s.write_all(&req).await.is_ok()
                        && read_response(&mut s, &mut buf).await == Some(200);
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = s.shutdown().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!("connections={n}");
    println!("connections_per_second={:.0}", n as f64 / elapsed);
    println!("resumed={}", resumed.load(Ordering::Relaxed));
    println!("failed={}", failed.load(Ordering::Relaxed));
}

/// Move TLS records between the two ends until neither has anything to send; the time spent
/// in the server's calls is added to `server`.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection, server_time: &mut Duration) {
    let mut wire = Vec::new();
    loop {
        let mut moved = false;
        while client.wants_write() {
            wire.clear();
            client.write_tls(&mut wire).unwrap();
            let t = Instant::now();
            let mut rd = &wire[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets().unwrap();
            *server_time += t.elapsed();
            moved = true;
        }
        while server.wants_write() {
            wire.clear();
            let t = Instant::now();
            server.write_tls(&mut wire).unwrap();
            *server_time += t.elapsed();
            let mut rd = &wire[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn rustls_cost(seconds: f64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key_der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut server_cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
    server_cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().unwrap();
    let server_cfg = Arc::new(server_cfg);
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_base = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    for resume in [false, true] {
        let mut c = client_base.clone();
        if !resume {
            c.resumption = rustls::client::Resumption::disabled();
        }
        let c = Arc::new(c);
        let mut server_time = Duration::ZERO;
        let mut n = 0u64;
        let mut resumed = 0u64;
        let budget = Duration::from_secs_f64(seconds);
        while server_time < budget {
            let name = ServerName::try_from("localhost").unwrap();
            let mut client = ClientConnection::new(c.clone(), name).unwrap();
            let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
            pump(&mut client, &mut server, &mut server_time);
            // Application data both ways, so the client has the tickets for the next one.
            client.writer().write_all(b"x").unwrap();
            pump(&mut client, &mut server, &mut server_time);
            let mut b = [0u8; 1];
            let _ = server.reader().read(&mut b);
            if server.handshake_kind() == Some(HandshakeKind::Resumed) {
                resumed += 1;
            }
            n += 1;
        }
        let kind = if resume { "resumed" } else { "full" };
        println!(
            "rustls_{kind}_handshakes_per_cpu_second={:.0}",
            n as f64 / server_time.as_secs_f64()
        );
        if resume {
            println!("rustls_resumed_fraction={:.3}", resumed as f64 / n as f64);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("rate") => {
            let addr = args[1].parse().unwrap();
            let rps = args[2].parse().unwrap();
            let seconds = args[3].parse().unwrap();
            let conns = args[4].parse().unwrap();
            rt.block_on(rate(
                addr,
                rps,
                seconds,
                conns,
                &args[5],
                args.get(6).map(String::as_str),
            ));
        }
        Some("handshakes") => {
            let addr = args[1].parse().unwrap();
            let seconds = args[2].parse().unwrap();
            let conc = args[3].parse().unwrap();
            rt.block_on(handshakes(
                addr,
                seconds,
                conc,
                args[4] == "resumed",
                &args[5],
            ));
        }
        Some("sign-in") => {
            let addr = args[1].parse().unwrap();
            let seconds = args[2].parse().unwrap();
            let conc = args[3].parse().unwrap();
            rt.block_on(sign_in::run(addr, seconds, conc, &args[4], &args[5]));
        }
        Some("rustls") => rustls_cost(args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0)),
        _ => {
            // `cargo bench` without arguments: nothing to drive.
            println!("usage: loadgen rate|handshakes|sign-in|rustls …");
        }
    }
}
