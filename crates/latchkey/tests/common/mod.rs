//! Harness for whole-process tests: start the real `latchkey` binary on ephemeral loopback
//! ports, talk to it over real TLS, and stop it with a real signal.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};

pub const SEED_AUTH: &str = "Basic NDVmMWM1YzgtYTkyZS0xMWVkLWFmYTEtMDI0MmFjMTIwMDAyOjRmYmQ2MmVjLWE5MmUtMTFlZC1hZmExLTAyNDJhYzEyMDAwMg==";
pub const APK_ID: &str = "45f1c5c8-a92e-11ed-afa1-0242ac120002";
pub const APK_SECRET: &str = "4fbd62ec-a92e-11ed-afa1-0242ac120002";

/// A running `latchkey standalone`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub state_dir: PathBuf,
    pub plaintext: bool,
    logs: Arc<Mutex<Vec<String>>>,
    /// When the last log line arrived.
    last_line: Arc<Mutex<Instant>>,
}

impl Server {
    /// Start `latchkey standalone` with `--state-dir state_dir` and `extra` flags; waits until
    /// both listeners are up.
    pub fn start(state_dir: &Path, extra: &[&str]) -> Server {
        Self::spawn("standalone", state_dir, extra, &[])
    }

    /// Start `latchkey SUBCOMMAND` on ephemeral loopback ports with JSON logs.
    pub fn spawn(
        subcommand: &str,
        state_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &Path)],
    ) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command
            .arg(subcommand)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start latchkey");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let last_line = Arc::new(Mutex::new(Instant::now()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        let stdout = child.stdout.take().unwrap();
        let sink = logs.clone();
        let last = last_line.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                *last.lock().unwrap() = Instant::now();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let addr = v["addr"].as_str().unwrap().parse().unwrap();
                    let _ = tx.send((v["listener"].as_str().unwrap().to_owned(), addr));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((name, a)) if name == "token" => addr = Some(a),
                Ok((_, a)) => admin = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "latchkey did not start; logs:\n{}",
                        logs.lock().unwrap().join("\n")
                    );
                }
            }
        }
        Server {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
            state_dir: state_dir.to_owned(),
            plaintext: extra.contains(&"--plaintext"),
            logs,
            last_line,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far. The server writes its log in batches a few times a second, so this
    /// first waits until the log has been quiet for a moment (at most 2 s): what was logged
    /// before the call is then in.
    pub fn logs(&self) -> Vec<String> {
        let called = Instant::now();
        let quiet = Duration::from_millis(150);
        loop {
            let now = Instant::now();
            let last = *self.last_line.lock().unwrap();
            let settled =
                now.duration_since(called) >= quiet && now.saturating_duration_since(last) >= quiet;
            if settled || now.duration_since(called) >= Duration::from_secs(2) {
                return self.logs.lock().unwrap().clone();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A metric's value from the admin listener, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.admin_get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "latchkey did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection to the token listener.
    pub fn connect(&self) -> Conn {
        Conn::open(
            self.addr,
            if self.plaintext {
                None
            } else {
                Some(self.state_dir.join("tls.crt"))
            },
        )
    }

    /// One request on a fresh connection.
    pub fn send(&self, raw: &[u8]) -> Response {
        self.connect().send(raw)
    }

    /// `POST /oauth2/token` with the given extra headers and form body.
    pub fn token(&self, headers: &[(&str, &str)], body: &str) -> Response {
        self.send(&post_token(headers, body))
    }

    /// The access token for APK's seed request (Basic, `client_credentials`); must succeed.
    pub fn seed_token(&self) -> String {
        let res = self.token(
            &[("Authorization", SEED_AUTH), FORM],
            "grant_type=client_credentials",
        );
        assert_eq!(res.status, 200, "{}", res.text());
        res.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// GET on the admin listener.
    pub fn admin_get(&self, path: &str) -> Response {
        Conn::open(self.admin, None)
            .send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }
}

#[cfg(feature = "e2e")]
pub mod cluster;
// Issue 11
pub mod publisher;
pub mod sign_in_flow;

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token request, as a client sends it.
pub fn post_token(headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    post_request("/oauth2/token", headers, body)
}

/// A POST of `body` to `path` with `headers`, as a client sends it.
pub fn post_request(path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

pub const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// The `Authorization` value for an id and secret, each form-urlencoded first (RFC 6749 §2.3.1).
pub fn basic(id: &str, secret: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    let enc = |s: &str| form_encode(s);
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// application/x-www-form-urlencoded encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A TLS client config that trusts exactly the certificate in `ca_pem`.
pub fn client_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read CA") {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTP/1.1 connection (TLS verified against `ca`, or plain).
pub struct Conn {
    stream: Stream,
    buffered: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr, ca: Option<PathBuf>) -> Conn {
        Self::try_open(addr, ca).expect("connect")
    }

    pub fn try_open(addr: SocketAddr, ca: Option<PathBuf>) -> std::io::Result<Conn> {
        Self::try_open_named(addr, ca, "localhost")
    }

    /// Like `try_open`, verifying the server's certificate for `server_name` (with `ca`).
    pub fn try_open_named(
        addr: SocketAddr,
        ca: Option<PathBuf>,
        server_name: &str,
    ) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let stream = match ca {
            None => Stream::Plain(tcp),
            Some(ca) => {
                let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let conn = rustls::ClientConnection::new(client_config(&ca), name).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // Complete the handshake now so certificate errors surface here.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            stream,
            buffered: Vec::new(),
        })
    }

    /// Send raw bytes and read one response.
    pub fn send(&mut self, raw: &[u8]) -> Response {
        self.stream.write_all(raw).expect("write request");
        self.stream.flush().unwrap();
        self.read_response()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffered.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn read_response(&mut self) -> Response {
        let head_end = loop {
            if let Some(i) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill(), "connection closed before a response head");
        };
        let head = String::from_utf8(self.buffered[..head_end].to_vec()).unwrap();
        self.buffered.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        while self.buffered.len() < len {
            assert!(self.fill(), "connection closed inside a body");
        }
        let body = self.buffered.drain(..len).collect();
        Response {
            status,
            headers,
            body,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The decoded JSON of a JWT's header and claims.
pub fn jwt_parts(
    token: &str,
) -> (
    serde_json::Map<String, serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, claims)
}

/// Verify a token's signature with the JWKS document `jwks`, choosing the key by `kid`.
pub fn verify_with_jwks(token: &str, jwks: &serde_json::Value) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&["https://idp.am.wso2.com/token"]);
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

// Issue 11
/// A loopback port nothing listens on (bound, then released): a connection is refused at once.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Conn {
    /// Write bytes without reading a response.
    pub fn write_raw(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write");
        self.stream.flush().unwrap();
    }
}
