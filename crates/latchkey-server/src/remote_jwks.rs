//! Keys that live elsewhere: a client's `jwksUri`, and a federated issuer's JWK Set found
//! through its OpenID discovery document. Fetched over HTTPS only, bounded in time and size,
//! cached for the `Cache-Control: max-age` the publisher gives (clamped), and fetched again
//! early only when an assertion names a key the cache does not hold, at most once per floor.
//!
//! A fresh cache answers without any I/O, so a request reaches the network only when its
//! keys are stale or unknown. Each URL has its own lock: a slow or broken publisher delays
//! only the assertions that need it (never longer than the timeout), never other clients.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use latchkey_core::assertion::{JwkSet, jwks_from_value};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::ServerError;

/// How remote keys are fetched and kept.
#[derive(Debug, Clone)]
pub struct RemoteKeysConfig {
    /// Whole fetch (connect, TLS, response, body).
    pub timeout: Duration,
    /// Largest document read.
    pub max_bytes: usize,
    /// Shortest time between two fetches of one URL (an unknown `kid` cannot make Latchkey
    /// hammer a publisher), and the shortest cache life.
    pub refetch_floor: Duration,
    /// Longest cache life, whatever `max-age` says; also the life without `max-age`.
    pub max_ttl: Duration,
    /// Most URLs remembered (they come from client definitions, not from requests).
    pub max_entries: usize,
}

impl Default for RemoteKeysConfig {
    fn default() -> Self {
        RemoteKeysConfig {
            timeout: Duration::from_secs(5),
            max_bytes: 64 * 1024,
            refetch_floor: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            max_entries: 4096,
        }
    }
}

struct Cached<T> {
    value: Arc<T>,
    fresh_until: Instant,
}

/// The last fetch of a URL: when, and why it failed if it did (so a caller within the floor
/// is told the real cause).
#[derive(Clone, Copy)]
struct Attempt {
    at: Instant,
    failed: Option<Unavailable>,
}

/// One URL: the last good document and the last attempt (its lock makes one fetch at a time
/// per URL).
struct Entry<T> {
    cached: ArcSwapOption<Cached<T>>,
    last_attempt: tokio::sync::Mutex<Option<Attempt>>,
}

impl<T> Default for Entry<T> {
    fn default() -> Self {
        Entry {
            cached: ArcSwapOption::empty(),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }
}

/// An issuer's discovery document, the part Latchkey reads.
struct Discovery {
    jwks_uri: String,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The cache of remote JWK Sets and discovery documents.
pub struct RemoteKeys {
    client: HttpsClient,
    config: RemoteKeysConfig,
    jwks: Mutex<HashMap<String, Arc<Entry<JwkSet>>>>,
    discovery: Mutex<HashMap<String, Arc<Entry<Discovery>>>>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why remote keys could not be had; safe to log (no document content).
pub type Unavailable = &'static str;

/// Which step of a federated issuer's keys failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerUnavailable {
    /// Its discovery document (`{issuer}/.well-known/openid-configuration`).
    Discovery(Unavailable),
    /// The JWK Set its discovery document names.
    Keys(Unavailable),
}

impl IssuerUnavailable {
    pub fn why(self) -> Unavailable {
        match self {
            IssuerUnavailable::Discovery(w) | IssuerUnavailable::Keys(w) => w,
        }
    }
}

/// The certificates of a PEM file, for [`RemoteKeys::new`].
pub fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ServerError::Config(format!("assertion CA file: not PEM certificates ({e})"))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Config(
            "assertion CA file: no certificate in it".into(),
        ));
    }
    let mut store = rustls::RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|e| {
            ServerError::Config(format!("assertion CA file: unusable certificate ({e})"))
        })?;
    }
    Ok(certs)
}

/// Runs the client's connection tasks on the runtime the cache was made on (the control
/// runtime), not on the serving shard whose request first needed a connection: a pooled
/// connection then outlives any shard and never waits behind one shard's load.
#[derive(Clone)]
struct ControlExecutor(Option<tokio::runtime::Handle>);

