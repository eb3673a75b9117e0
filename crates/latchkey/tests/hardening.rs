//! Hardening (issue #10) against the real binary on loopback: slots come back from slow
//! readers and idle floods, one source cannot take every slot, the admin listener answers under
//! a token-listener flood and under load, HTTP/2 streams without bodies stay within a memory
//! cap, a paused log reader never stops serving, HTTP/1 framing is strict, and secret guessing
//! is throttled while the real client keeps getting tokens.
//!
//! Attackers connect from 127.0.0.2 and up (still loopback), the legitimate client from
//! 127.0.0.1, so per-source rules can tell them apart. Floods run on the plaintext listener
//! (the timeouts sit below TLS, on the socket). Every test is bounded in time and count; the
//! figures printed (latency, RSS, guess rates) are not asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use common::{FORM, SEED_AUTH, Server, basic, post_token};
use socket2::{Domain, Socket, Type};

fn attacker(n: u8) -> [u8; 4] {
    [127, 0, 0, n]
}

/// A TCP connection from `from` (a loopback address), with a small receive buffer when asked.
fn connect_from(
    from: [u8; 4],
    to: SocketAddr,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(s.into())
}

fn seed_request() -> Vec<u8> {
    post_token(
        &[("Authorization", SEED_AUTH), FORM],
        "grant_type=client_credentials",
    )
}

/// Read one HTTP/1.1 response's status and skip its body; `None` if the connection ends or
/// stalls first.
fn read_status(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return Some(status);
        }
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One seed token request on a fresh connection from 127.0.0.1: its status and how long the
/// whole exchange took, or why it failed within `timeout`.
fn legit_token(addr: SocketAddr, timeout: Duration) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(&seed_request()).map_err(|e| e.to_string())?;
    let status = read_status(&mut s, &mut Vec::new()).ok_or("no response in time")?;
    Ok((status, started.elapsed()))
}

/// The legitimate client asks for a token every `every` while `busy` holds; every answer.
fn legit_while(
    addr: SocketAddr,
    busy: &AtomicBool,
    every: Duration,
    timeout: Duration,
) -> Vec<Result<(u16, Duration), String>> {
    let mut out = Vec::new();
    while busy.load(Ordering::Relaxed) {
        out.push(legit_token(addr, timeout));
        thread::sleep(every);
    }
    out
}

