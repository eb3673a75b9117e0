//! `sign-in ADDR SECONDS CONCURRENCY logins|refreshes|guesses CA`: people signing in, as
//! browsers and their client would, over TLS keep-alive connections (one per worker), against
//! the first-party client `bench` (redirect `https://bench.example/cb`, secret `bench-secret`)
//! and APK's sample user `admin`/`admin`:
//!
//! - `logins`: a whole sign-in each time, with a fresh cookie jar: the authorization request,
//!   the login form with the password (one Argon2id verification), the code back, and its
//!   redemption with PKCE at the token endpoint;
//! - `refreshes`: one sign-in per worker, then `grant_type=refresh_token` over and over, each
//!   time with the token the last one rotated to;
//! - `guesses`: wrong passwords for `admin` on the login form, counting the answers that
//!   carried a verdict (200, "wrong password") and the ones the throttle turned away (429).
//!
//! Prints `done=`, `failed=`, `throttled=` and `per_second=` (done per wall second).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::io::AsyncWriteExt;

use super::{Io, client_config, connect, read_response};

const CLIENT_BASIC: &str = "YmVuY2g6YmVuY2gtc2VjcmV0"; // bench:bench-secret
const REDIRECT: &str = "https%3A%2F%2Fbench.example%2Fcb";
const CHALLENGE: &str = "AMwbT3_yA2xKyK2Hk8o5k_Ewrql6KhaJKgl73etBL-w";
const VERIFIER: &str = "latchkey-test-verifier-0123456789-abcdefghijkl";

/// One keep-alive connection and the cookies a browser would hold for the origin.
struct Browser {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    cookies: BTreeMap<String, String>,
}

/// What a response carried that the flow needs.
struct Reply {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &str,
        body: &str,
    ) -> Option<Reply> {
        let cookie = if self.cookies.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            format!("Cookie: {}\r\n", pairs.join("; "))
        };
        let length = if method == "POST" {
            format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            )
        } else {
            String::new()
        };
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{cookie}{headers}{length}\r\n{body}"
        );
        self.io.write_all(req.as_bytes()).await.ok()?;
        let status = read_response(&mut self.io, &mut self.buf).await?;
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let mut location = None;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((n, v)) = pair.split_once('=') {
                    if v.is_empty() {
                        self.cookies.remove(n);
                    } else {
                        self.cookies.insert(n.to_owned(), v.to_owned());
                    }
                }
            } else if name.eq_ignore_ascii_case("location") {
                location = Some(value.to_owned());
            }
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..]).into_owned();
        Some(Reply {
            status,
            location,
            body,
        })
    }

    /// The authorization request: the login page (or, with a session, the code) and its CSRF.
    async fn authorize(&mut self) -> Option<String> {
        let target = format!(
            "/oauth2/authorize?response_type=code&client_id=bench&redirect_uri={REDIRECT}\
             &scope=openid&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256"
        );
        let page = self.send("GET", &target, "", "").await?;
        (page.status == 200).then(|| csrf_of(&page.body))?
    }

    async fn login(&mut self, csrf: &str, password: &str) -> Option<Reply> {
        let body = format!("csrf={}&username=admin&password={password}", encode(csrf));
        self.send("POST", "/oauth2/login", "", &body).await
    }

    async fn token(&mut self, form: &str) -> Option<serde_json::Value> {
        let auth = format!("Authorization: Basic {CLIENT_BASIC}\r\n");
        let res = self.send("POST", "/oauth2/token", &auth, form).await?;
        if res.status != 200 {
            return None;
        }
        serde_json::from_str(&res.body).ok()
    }

    /// A whole sign-in with a fresh jar; the refresh token it ends with.
    async fn sign_in(&mut self) -> Option<String> {
        self.cookies.clear();
        let csrf = self.authorize().await?;
        let back = self.login(&csrf, "admin").await?;
        if back.status != 302 {
            return None;
        }
        let location = back.location?;
        let code = location
            .split("code=")
            .nth(1)?
            .split('&')
            .next()?
            .to_owned();
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={REDIRECT}&code_verifier={VERIFIER}"
        );
        let tokens = self.token(&form).await?;
        Some(tokens["refresh_token"].as_str()?.to_owned())
    }
}

fn csrf_of(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf\" value=\"")? + 19;
    Some(page[at..at + page[at..].find('"')?].to_owned())
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
    throttled: AtomicU64,
}

async fn worker(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    mode: String,
    deadline: Instant,
    counts: Arc<Counts>,
) {
    let mut b = Browser {
        io: connect(addr, Some(&tls)).await,
        buf: Vec::with_capacity(16 * 1024),
        cookies: BTreeMap::new(),
    };
    let mut refresh = None;
    let mut csrf = None;
    while Instant::now() < deadline {
        let ok = match mode.as_str() {
            "logins" => b.sign_in().await.is_some(),
            "refreshes" => {
                if refresh.is_none() {
                    refresh = b.sign_in().await;
                }
                // A sign-in that failed is a failure, like a refused refresh.
                match refresh.take() {
                    None => false,
                    Some(current) => {
                        let form = format!(
                            "grant_type=refresh_token&refresh_token={}",
                            encode(&current)
                        );
                        refresh = match b.token(&form).await {
                            Some(t) => t["refresh_token"].as_str().map(str::to_owned),
                            None => None,
                        };
                        refresh.is_some()
                    }
                }
            }
            _ => {
                if csrf.is_none() {
                    csrf = b.authorize().await;
                }
                // No login page is a failure, like an unexpected answer.
                let answer = match csrf.clone() {
                    None => None,
                    Some(token) => b.login(&token, "not-the-password").await,
                };
                match answer {
                    Some(r)
                        if r.status == 200 && r.body.contains("Wrong username or password.") =>
                    {
                        true
                    }
                    Some(r) if r.status == 429 => {
                        counts.throttled.fetch_add(1, Ordering::Relaxed);
                        // A throttled browser waits a little, as the Retry-After asks.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    _ => false,
                }
            }
        };
        let counter = if ok { &counts.done } else { &counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        if !ok {
            // Start over on a new connection (a refused step may have closed it).
            b.io = connect(addr, Some(&tls)).await;
            (refresh, csrf) = (None, None);
        }
    }
}

pub async fn run(addr: SocketAddr, seconds: f64, concurrency: usize, mode: &str, ca: &str) {
    let tls = client_config(ca);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let counts = Arc::new(Counts::default());
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(worker(
                addr,
                tls.clone(),
                mode.to_owned(),
                deadline,
                counts.clone(),
            ))
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = counts.done.load(Ordering::Relaxed);
    println!("done={done}");
    println!("failed={}", counts.failed.load(Ordering::Relaxed));
    println!("throttled={}", counts.throttled.load(Ordering::Relaxed));
    println!("per_second={:.1}", done as f64 / elapsed);
}