impl<F> hyper::rt::Executor<F> for ControlExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        match &self.0 {
            Some(runtime) => drop(runtime.spawn(fut)),
            None => drop(tokio::spawn(fut)),
        }
    }
}

impl RemoteKeys {
    /// A cache that trusts the system's roots plus `extra_roots`.
    pub fn new(
        config: RemoteKeysConfig,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<RemoteKeys, ServerError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is skipped, as every client does.
            let _ = roots.add(cert);
        }
        for cert in extra_roots {
            roots.add(cert.clone()).map_err(|e| {
                ServerError::Config(format!("assertion CA file: unusable certificate ({e})"))
            })?;
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Config(format!("TLS client: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let client = Client::builder(ControlExecutor(tokio::runtime::Handle::try_current().ok()))
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(RemoteKeys {
            client,
            config,
            jwks: Mutex::new(HashMap::new()),
            discovery: Mutex::new(HashMap::new()),
        })
    }

    /// The JWK Set at `url`, holding `kid` if possible: from the cache while it is fresh and
    /// knows `kid`, else fetched (at most once per floor).
    pub async fn jwks(&self, url: &str, kid: Option<&str>) -> Result<Arc<JwkSet>, Unavailable> {
        let entry = entry(&self.jwks, url, self.config.max_entries)?;
        let has = |set: &JwkSet| kid.is_none_or(|k| set.find(k).is_some());
        self.get(&entry, url, has, |v| jwks_from_value(v).ok())
            .await
    }

    /// The JWK Set of `issuer`, through its discovery document
    /// (`{issuer}/.well-known/openid-configuration`, whose `issuer` must be `issuer`).
    pub async fn issuer_jwks(
        &self,
        issuer: &str,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, Unavailable> {
        self.issuer_keys(issuer, kid)
            .await
            .map_err(IssuerUnavailable::why)
    }

    /// [`RemoteKeys::issuer_jwks`], saying which step failed.
    pub async fn issuer_keys(
        &self,
        issuer: &str,
        kid: Option<&str>,
    ) -> Result<Arc<JwkSet>, IssuerUnavailable> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let entry = entry(&self.discovery, &url, self.config.max_entries)
            .map_err(IssuerUnavailable::Discovery)?;
        let parse = |v: &serde_json::Value| {
            (v.get("issuer")?.as_str()? == issuer)
                .then(|| v.get("jwks_uri")?.as_str())
                .flatten()
                .filter(|u| u.starts_with("https://"))
                .map(|u| Discovery {
                    jwks_uri: u.to_owned(),
                })
        };
        let discovery = self
            .get(&entry, &url, |_| true, parse)
            .await
            .map_err(IssuerUnavailable::Discovery)?;
        self.jwks(&discovery.jwks_uri, kid)
            .await
            .map_err(IssuerUnavailable::Keys)
    }

    async fn get<T>(
        &self,
        entry: &Entry<T>,
        url: &str,
        good_enough: impl Fn(&T) -> bool,
        parse: impl Fn(&serde_json::Value) -> Option<T>,
    ) -> Result<Arc<T>, Unavailable> {
        let usable = |now: Instant| {
            entry
                .cached
                .load_full()
                .filter(|c| c.fresh_until > now && good_enough(&c.value))
                .map(|c| c.value.clone())
        };
        if let Some(v) = usable(Instant::now()) {
            return Ok(v);
        }
        let mut last = entry.last_attempt.lock().await;
        let now = Instant::now();
        // Another request may have fetched while this one waited.
        if let Some(v) = usable(now) {
            return Ok(v);
        }
        let stale = entry.cached.load_full().map(|c| c.value.clone());
        if let Some(a) = *last
            && now.duration_since(a.at) < self.config.refetch_floor
        {
            return stale.ok_or(
                a.failed
                    .unwrap_or("the keys could not be fetched recently; not retried yet"),
            );
        }
        let fetched = self.fetch(url).await;
        let failed = |why: Unavailable| {
            Some(Attempt {
                at: now,
                failed: Some(why),
            })
        };
        match fetched {
            Ok((json, ttl)) => {
                let Some(value) = parse(&json) else {
                    tracing::warn!(url, "remote keys: the document is not what was expected");
                    let why = "the published document is not usable";
                    *last = failed(why);
                    return stale.ok_or(why);
                };
                *last = Some(Attempt {
                    at: now,
                    failed: None,
                });
                let value = Arc::new(value);
                entry.cached.store(Some(Arc::new(Cached {
                    value: value.clone(),
                    fresh_until: now + ttl,
                })));
                Ok(value)
            }
            Err(why) => {
                *last = failed(why);
                tracing::warn!(url, reason = why, "remote keys: fetch failed");
                // Keys fetched before stay in use while the publisher is down.
                stale.ok_or(why)
            }
        }
    }

    /// GET `url`: a 200 JSON document within the size and time limits, and how long it may
    /// be cached.
    async fn fetch(&self, url: &str) -> Result<(serde_json::Value, Duration), Unavailable> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json, application/jwk-set+json")
            .header(header::USER_AGENT, "latchkey")
            .body(Empty::<Bytes>::new())
            .map_err(|_| "the URL is not usable")?;
        let max = self.config.max_bytes;
        let work = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|_| "the publisher could not be reached over HTTPS")?;
            if res.status() != StatusCode::OK {
                return Err("the publisher did not answer 200");
            }
            let ttl = max_age(res.headers()).unwrap_or(self.config.max_ttl);
            let body = Limited::new(res.into_body(), max)
                .collect()
                .await
                .map_err(|_| "the document is larger than allowed or was cut short")?
                .to_bytes();
            let json = serde_json::from_slice(&body).map_err(|_| "the document is not JSON")?;
            Ok((json, ttl))
        };
        let (json, ttl) = tokio::time::timeout(self.config.timeout, work)
            .await
            .map_err(|_| "the publisher did not answer in time")??;
        Ok((
            json,
            ttl.clamp(self.config.refetch_floor, self.config.max_ttl),
        ))
    }
}