/// Assert every legitimate request got a token; print p50/p99.
fn all_served(what: &str, results: &[Result<(u16, Duration), String>]) {
    assert!(
        !results.is_empty(),
        "{what}: no legitimate request was made"
    );
    let mut lat: Vec<Duration> = Vec::new();
    for r in results {
        match r {
            Ok((200, d)) => lat.push(*d),
            other => panic!("{what}: a legitimate request failed: {other:?} (of {results:?})"),
        }
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
    println!(
        "figure: {what}: legitimate {}/{} ok, p50 {:?}, p99 {:?}",
        lat.len(),
        results.len(),
        p(0.5),
        p(0.99)
    );
}

/// Run `attack` on a thread for `dur` while the legitimate client asks for tokens.
fn under_attack(
    what: &str,
    addr: SocketAddr,
    dur: Duration,
    legit_timeout: Duration,
    attack: impl FnOnce(&AtomicBool) + Send + 'static,
) {
    let busy = Arc::new(AtomicBool::new(true));
    let b = busy.clone();
    let attacker = thread::spawn(move || attack(&b));
    // Let the flood take hold first.
    thread::sleep(Duration::from_millis(500));
    let stop = busy.clone();
    let timer = thread::spawn(move || {
        thread::sleep(dur);
        stop.store(false, Ordering::Relaxed);
    });
    let results = legit_while(addr, &busy, Duration::from_millis(250), legit_timeout);
    let _ = timer.join();
    let _ = attacker.join();
    all_served(what, &results);
}

// --- HTTP/2 by hand: enough to open streams and stall them. ---

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_len(prefix: u8, bits: u8, mut n: usize, out: &mut Vec<u8>) {
    let max = (1usize << bits) - 1;
    if n < max {
        out.push(prefix | n as u8);
        return;
    }
    out.push(prefix | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A literal header field without indexing, its name from the static table (`idx`) or given.
fn hpack_literal(name: Result<usize, &str>, value: &str, out: &mut Vec<u8>) {
    match name {
        Ok(idx) => hpack_len(0x00, 4, idx, out),
        Err(n) => {
            out.push(0x00);
            hpack_len(0x00, 7, n.len(), out);
            out.extend_from_slice(n.as_bytes());
        }
    }
    hpack_len(0x00, 7, value.len(), out);
    out.extend_from_slice(value.as_bytes());
}

/// Preface and SETTINGS (`initial_window`: the flow-control window we grant the server).
fn h2_start(initial_window: u32) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    let mut settings = vec![0x00, 0x04];
    settings.extend_from_slice(&initial_window.to_be_bytes());
    out.extend(h2_frame(0x4, 0, 0, &settings));
    out
}

/// HEADERS of `GET path`, ending the stream.
fn h2_get(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86];
    hpack_literal(Ok(4), path, &mut block);
    hpack_literal(Ok(1), "localhost", &mut block);
    h2_frame(0x1, 0x4 | 0x1, stream, &block)
}

/// HEADERS of a token POST whose body never comes, padded with `pad` bytes of header.
fn h2_post_without_body(stream: u32, pad: usize) -> Vec<u8> {
    let mut block = vec![0x83, 0x86];
    hpack_literal(Ok(4), "/oauth2/token", &mut block);
    hpack_literal(Ok(1), "localhost", &mut block);
    hpack_literal(Ok(31), "application/x-www-form-urlencoded", &mut block);
    hpack_literal(Ok(28), "100", &mut block);
    hpack_literal(Err("x-pad"), &"a".repeat(pad), &mut block);
    h2_frame(0x1, 0x4, stream, &block)
}

fn plaintext(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
    let mut args = vec!["--plaintext"];
    args.extend_from_slice(extra);
    Server::start(dir.path(), &args)
}

/// Open a slow reader: HTTP/1.1 requests pipelined until the socket is full (odd `i`), or an
/// HTTP/2 connection that grants no flow-control window (even `i`); never read from.
fn slow_reader(from: [u8; 4], addr: SocketAddr, i: usize) -> Option<TcpStream> {
    let mut s = connect_from(from, addr, Some(4096)).ok()?;
    s.set_nonblocking(true).ok()?;
    if i % 2 == 1 {
        let req = b"GET /oauth2/jwks HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(5000);
        let mut sent = 0;
        while sent < req.len() {
            match s.write(&req[sent..]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
    } else {
        let mut out = h2_start(0);
        for stream in 0..50u32 {
            out.extend(h2_get(2 * stream + 1, "/oauth2/jwks"));
        }
        let _ = s.write(&out);
    }
    Some(s)
}

#[test]
fn slow_readers_give_their_slots_back_within_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(
        &dir,
        &[
            "--max-connections",
            "32",
            "--max-connections-per-source",
            "0",
            "--idle-timeout",
            "5s",
            "--write-timeout",
            "2s",
        ],
    );
    let addr = server.addr;
    under_attack(
        "slow readers (HTTP/1.1 pipelining, HTTP/2 zero window), 32 slots",
        addr,
        Duration::from_secs(8),
        Duration::from_secs(10),
        move |busy| {
            // Keep twice the slots' worth of slow readers open, replacing the oldest.
            let mut open = std::collections::VecDeque::new();
            let mut i = 0;
            while busy.load(Ordering::Relaxed) {
                if let Some(s) = slow_reader(attacker(2), addr, i) {
                    open.push_back(s);
                }
                i += 1;
                if open.len() > 64 {
                    open.pop_front();
                }
                thread::sleep(Duration::from_millis(20));
            }
        },
    );
}

#[test]
fn connections_that_send_nothing_or_half_a_head_give_their_slots_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(
        &dir,
        &[
            "--max-connections",
            "32",
            "--max-connections-per-source",
            "0",
            "--header-timeout",
            "2s",
            "--idle-timeout",
            "60s",
        ],
    );
    let addr = server.addr;
    under_attack(
        "idle flood (nothing, 'P', half an HTTP/2 preface, a preface alone), 32 slots",
        addr,
        Duration::from_secs(8),
        Duration::from_secs(10),
        move |busy| {
            let starts: [&[u8]; 4] = [b"", b"P", &PREFACE[..10], PREFACE];
            let mut open = std::collections::VecDeque::new();
            let mut i = 0;
            while busy.load(Ordering::Relaxed) {
                if let Ok(mut s) = connect_from(attacker(2), addr, None) {
                    let _ = s.write_all(starts[i % 4]);
                    open.push_back(s);
                }
                i += 1;
                if open.len() > 64 {
                    open.pop_front();
                }
                thread::sleep(Duration::from_millis(20));
            }
        },
    );
}

#[test]
fn one_source_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(
        &dir,
        &[
            "--max-connections",
            "64",
            "--max-connections-per-source",
            "8",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = connect_from(attacker(3), server.addr, None) {
            held.push(s);
        }
    }
    thread::sleep(Duration::from_millis(500));
    // Those over the share were closed at once.
    let closed = held
        .iter()
        .filter(|s| {
            let _ = s.set_nonblocking(true);
            let mut s: &TcpStream = s;
            match s.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            }
        })
        .count();
    assert!(closed >= 150, "only {closed} of 200 were refused");
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(legit_token(server.addr, Duration::from_secs(5)));
    }
    all_served("one source holding its share of 64 slots", &results);
    drop(held);
}

