//! Kubernetes ServiceAccount tokens as client assertions (`latchkey run`).
//!
//! Two checks, cheapest first. The signature, issuer, audience and expiry are verified
//! locally against the cluster's service-account issuer keys (the API server's
//! `/openid/v1/jwks`, fetched with Latchkey's own credentials, cached, refetched on an
//! unknown kid at most once per floor), so a forged or foreign token never costs an API
//! call. Then liveness: a token must stop working when its ServiceAccount, or the Pod,
//! Secret or Node it is bound to, is deleted. Latchkey reads the metadata of each object the
//! token names (its `kubernetes.io` claim) and compares the UID, as the API server's own
//! token authenticator does; a positive answer is remembered for [`REVIEW_TTL`] per token
//! digest. A deleted object is therefore refused within that time (plus one read), and a
//! busy gateway costs one read per object per token per [`REVIEW_TTL`], not per request.
//!
//! Why not a TokenReview: the API server caches successful token authentications in its
//! authenticator chain (10 s by default), so a TokenReview keeps answering yes for up to
//! 10 s after the bound object is gone (measured on the test control plane), too slow for
//! the 5 s promised. Reading the objects by name is not cached.
//!
//! A ServiceAccount token has no single use: the kubelet hands the same projected token to
//! its Pod until 80% of its lifetime, so its `jti` repeats legitimately. What bounds a stolen
//! one instead is its audience (Latchkey's only), its expiry (kubelet rotates it, 1 h by
//! default) and its bound object (deleting the Pod revokes it within seconds).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use latchkey_core::{assertion::JwkSet, trust_check::Finding};

/// How long a positive TokenReview is trusted.
pub const REVIEW_TTL: Duration = Duration::from_secs(3);
/// Most remembered reviews; beyond that, expired ones are dropped, then all.
const MAX_REVIEWS: usize = 65_536;

/// A boxed future, for the object-safe [`ClusterApi`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What Latchkey asks the API server, with its own credentials.
pub trait ClusterApi: Send + Sync {
    /// The service-account issuer's JWK Set.
    fn jwks(&self) -> BoxFuture<'_, Result<JwkSet, &'static str>>;
    /// Whether an object still exists with this UID (`Ok(false)`: gone, or replaced by
    /// another of the same name).
    fn exists<'a>(&'a self, object: &'a BoundObject) -> BoxFuture<'a, Result<bool, &'static str>>;
    /// Whether the ServiceAccount `namespace/name` exists (off the token path: a client's
    /// status, [`crate::trust_check`]).
    fn account<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Finding>;
}

/// An object a ServiceAccount token depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    /// `ServiceAccount`, `Pod`, `Secret` or `Node`.
    pub kind: &'static str,
    /// Empty for a Node.
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The objects a token's `kubernetes.io` claim names: its ServiceAccount, and the Pod, Secret
/// or Node it is bound to.
pub fn bound_objects(token: &str) -> Result<Vec<BoundObject>, &'static str> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
    let payload = token.split('.').nth(1).ok_or("malformed token")?;
    let claims: serde_json::Value = B64
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed token")?;
    let k = &claims["kubernetes.io"];
    let namespace = k["namespace"]
        .as_str()
        .ok_or("the token has no kubernetes.io namespace")?;
    let object = |kind: &'static str, v: &serde_json::Value, ns: &str| {
        Some(BoundObject {
            kind,
            namespace: ns.to_owned(),
            name: v["name"].as_str()?.to_owned(),
            uid: v["uid"].as_str()?.to_owned(),
        })
    };
    let mut out = vec![
        object("ServiceAccount", &k["serviceaccount"], namespace)
            .ok_or("the token names no ServiceAccount uid")?,
    ];
    for (claim, kind, ns) in [
        ("pod", "Pod", namespace),
        ("secret", "Secret", namespace),
        ("node", "Node", ""),
    ] {
        if k[claim].is_object() {
            out.push(object(kind, &k[claim], ns).ok_or("the token's bound object has no uid")?);
        }
    }
    Ok(out)
}

struct Keys {
    jwks: Arc<JwkSet>,
    fetched: Instant,
}

/// How long the cluster's keys are used before they are fetched again (a key the cluster
/// dropped stops verifying within this).
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// The cluster's service-account issuer as Latchkey trusts it.
pub struct ServiceAccounts {
    /// The `iss` of the cluster's ServiceAccount tokens.
    issuer: String,
    /// The audience a token must name (Latchkey's token endpoint URL by default).
    audience: String,
    api: Arc<dyn ClusterApi>,
    keys: ArcSwapOption<Keys>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    refetch_floor: Duration,
    reviews: Mutex<HashMap<[u8; 32], Instant>>,
}