fn entry<T>(
    map: &Mutex<HashMap<String, Arc<Entry<T>>>>,
    url: &str,
    max: usize,
) -> Result<Arc<Entry<T>>, Unavailable> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = map.get(url) {
        return Ok(e.clone());
    }
    if map.len() >= max {
        return Err("too many remote key sources");
    }
    let e = Arc::new(Entry::default());
    map.insert(url.to_owned(), e.clone());
    Ok(e)
}

/// `max-age` of `Cache-Control`; `no-store`/`no-cache` count as zero (the floor then applies).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, max-age=600"),
        );
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=x"));
        assert_eq!(max_age(&h), None);
    }

    #[tokio::test]
    async fn a_publisher_that_cannot_be_reached_is_asked_once_per_floor() {
        let keys = RemoteKeys::new(
            RemoteKeysConfig {
                timeout: Duration::from_secs(2),
                refetch_floor: Duration::from_secs(60),
                ..RemoteKeysConfig::default()
            },
            &[],
        )
        .unwrap();
        // A closed loopback port: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://127.0.0.1:{port}/jwks");
        let first = keys.jwks(&url, None).await.unwrap_err();
        assert_eq!(first, "the publisher could not be reached over HTTPS");
        // Not asked again within the floor, and the answer keeps the real cause.
        let second = keys.jwks(&url, None).await.unwrap_err();
        assert_eq!(second, first);
        let issuer = format!("https://127.0.0.1:{port}");
        assert_eq!(
            keys.issuer_keys(&issuer, None).await.unwrap_err(),
            IssuerUnavailable::Discovery("the publisher could not be reached over HTTPS")
        );
        assert!(
            keys.jwks("http://127.0.0.1/jwks", None).await.is_err(),
            "plain http is refused"
        );
    }
}