/// Issue 14: the token listener is one socket per serving thread; `--max-connections` bounds
/// them all together, not each.
#[test]
fn the_connection_bound_holds_over_every_serving_thread() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(
        &dir,
        &[
            "--serve-threads",
            "3",
            "--max-connections",
            "4",
            "--max-connections-per-source",
            "0",
        ],
    );
    // Eight keep-alive connections, each with one request, none closed: the kernel spreads
    // them over the three sockets.
    let mut conns: Vec<(TcpStream, Option<u16>)> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(&seed_request()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            (s, None)
        })
        .collect();
    let answer = |conns: &mut Vec<(TcpStream, Option<u16>)>| {
        for (s, status) in conns.iter_mut().filter(|(_, st)| st.is_none()) {
            *status = read_status(s, &mut Vec::new());
        }
        conns.iter().filter(|(_, st)| st.is_some()).count()
    };
    thread::sleep(Duration::from_millis(500));
    let first = answer(&mut conns);
    // Served at once: never more than four (three per-thread bounds would let all eight in).
    // A thread waiting for its next connection may hold a slot, so at least two.
    assert!((2..=4).contains(&first), "{first} of 8 served at once");
    // Closing the answered ones lets the others in, four at a time, until all are served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = first;
    while served < 8 && Instant::now() < deadline {
        conns.retain(|(_, st)| st.is_none());
        let now = answer(&mut conns);
        assert!(now <= 4, "{now} served at once");
        served += now;
    }
    assert_eq!(served, 8, "every connection is served once slots come back");
    for (_, st) in &conns {
        assert!(st.is_none_or(|s| s == 200));
    }
}

fn probe(admin: SocketAddr, path: &str) -> Result<u16, String> {
    let mut s =
        TcpStream::connect_timeout(&admin, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    read_status(&mut s, &mut Vec::new()).ok_or_else(|| format!("{path}: no answer in 2 s"))
}

#[test]
fn admin_probes_answer_under_a_token_flood_an_admin_flood_and_full_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(
        &dir,
        &[
            "--max-connections",
            "16",
            "--max-connections-per-source",
            "0",
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
        ],
    );
    // Every token slot held by idle connections.
    let token_flood: Vec<_> = (0..40)
        .filter_map(|_| connect_from(attacker(2), server.addr, None).ok())
        .collect();
    // The admin listener's share for one source held by slow and idle peers.
    let admin_flood: Vec<_> = (0..40)
        .filter_map(|i| {
            if i % 2 == 0 {
                connect_from(attacker(4), server.admin, None).ok()
            } else {
                let mut s = connect_from(attacker(4), server.admin, Some(4096)).ok()?;
                s.set_nonblocking(true).ok()?;
                let _ = s.write(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000));
                Some(s)
            }
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        assert_eq!(probe(server.admin, "/healthz"), Ok(200));
        assert_eq!(probe(server.admin, "/readyz"), Ok(200));
    }
    drop(token_flood);
    // Full load: four clients ask for tokens back to back while the probes run.
    let busy = Arc::new(AtomicBool::new(true));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let busy = busy.clone();
            let addr = server.addr;
            thread::spawn(move || {
                let mut n = 0;
                while busy.load(Ordering::Relaxed) {
                    if let Ok(mut s) = TcpStream::connect(addr) {
                        let mut buf = Vec::new();
                        for _ in 0..100 {
                            if s.write_all(&seed_request()).is_err()
                                || read_status(&mut s, &mut buf) != Some(200)
                            {
                                break;
                            }
                            n += 1;
                        }
                    }
                }
                n
            })
        })
        .collect();
    let mut probes = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(probe(server.admin, "/healthz"), Ok(200));
        assert_eq!(probe(server.admin, "/readyz"), Ok(200));
        probes += 2;
        thread::sleep(Duration::from_millis(100));
    }
    busy.store(false, Ordering::Relaxed);
    let tokens: u32 = load.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    assert!(tokens > 0);
    println!(
        "figure: admin under load: {probes} probes answered while {tokens} tokens were issued"
    );
    drop(admin_flood);
}

/// Peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn http2_streams_without_bodies_stay_under_the_memory_cap() {
    /// The chart's memory limit.
    const CAP_KIB: u64 = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(&dir, &["--write-timeout", "30s"]);
    let before = peak_rss_kib(server.pid());
    let addr = server.addr;
    under_attack(
        "HTTP/2 pending-stream flood (300 connections x 100 streams, 4 KiB heads)",
        addr,
        Duration::from_secs(4),
        Duration::from_secs(10),
        move |busy| {
            let mut open = Vec::new();
            for c in 0..300u32 {
                let from = attacker(2 + (c % 2) as u8);
                let Ok(mut s) = connect_from(from, addr, Some(4096)) else {
                    continue;
                };
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                let mut out = h2_start(65_535);
                for stream in 0..100u32 {
                    out.extend(h2_post_without_body(2 * stream + 1, 4096));
                }
                let _ = s.write_all(&out);
                open.push(s);
            }
            while busy.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(50));
            }
        },
    );
    let peak = peak_rss_kib(server.pid());
    println!(
        "figure: H2 pending-stream flood: peak RSS {} MiB (before {} MiB)",
        peak / 1024,
        before / 1024
    );
    assert!(peak > 0 && peak < CAP_KIB, "peak RSS {peak} KiB");
}

/// Start the binary with stdout piped and read it only until both listeners are up.
fn start_unread(
    dir: &std::path::Path,
    extra: &[&str],
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    SocketAddr,
    SocketAddr,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args([
            "standalone",
            "--plaintext",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--state-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start latchkey");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut token, mut admin) = (None, None);
    let mut line = String::new();
    while token.is_none() || admin.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap_or(0) > 0, "latchkey exited");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "listening" {
            let a = v["addr"].as_str().and_then(|a| a.parse().ok());
            if v["listener"] == "token" {
                token = a;
            } else {
                admin = a;
            }
        }
    }
    (child, out, token.unwrap(), admin.unwrap())
}

/// With the log reader paused, `n` token requests all succeed and the admin answers; then the
/// reader comes back, SIGTERM, and the log is read to the end: (access lines, dropped count).
fn paused_reader_run(extra: &[&str], n: usize) -> (usize, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut out, addr, admin) = start_unread(dir.path(), extra);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    for i in 0..n {
        s.write_all(&seed_request()).unwrap();
        assert_eq!(
            read_status(&mut s, &mut buf),
            Some(200),
            "request {i} with the log reader paused"
        );
    }
    assert_eq!(probe(admin, "/healthz"), Ok(200));
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not stop");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let text = reader.join().unwrap();
    let mut access = 0;
    let mut dropped = 0;
    let mut total = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        if v["message"] == "token request" {
            access += 1;
        }
        // Reported by the writer as it catches up, and once more in all at shutdown.
        dropped += v["dropped"].as_u64().unwrap_or(0);
        total += v["dropped_total"].as_u64().unwrap_or(0);
    }
    assert_eq!(dropped, total, "the shutdown summary matches the reports");
    assert!(
        text.contains("\"stopped\""),
        "the last line is written: {}",
        &text[text.len().saturating_sub(500)..]
    );
    (access, dropped)
}

#[test]
fn a_paused_log_reader_does_not_stop_serving_and_nothing_is_lost() {
    // The queue holds everything: every line arrives once the reader is back.
    let (access, dropped) = paused_reader_run(&[], 1500);
    assert_eq!((access, dropped), (1500, 0));
    // A queue too small: lines are dropped, never waited for, and every drop is counted.
    let (access, dropped) = paused_reader_run(&["--log-buffer-lines", "50"], 1500);
    println!(
        "figure: paused reader, 50-line queue: {access} access lines written, {dropped} lines counted as dropped"
    );
    assert!(dropped > 0);
    assert_eq!(
        access as u64 + dropped,
        1500,
        "every line written or counted"
    );
}