impl std::fmt::Debug for ServiceAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccounts")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ServiceAccounts {
    pub fn new(
        issuer: String,
        audience: String,
        api: Arc<dyn ClusterApi>,
        refetch_floor: Duration,
    ) -> ServiceAccounts {
        ServiceAccounts {
            issuer,
            audience,
            api,
            keys: ArcSwapOption::empty(),
            last_fetch: tokio::sync::Mutex::new(None),
            refetch_floor,
            reviews: Mutex::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The issuer's keys, holding `kid` if they can: the cached set while it knows `kid`,
    /// else fetched again (at most once per floor).
    pub async fn jwks(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, &'static str> {
        let knows = |k: &Keys| {
            k.fetched.elapsed() < KEYS_MAX_AGE && kid.is_none_or(|kid| k.jwks.find(kid).is_some())
        };
        if let Some(k) = self.keys.load_full().filter(|k| knows(k)) {
            return Ok(k.jwks.clone());
        }
        let mut last = self.last_fetch.lock().await;
        if let Some(k) = self.keys.load_full().filter(|k| knows(k)) {
            return Ok(k.jwks.clone());
        }
        let cached = self.keys.load_full().map(|k| k.jwks.clone());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.refetch_floor) {
            return cached.ok_or("the cluster's service-account keys are not known yet");
        }
        *last = Some(now);
        match self.api.jwks().await {
            Ok(set) => {
                let jwks = Arc::new(set);
                self.keys.store(Some(Arc::new(Keys {
                    jwks: jwks.clone(),
                    fetched: now,
                })));
                Ok(jwks)
            }
            Err(why) => {
                tracing::warn!(
                    reason = why,
                    "the cluster's service-account keys could not be fetched"
                );
                cached.ok_or(why)
            }
        }
    }

    /// Whether the ServiceAccount `namespace/name` exists.
    pub async fn account(&self, namespace: &str, name: &str) -> Finding {
        self.api.account(namespace, name).await
    }

    /// Whether the objects `token` depends on still exist: a positive answer younger than
    /// [`REVIEW_TTL`], else one read per object.
    pub async fn still_valid(&self, token: &str) -> Result<(), &'static str> {
        let digest = digest(token);
        let now = Instant::now();
        {
            let reviews = self.reviews.lock().unwrap_or_else(|p| p.into_inner());
            if reviews.get(&digest).is_some_and(|t| now < *t) {
                return Ok(());
            }
        }
        let mut alive = Ok(true);
        for object in bound_objects(token)? {
            alive = self.api.exists(&object).await;
            if alive != Ok(true) {
                break;
            }
        }
        match alive {
            Ok(true) => {
                let mut reviews = self.reviews.lock().unwrap_or_else(|p| p.into_inner());
                if reviews.len() >= MAX_REVIEWS {
                    reviews.retain(|_, t| now < *t);
                    if reviews.len() >= MAX_REVIEWS {
                        reviews.clear();
                    }
                }
                reviews.insert(digest, now + REVIEW_TTL);
                Ok(())
            }
            Ok(false) => Err(
                "the token's ServiceAccount or bound object no longer exists (deleted or replaced)",
            ),
            Err(why) => Err(why),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    struct Fake {
        fetches: AtomicUsize,
        reviews: AtomicUsize,
        alive: AtomicBool,
    }

    impl ClusterApi for Fake {
        fn jwks(&self) -> BoxFuture<'_, Result<JwkSet, &'static str>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(JwkSet { keys: vec![] }) })
        }
        fn exists<'a>(
            &'a self,
            _object: &'a BoundObject,
        ) -> BoxFuture<'a, Result<bool, &'static str>> {
            self.reviews.fetch_add(1, Ordering::SeqCst);
            let alive = self.alive.load(Ordering::SeqCst);
            Box::pin(async move { Ok(alive) })
        }
        fn account<'a>(&'a self, _namespace: &'a str, _name: &'a str) -> BoxFuture<'a, Finding> {
            Box::pin(async { Finding::Resolved })
        }
    }

    #[tokio::test]
    async fn reviews_are_cached_briefly_and_unknown_kids_refetch_once_per_floor() {
        let fake = Arc::new(Fake {
            fetches: AtomicUsize::new(0),
            reviews: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
        });
        let sa = ServiceAccounts::new(
            "https://kubernetes.default.svc".into(),
            "https://latchkey/oauth2/token".into(),
            fake.clone(),
            Duration::from_millis(200),
        );
        sa.jwks(None).await.unwrap();
        sa.jwks(None).await.unwrap();
        assert_eq!(fake.fetches.load(Ordering::SeqCst), 1);
        sa.jwks(Some("new")).await.unwrap();
        assert_eq!(
            fake.fetches.load(Ordering::SeqCst),
            1,
            "not within the floor"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        sa.jwks(Some("new")).await.unwrap();
        assert_eq!(
            fake.fetches.load(Ordering::SeqCst),
            2,
            "an unknown kid refetches"
        );

        let token = |n: &str| {
            use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
            let claims = serde_json::json!({"kubernetes.io": {"namespace": "apps",
                "serviceaccount": {"name": n, "uid": "u1"}, "pod": {"name": "p", "uid": "u2"}}});
            format!("e30.{}.sig", B64.encode(claims.to_string()))
        };
        let objects = bound_objects(&token("gw")).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].kind, "Pod");
        assert_eq!(objects[1].uid, "u2");
        assert!(bound_objects("e30.e30.sig").is_err());
        let (t1, t2) = (token("t1"), token("t2"));
        sa.still_valid(&t1).await.unwrap();
        sa.still_valid(&t1).await.unwrap();
        assert_eq!(
            fake.reviews.load(Ordering::SeqCst),
            2,
            "a positive answer is cached"
        );
        fake.alive.store(false, Ordering::SeqCst);
        assert!(sa.still_valid(&t2).await.is_err());
        assert!(sa.still_valid(&t2).await.is_err());
        assert_eq!(
            fake.reviews.load(Ordering::SeqCst),
            4,
            "a negative one is not"
        );
    }
}
