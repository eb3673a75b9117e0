//! A bounded black-box fuzz run over HTTP against the real binary: mutated token requests,
//! metadata requests, HTTP/2 prefaces and frames, and raw bytes, each on its own connection.
//! The server must answer or close every one, never panic, and still issue tokens after.
//!
//! Cases: `LATCHKEY_FUZZ_CASES` (default 5000; `make fuzz` runs 100,000). Deterministic for a
//! given `LATCHKEY_FUZZ_SEED`.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    time::{Duration, Instant},
};

use common::{FORM, SEED_AUTH, Server, post_token};

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    h2.extend_from_slice(&[0, 0, 13, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x04, 0x0c]);
    h2.extend_from_slice(b"/oauth2/jwks");
    vec![
        post_token(&[("Authorization", SEED_AUTH), FORM], "grant_type=client_credentials"),
        post_token(
            &[FORM],
            "grant_type=client_credentials&client_id=a&client_secret=b&scope=default%20apk%3Aread",
        ),
        b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n1d\r\ngrant_type=client_credentials\r\n0\r\n\r\n".to_vec(),
        b"GET /oauth2/jwks HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"abc\"\r\n\r\n".to_vec(),
        b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: idp.example.com:8443\r\n\r\n".to_vec(),
        b"HEAD /oauth2/certificate HTTP/1.0\r\n\r\n".to_vec(),
        h2,
    ]
}

const TOKENS: [&[u8]; 14] = [
    b"\r\n",
    b"\r\n\r\n",
    b":",
    b" ",
    b"%",
    b"%00",
    b"&",
    b"=",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Authorization: Basic ////\r\n",
    b"Host: a\r\n",
    b"\xff\xfe",
    b"\0",
];

/// One mutated request: a seed with a few edits.
fn case(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(20) == 0 {
        return (0..rng.below(300)).map(|_| rng.next() as u8).collect();
    }
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if at < v.len() => v[at] = rng.next() as u8,
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 if at < v.len() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(32)).min(v.len());
                let chunk: Vec<u8> = v[at..end].to_vec();
                for _ in 0..rng.below(64) {
                    v.splice(at..at, chunk.iter().copied());
                }
            }
            4 => v.truncate(at),
            _ => {
                let junk: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, junk);
            }
        }
    }
    v
}

#[test]
fn the_server_survives_mutated_requests() {
    let cases: usize = std::env::var("LATCHKEY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("LATCHKEY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1a7c_4e11);
    let dir = tempfile::tempdir().unwrap();
    // Throttling off: the fuzzer's failed authentications are not the subject here.
    let server = Server::start(dir.path(), &["--plaintext", "--auth-failure-rate", "0"]);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut answered, mut closed) = (0usize, 0usize);
    for i in 0..cases {
        let raw = case(&mut rng, &seeds);
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&raw);
        let _ = s.shutdown(Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if out.starts_with(b"HTTP/1.") || out.len() >= 9 && out[3] == 4 {
            answered += 1;
        } else {
            closed += 1;
        }
        if i % 500 == 0 {
            assert!(
                server.logs().iter().all(|l| !l.contains("panicked")),
                "a panic after case {i} (seed {seed}): {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
    let panics = server
        .logs()
        .iter()
        .filter(|l| l.contains("panicked"))
        .count();
    println!(
        "fuzz: {cases} HTTP cases run in {:?} (seed {seed}): {answered} answered, {closed} closed without an answer, {panics} crashes",
        started.elapsed()
    );
    assert_eq!(panics, 0, "{:?}", server.logs());
    // Still serving.
    server.seed_token();
    assert_eq!(server.admin_get("/healthz").status, 200);
}