#[test]
fn http1_framing_and_host_are_strict() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(&dir, &[]);
    let smuggle = b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(smuggle).unwrap();
    let mut buf = Vec::new();
    // Read by Transfer-Encoding alone (an empty body: no client authentication, 400 without an
    // Authorization header), never by Content-Length, and the connection is closed after the
    // answer (RFC 9112 §6.3).
    assert_eq!(read_status(&mut s, &mut buf), Some(400));
    assert!(matches!(s.read(&mut [0u8; 16]), Ok(0)));
    // The other order too; "hello" is never taken for a second request.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /oauth2/jwks HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_status(&mut s, &mut buf), Some(400));
    assert_eq!(
        read_status(&mut s, &mut buf),
        None,
        "no second answer on a closed connection"
    );
    for raw in [
        &b"GET /oauth2/jwks HTTP/1.1\r\n\r\n"[..],
        b"GET /oauth2/jwks HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        assert_eq!(
            server.send(raw).status,
            400,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(
        server.send(b"GET /oauth2/jwks HTTP/1.0\r\n\r\n").status,
        200
    );
    assert_eq!(
        server
            .send(b"GET /oauth2/jwks HTTP/1.1\r\nHost: a\r\n\r\n")
            .status,
        200
    );
}

#[test]
fn guessing_is_throttled_per_source_while_the_client_keeps_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let server = plaintext(&dir, &[]);
    let addr = server.addr;
    // The real client authenticates before the attack: its source is known.
    assert_eq!(
        legit_token(addr, Duration::from_secs(5)).map(|r| r.0),
        Ok(200)
    );
    let secs = 3;
    let busy = Arc::new(AtomicBool::new(true));
    let guessers: Vec<_> = (2..7u8)
        .map(|n| {
            let busy = busy.clone();
            thread::spawn(move || {
                let wrong = post_token(
                    &[
                        (
                            "Authorization",
                            &basic(common::APK_ID, &format!("guess-{n}")),
                        ),
                        FORM,
                    ],
                    "grant_type=client_credentials",
                );
                let (mut answered, mut throttled) = (0u32, 0u32);
                let mut s = connect_from(attacker(n), addr, None).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                while busy.load(Ordering::Relaxed) {
                    s.write_all(&wrong).unwrap();
                    match read_status(&mut s, &mut buf) {
                        Some(401) => answered += 1,
                        Some(429) => throttled += 1,
                        other => panic!("unexpected answer to a guess: {other:?}"),
                    }
                }
                (answered, throttled)
            })
        })
        .collect();
    let mut legit = Vec::new();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        legit.push(legit_token(addr, Duration::from_secs(5)));
        thread::sleep(Duration::from_millis(100));
    }
    busy.store(false, Ordering::Relaxed);
    for (n, g) in guessers.into_iter().enumerate() {
        let (answered, throttled) = g.join().unwrap();
        println!(
            "figure: source {}: {answered} guesses answered in {secs} s ({:.1}/s), {throttled} turned away (429)",
            n + 2,
            answered as f64 / secs as f64
        );
        // Burst 20, then 5 a second (plus a little for the clock).
        assert!(answered <= 20 + 5 * secs as u32 + 5, "{answered}");
        assert!(throttled > 0);
    }
    all_served("guessing from 5 sources at the real client's id", &legit);
    assert!(server.wait_for_log("client under attack", Duration::from_secs(2)));
    let metrics = server.admin_get("/metrics").text();
    assert!(
        metrics.contains("latchkey_client_attacks_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("latchkey_auth_throttled_total{by=\"source\"}"));
}

#[test]
fn a_tls_connection_that_sends_no_request_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--header-timeout", "1s", "--idle-timeout", "60s"],
    );
    // Handshake done, then nothing: closed after the header timeout, not the idle timeout.
    let config = common::client_config(&dir.path().join("tls.crt"));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    let mut conn = rustls::StreamOwned::new(tls, tcp);
    while conn.conn.is_handshaking() {
        conn.conn.complete_io(&mut conn.sock).unwrap();
    }
    let started = Instant::now();
    conn.sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let closed = common::eventually(Duration::from_secs(10), || match conn.read(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    });
    assert!(closed, "still open after {:?}", started.elapsed());
    println!(
        "figure: TLS connection without a request closed after {:?}",
        started.elapsed()
    );
    // A client that asks in time is served as before.
    server.seed_token();
}
