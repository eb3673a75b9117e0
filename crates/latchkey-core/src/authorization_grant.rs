//! One sign-in's authorization grant, from its code to its last refresh token, as one stored
//! document: the rules are here, once, for both run modes; where the document lives is a
//! [`CollectionStore`]'s business (a ConfigMap per grant in a cluster, a file per grant
//! standalone).
//!
//! - A code is single use and lives at most [`CODE_LIFETIME`]. Redeeming it replaces the
//!   document conditionally on the version read, so of two replicas that race only one wins;
//!   the other reads again and sees a redeemed grant, which is a replay: the whole grant is
//!   revoked (RFC 6749 §4.1.2), taking the refresh token the winner got with it.
//! - A refresh token is rotated on every use (a new token, the old one dead). Presenting a
//!   rotated one revokes the whole family (RFC 9700 §4.14): either its thief or its owner is
//!   the one presenting it, and neither may go on.
//! - PKCE is S256 only (`plain` is refused where the request is parsed); a code issued with a
//!   challenge needs its verifier, and a verifier sent for a code issued without one is refused
//!   (a downgrade).
//!
//! The store never holds a usable secret: codes and refresh tokens are `grant-id.secret`
//! (`grant-id.generation.secret` for refresh tokens), and only the SHA-256 of the secret part
//! is kept, compared in constant time.

use std::{future::Future, time::Duration};

use aws_lc_rs::{
    digest,
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::store::{StoreError, Version, Versioned};

/// How long a code may wait to be redeemed.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Longest grant id accepted from a presented token (ids are 32 hex characters).
const GRANT_ID_LEN: usize = 32;

/// A collection of documents keyed by id, each read whole and written only conditionally: the
/// [`crate::store::DocumentStore`] contract per document, plus a sweep of expired ones.
pub trait CollectionStore<T>: Send + Sync {
    /// The document and its version; `None` when it does not exist (or was swept).
    fn load(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<Versioned<T>>, StoreError>> + Send;
    /// Create it; [`StoreError::Conflict`] when it exists already.
    fn create(
        &self,
        id: &str,
        value: &T,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;
    /// Replace it, only if it is still at `version`; [`StoreError::Conflict`] otherwise.
    fn replace(
        &self,
        id: &str,
        value: &T,
        version: &Version,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;
    /// Delete every document whose [`Expiring::expires_at`] is at or before `now` (Unix
    /// seconds); returns how many went.
    fn sweep(&self, now: u64) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// A document that may be deleted after a moment.
pub trait Expiring {
    /// Unix seconds after which nothing can use the document any more.
    fn expires_at(&self) -> u64;
}

/// Where a grant is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum GrantPhase {
    /// A code was issued and not yet redeemed.
    #[serde(rename_all = "camelCase")]
    Issued { code_expires_at: u64 },
    /// The code was redeemed; `generation` is the refresh token that is current.
    #[serde(rename_all = "camelCase")]
    Active {
        generation: u64,
        refresh_hash: String,
    },
    /// Nothing from this grant works any more.
    #[serde(rename_all = "camelCase")]
    Revoked { reason: String },
}

/// One sign-in's grant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord {
    pub client_id: String,
    pub user_id: String,
    /// Space-separated, as granted.
    pub scope: String,
    /// When the user signed in (Unix seconds; the id_token's `auth_time`).
    pub auth_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    pub redirect_uri: String,
    /// The S256 PKCE challenge the code was issued with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// SHA-256 of the code's secret, kept for the grant's life so a replay is recognised.
    pub code_hash: String,
    pub phase: GrantPhase,
    /// Unix seconds after which the document may be swept: the code's expiry until it is
    /// redeemed, then the end of the refresh tokens' life.
    pub expires_at: u64,
}

impl Expiring for GrantRecord {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// What a new grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: u64,
    pub nonce: Option<String>,
    pub organization: Option<String>,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
}

/// Why a code or refresh token was refused. All of them answer `invalid_grant`; the reason is
/// for logs and metrics, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, unknown, swept, or its secret does not match.
    Unknown,
    Expired,
    /// Issued to another client.
    WrongClient,
    WrongRedirectUri,
    /// No verifier for a challenge, a verifier without a challenge, or one that does not match.
    Pkce,
    /// Presented again after use (the grant is revoked now, if it was not already).
    Replayed,
    /// The grant was revoked before.
    Revoked,
    /// The store answered with an error; nothing was changed.
    Unavailable,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::WrongClient => "wrong_client",
            Refusal::WrongRedirectUri => "wrong_redirect_uri",
            Refusal::Pkce => "pkce",
            Refusal::Replayed => "replayed",
            Refusal::Revoked => "revoked",
            Refusal::Unavailable => "unavailable",
        }
    }
}

/// What a successful redemption or refresh gives: the grant as stored now and the new refresh
/// token (to hand out once; only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub grant: GrantRecord,
    pub refresh_token: String,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StoreError::Unavailable("no randomness".into()))?;
    Ok(b)
}

fn hash(secret: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

fn same_hash(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn is_grant_id(id: &str) -> bool {
    id.len() == GRANT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The S256 challenge of a verifier (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    B64.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Whether `v` is a well-formed PKCE verifier: 43 to 128 unreserved characters (RFC 7636 §4.1).
pub fn is_code_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether `c` is a well-formed S256 challenge: base64url of 32 bytes, no padding.
pub fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && B64.decode(c).is_ok_and(|b| b.len() == 32)
}

/// A new grant and its code, at `now` (Unix seconds). Nothing is stored yet: the caller creates
/// the document under the returned id.
pub fn issue(new: NewGrant, now: u64) -> Result<(String, String, GrantRecord), StoreError> {
    let id: String = random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret = B64.encode(random_bytes::<32>()?);
    let code_expires_at = now + CODE_LIFETIME.as_secs();
    let record = GrantRecord {
        client_id: new.client_id,
        user_id: new.user_id,
        scope: new.scope,
        auth_time: new.auth_time,
        nonce: new.nonce,
        organization: new.organization,
        redirect_uri: new.redirect_uri,
        code_challenge: new.code_challenge,
        code_hash: hash(&secret),
        phase: GrantPhase::Issued { code_expires_at },
        expires_at: code_expires_at,
    };
    let code = format!("{id}.{secret}");
    Ok((id, code, record))
}

/// What one look at a stored grant decides.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Store this at the version read, then answer with the token.
    Write(GrantRecord, Option<String>),
    Refuse(Refusal),
    /// Store the revoked grant (at the version read), then refuse.
    Revoke(GrantRecord, Refusal),
}

fn revoked(record: &GrantRecord, reason: &str) -> GrantRecord {
    GrantRecord {
        phase: GrantPhase::Revoked {
            reason: reason.to_owned(),
        },
        ..record.clone()
    }
}

fn next_refresh(id: &str, generation: u64) -> Result<(String, String), StoreError> {
    let secret = B64.encode(random_bytes::<32>()?);
    let token = format!("{id}.{generation}.{secret}");
    Ok((token, hash(&secret)))
}

/// The code redemption rules, on one read of the grant.
struct Redemption<'a> {
    id: &'a str,
    secret: &'a str,
    client_id: &'a str,
    redirect_uri: &'a str,
    code_verifier: Option<&'a str>,
    now: u64,
    refresh_lifetime: Duration,
}

impl Redemption<'_> {
    fn decide(&self, record: &GrantRecord) -> Result<Step, StoreError> {
        if !same_hash(&hash(self.secret), &record.code_hash) {
            return Ok(Step::Refuse(Refusal::Unknown));
        }
        // The code is genuine from here on.
        if record.client_id != self.client_id {
            // Another client holds a stolen or injected code: refused, and the grant is left
            // alone (its rightful client may still redeem it).
            return Ok(Step::Refuse(Refusal::WrongClient));
        }
        let code_expires_at = match &record.phase {
            GrantPhase::Issued { code_expires_at } => *code_expires_at,
            GrantPhase::Active { .. } => {
                return Ok(Step::Revoke(
                    revoked(record, "authorization code replayed"),
                    Refusal::Replayed,
                ));
            }
            GrantPhase::Revoked { .. } => return Ok(Step::Refuse(Refusal::Replayed)),
        };
        if self.now >= code_expires_at {
            return Ok(Step::Refuse(Refusal::Expired));
        }
        if record.redirect_uri != self.redirect_uri {
            return Ok(Step::Refuse(Refusal::WrongRedirectUri));
        }
        let pkce_ok = match (&record.code_challenge, self.code_verifier) {
            (Some(challenge), Some(v)) => {
                is_code_verifier(v) && same_hash(&s256_challenge(v), challenge)
            }
            (None, None) => true,
            _ => false,
        };
        if !pkce_ok {
            return Ok(Step::Refuse(Refusal::Pkce));
        }
        let (token, refresh_hash) = next_refresh(self.id, 1)?;
        let active = GrantRecord {
            phase: GrantPhase::Active {
                generation: 1,
                refresh_hash,
            },
            expires_at: self.now + self.refresh_lifetime.as_secs(),
            ..record.clone()
        };
        Ok(Step::Write(active, Some(token)))
    }
}

/// The refresh rules, on one read of the grant.
struct Refresh<'a> {
    id: &'a str,
    generation: u64,
    secret: &'a str,
    client_id: &'a str,
    now: u64,
}

impl Refresh<'_> {
    fn decide(&self, record: &GrantRecord) -> Result<Step, StoreError> {
        if record.client_id != self.client_id {
            return Ok(Step::Refuse(Refusal::WrongClient));
        }
        if self.now >= record.expires_at {
            return Ok(Step::Refuse(Refusal::Expired));
        }
        let (current, current_hash) = match &record.phase {
            GrantPhase::Active {
                generation,
                refresh_hash,
            } => (*generation, refresh_hash),
            GrantPhase::Revoked { .. } => return Ok(Step::Refuse(Refusal::Revoked)),
            GrantPhase::Issued { .. } => return Ok(Step::Refuse(Refusal::Unknown)),
        };
        if self.generation == current && same_hash(&hash(self.secret), current_hash) {
            let next = current + 1;
            let (token, refresh_hash) = next_refresh(self.id, next)?;
            let rotated = GrantRecord {
                phase: GrantPhase::Active {
                    generation: next,
                    refresh_hash,
                },
                ..record.clone()
            };
            return Ok(Step::Write(rotated, Some(token)));
        }
        if self.generation < current {
            // A rotated token: whoever presents it, the family ends.
            return Ok(Step::Revoke(
                revoked(record, "rotated refresh token reused"),
                Refusal::Replayed,
            ));
        }
        Ok(Step::Refuse(Refusal::Unknown))
    }
}

/// How often a decision is taken again after losing a race to another writer.
const ATTEMPTS: usize = 4;

/// Read, decide, write at the version read; a lost race reads and decides again (the winner's
/// write may turn this request into a replay).
async fn drive<S: CollectionStore<GrantRecord>>(
    store: &S,
    id: &str,
    decide: impl Fn(&GrantRecord) -> Result<Step, StoreError>,
) -> Result<Granted, Refusal> {
    for _ in 0..ATTEMPTS {
        let Some(read) = store.load(id).await.map_err(|_| Refusal::Unavailable)? else {
            return Err(Refusal::Unknown);
        };
        let (write, answer) = match decide(&read.value).map_err(|_| Refusal::Unavailable)? {
            Step::Refuse(r) => return Err(r),
            Step::Write(record, token) => (record, Ok(token)),
            Step::Revoke(record, r) => (record, Err(r)),
        };
        match store.replace(id, &write, &read.version).await {
            Ok(_) => {
                return match answer {
                    Ok(Some(refresh_token)) => Ok(Granted {
                        grant: write,
                        refresh_token,
                    }),
                    Ok(None) => Err(Refusal::Unknown),
                    Err(r) => Err(r),
                };
            }
            Err(StoreError::Conflict) => continue,
            Err(_) => return Err(Refusal::Unavailable),
        }
    }
    Err(Refusal::Unavailable)
}

/// Redeem a code for `client_id` at `now`: the grant becomes active with its first refresh
/// token, or the code is refused (and, replayed, its grant revoked).
pub async fn redeem<S: CollectionStore<GrantRecord>>(
    store: &S,
    code: &str,
    client_id: &str,
    redirect_uri: &str,
    code_verifier: Option<&str>,
    now: u64,
    refresh_lifetime: Duration,
) -> Result<Granted, Refusal> {
    let Some((id, secret)) = code.split_once('.').filter(|(id, _)| is_grant_id(id)) else {
        return Err(Refusal::Unknown);
    };
    let rules = Redemption {
        id,
        secret,
        client_id,
        redirect_uri,
        code_verifier,
        now,
        refresh_lifetime,
    };
    drive(store, id, |r| rules.decide(r)).await
}

/// Use a refresh token for `client_id` at `now`: a new one replaces it, or it is refused (and,
/// rotated already, its family revoked).
pub async fn refresh<S: CollectionStore<GrantRecord>>(
    store: &S,
    token: &str,
    client_id: &str,
    now: u64,
) -> Result<Granted, Refusal> {
    let mut parts = token.splitn(3, '.');
    let (Some(id), Some(generation), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Unknown);
    };
    let Ok(generation) = generation.parse::<u64>() else {
        return Err(Refusal::Unknown);
    };
    if !is_grant_id(id) {
        return Err(Refusal::Unknown);
    }
    let rules = Refresh {
        id,
        generation,
        secret,
        client_id,
        now,
    };
    drive(store, id, |r| rules.decide(r)).await
}

/// Revoke a grant (the user was disabled, signed out, or its client asked): nothing from it
/// works any more. A grant that is gone is already as good as revoked.
pub async fn revoke<S: CollectionStore<GrantRecord>>(
    store: &S,
    id: &str,
    reason: &str,
) -> Result<(), StoreError> {
    for _ in 0..ATTEMPTS {
        let Some(read) = store.load(id).await? else {
            return Ok(());
        };
        if matches!(read.value.phase, GrantPhase::Revoked { .. }) {
            return Ok(());
        }
        match store
            .replace(id, &revoked(&read.value, reason), &read.version)
            .await
        {
            Err(StoreError::Conflict) => continue,
            other => return other.map(|_| ()),
        }
    }
    Err(StoreError::Conflict)
}

/// What revoking a presented refresh token did (RFC 7009 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRevocation {
    /// It was the grant's current refresh token: the grant is revoked now (or was already).
    Revoked,
    /// Not a current refresh token of any grant (malformed, unknown, rotated, swept): nothing
    /// to do, and the answer does not say which.
    NotFound,
    /// A current refresh token, but of another client's grant: refused, nothing changed.
    WrongClient,
}

/// Revoke the grant whose current refresh token is `token`, for `client_id` (the client that
/// authenticated). Only the current token's hash is stored, so a rotated one is unknown here;
/// presenting it at the token endpoint is what ends its family.
pub async fn revoke_refresh<S: CollectionStore<GrantRecord>>(
    store: &S,
    token: &str,
    client_id: &str,
) -> Result<RefreshRevocation, StoreError> {
    let mut parts = token.splitn(3, '.');
    let (Some(id), Some(generation), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(RefreshRevocation::NotFound);
    };
    let (true, Ok(generation)) = (is_grant_id(id), generation.parse::<u64>()) else {
        return Ok(RefreshRevocation::NotFound);
    };
    let Some(read) = store.load(id).await? else {
        return Ok(RefreshRevocation::NotFound);
    };
    let current = match &read.value.phase {
        GrantPhase::Active {
            generation: g,
            refresh_hash,
        } => *g == generation && same_hash(&hash(secret), refresh_hash),
        GrantPhase::Revoked { .. } | GrantPhase::Issued { .. } => false,
    };
    if !current {
        return Ok(RefreshRevocation::NotFound);
    }
    if read.value.client_id != client_id {
        return Ok(RefreshRevocation::WrongClient);
    }
    revoke(store, id, "refresh token revoked by its client").await?;
    Ok(RefreshRevocation::Revoked)
}

/// The grant id a code or refresh token names, if it is well formed.
pub fn grant_id_of(token: &str) -> Option<&str> {
    token.split('.').next().filter(|id| is_grant_id(id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::{
        collections::HashMap,
        sync::{
            Mutex,
            atomic::{AtomicU64, Ordering},
        },
    };

    /// A collection in memory with the stores' contract, and a hook that lets a test write
    /// between another writer's read and its write.
    #[derive(Default)]
    pub struct Memory {
        docs: Mutex<HashMap<String, Versioned<GrantRecord>>>,
        counter: AtomicU64,
        #[allow(clippy::type_complexity)]
        before_replace: Mutex<Option<Box<dyn FnMut(&Memory) + Send>>>,
    }

    impl Memory {
        fn next_version(&self) -> Version {
            Version(self.counter.fetch_add(1, Ordering::Relaxed).to_string())
        }
        pub fn get(&self, id: &str) -> Option<GrantRecord> {
            self.docs.lock().unwrap().get(id).map(|v| v.value.clone())
        }
        fn put(&self, id: &str, value: GrantRecord) {
            let version = self.next_version();
            self.docs
                .lock()
                .unwrap()
                .insert(id.to_owned(), Versioned { value, version });
        }
    }

    impl CollectionStore<GrantRecord> for Memory {
        async fn load(&self, id: &str) -> Result<Option<Versioned<GrantRecord>>, StoreError> {
            Ok(self.docs.lock().unwrap().get(id).cloned())
        }
        async fn create(&self, id: &str, value: &GrantRecord) -> Result<Version, StoreError> {
            let version = self.next_version();
            let mut docs = self.docs.lock().unwrap();
            if docs.contains_key(id) {
                return Err(StoreError::Conflict);
            }
            docs.insert(
                id.to_owned(),
                Versioned {
                    value: value.clone(),
                    version: version.clone(),
                },
            );
            Ok(version)
        }
        async fn replace(
            &self,
            id: &str,
            value: &GrantRecord,
            version: &Version,
        ) -> Result<Version, StoreError> {
            let hook = self.before_replace.lock().unwrap().take();
            if let Some(mut hook) = hook {
                hook(self);
            }
            let new = self.next_version();
            let mut docs = self.docs.lock().unwrap();
            match docs.get_mut(id) {
                Some(doc) if &doc.version == version => {
                    *doc = Versioned {
                        value: value.clone(),
                        version: new.clone(),
                    };
                    Ok(new)
                }
                _ => Err(StoreError::Conflict),
            }
        }
        async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
            let mut docs = self.docs.lock().unwrap();
            let before = docs.len();
            docs.retain(|_, d| d.value.expires_at() > now);
            Ok(before - docs.len())
        }
    }

    pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The memory store never waits, so one poll completes every future here.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the memory store never waits"),
        }
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const DAY: Duration = Duration::from_secs(86_400);

    fn new_grant(challenge: Option<&str>) -> NewGrant {
        NewGrant {
            client_id: "web".into(),
            user_id: "u-1".into(),
            scope: "openid".into(),
            auth_time: 1_000,
            nonce: Some("n".into()),
            organization: Some("org1".into()),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: challenge.map(str::to_owned),
        }
    }

    fn issued(store: &Memory, challenge: Option<&str>) -> (String, String) {
        let (id, code, record) = issue(new_grant(challenge), 1_000).unwrap();
        block_on(store.create(&id, &record)).unwrap();
        (id, code)
    }

    fn redeem_at(
        store: &Memory,
        code: &str,
        client: &str,
        verifier: Option<&str>,
        now: u64,
    ) -> Result<Granted, Refusal> {
        block_on(redeem(
            store,
            code,
            client,
            "https://app.example/cb",
            verifier,
            now,
            DAY,
        ))
    }

    #[test]
    fn rfc_7636_appendix_b_s256_example() {
        assert_eq!(
            s256_challenge(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_code_verifier(VERIFIER));
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
        ));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c="
        ));
        assert!(!is_s256_challenge(&"!".repeat(43)));
        assert!(!is_code_verifier("short"));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn a_code_is_redeemed_once_and_the_store_keeps_no_secret() {
        let store = Memory::default();
        let challenge = s256_challenge(VERIFIER);
        let (id, code) = issued(&store, Some(&challenge));
        let stored = serde_json::to_string(&store.get(&id).unwrap()).unwrap();
        let secret = code.split_once('.').unwrap().1;
        assert!(!stored.contains(secret), "{stored}");
        let granted = redeem_at(&store, &code, "web", Some(VERIFIER), 1_030).unwrap();
        assert_eq!(granted.grant.user_id, "u-1");
        assert_eq!(granted.grant.expires_at, 1_030 + DAY.as_secs());
        assert!(granted.refresh_token.starts_with(&format!("{id}.1.")));
        assert!(
            !serde_json::to_string(&store.get(&id).unwrap())
                .unwrap()
                .contains(granted.refresh_token.rsplit('.').next().unwrap())
        );
        // Again: a replay, which revokes the grant and so the refresh token just handed out.
        assert_eq!(
            redeem_at(&store, &code, "web", Some(VERIFIER), 1_031),
            Err(Refusal::Replayed)
        );
        assert!(matches!(
            store.get(&id).unwrap().phase,
            GrantPhase::Revoked { .. }
        ));
        assert_eq!(
            block_on(refresh(&store, &granted.refresh_token, "web", 1_032)).unwrap_err(),
            Refusal::Revoked
        );
    }

    #[test]
    fn codes_expire_after_sixty_seconds() {
        let store = Memory::default();
        let (_, code) = issued(&store, None);
        assert_eq!(
            redeem_at(&store, &code, "web", None, 1_060),
            Err(Refusal::Expired)
        );
        let (_, code) = issued(&store, None);
        assert!(redeem_at(&store, &code, "web", None, 1_059).is_ok());
        assert!(CODE_LIFETIME <= Duration::from_secs(60));
    }

    #[test]
    fn another_clients_code_or_redirect_or_verifier_is_refused_and_leaves_the_grant() {
        let store = Memory::default();
        let challenge = s256_challenge(VERIFIER);
        let (id, code) = issued(&store, Some(&challenge));
        assert_eq!(
            redeem_at(&store, &code, "attacker", Some(VERIFIER), 1_001),
            Err(Refusal::WrongClient)
        );
        assert_eq!(
            block_on(redeem(
                &store,
                &code,
                "web",
                "https://app.example/cb/",
                Some(VERIFIER),
                1_001,
                DAY
            )),
            Err(Refusal::WrongRedirectUri)
        );
        let other = "x".repeat(43);
        for v in [None, Some(other.as_str()), Some("bad")] {
            assert_eq!(
                redeem_at(&store, &code, "web", v, 1_001),
                Err(Refusal::Pkce)
            );
        }
        assert!(matches!(
            store.get(&id).unwrap().phase,
            GrantPhase::Issued { .. }
        ));
        // Forged secrets and shapes are unknown.
        for forged in [
            format!("{id}.AAAA"),
            id.to_string(),
            "nope".to_owned(),
            format!("{}.x", "g".repeat(32)),
        ] {
            assert_eq!(
                redeem_at(&store, &forged, "web", Some(VERIFIER), 1_001),
                Err(Refusal::Unknown)
            );
        }
        assert!(redeem_at(&store, &code, "web", Some(VERIFIER), 1_001).is_ok());
    }

    #[test]
    fn a_verifier_for_a_code_issued_without_challenge_is_a_downgrade() {
        let store = Memory::default();
        let (_, code) = issued(&store, None);
        assert_eq!(
            redeem_at(&store, &code, "web", Some(VERIFIER), 1_001),
            Err(Refusal::Pkce)
        );
    }

    #[test]
    fn refresh_rotates_and_reuse_of_a_rotated_token_revokes_the_family() {
        let store = Memory::default();
        let (id, code) = issued(&store, None);
        let first = redeem_at(&store, &code, "web", None, 1_001).unwrap();
        let second = block_on(refresh(&store, &first.refresh_token, "web", 1_100)).unwrap();
        assert!(second.refresh_token.starts_with(&format!("{id}.2.")));
        assert_eq!(second.grant.scope, "openid");
        let third = block_on(refresh(&store, &second.refresh_token, "web", 1_200)).unwrap();
        // Another client cannot use it, and that does not end the family.
        assert_eq!(
            block_on(refresh(&store, &third.refresh_token, "other", 1_201)).unwrap_err(),
            Refusal::WrongClient
        );
        // A forged secret at the current generation is refused without ending the family.
        let forged = format!("{id}.3.{}", "A".repeat(43));
        assert_eq!(
            block_on(refresh(&store, &forged, "web", 1_202)).unwrap_err(),
            Refusal::Unknown
        );
        // The first token again: the family ends, the current token with it.
        assert_eq!(
            block_on(refresh(&store, &first.refresh_token, "web", 1_300)).unwrap_err(),
            Refusal::Replayed
        );
        assert_eq!(
            block_on(refresh(&store, &third.refresh_token, "web", 1_301)).unwrap_err(),
            Refusal::Revoked
        );
    }

    #[test]
    fn a_client_revokes_its_current_refresh_token_and_the_family_ends() {
        let store = Memory::default();
        let (_, code) = issued(&store, None);
        let first = redeem_at(&store, &code, "web", None, 1_030).unwrap();
        let second = block_on(refresh(&store, &first.refresh_token, "web", 1_100)).unwrap();
        // Another client, a rotated token, and garbage change nothing.
        assert_eq!(
            block_on(revoke_refresh(&store, &second.refresh_token, "other")).unwrap(),
            RefreshRevocation::WrongClient
        );
        for t in [first.refresh_token.as_str(), "x", "a.b.c"] {
            assert_eq!(
                block_on(revoke_refresh(&store, t, "web")).unwrap(),
                RefreshRevocation::NotFound
            );
        }
        assert!(block_on(refresh(&store, &second.refresh_token, "web", 1_101)).is_ok());
        let third = block_on(refresh(&store, &second.refresh_token, "web", 1_102));
        assert!(third.is_err(), "the rotated token ended the family");
        // A fresh sign-in: its own client revokes it, and its refresh token stops working.
        let (_, code) = issued(&store, None);
        let granted = redeem_at(&store, &code, "web", None, 1_031).unwrap();
        assert_eq!(
            block_on(revoke_refresh(&store, &granted.refresh_token, "web")).unwrap(),
            RefreshRevocation::Revoked
        );
        assert_eq!(
            block_on(refresh(&store, &granted.refresh_token, "web", 1_200)).unwrap_err(),
            Refusal::Revoked
        );
    }

    #[test]
    fn refresh_tokens_end_with_the_grant() {
        let store = Memory::default();
        let (id, code) = issued(&store, None);
        let first = redeem_at(&store, &code, "web", None, 1_001).unwrap();
        let end = 1_001 + DAY.as_secs();
        assert_eq!(
            block_on(refresh(&store, &first.refresh_token, "web", end)).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(block_on(store.sweep(end)).unwrap(), 1);
        assert!(store.get(&id).is_none());
        assert_eq!(
            block_on(refresh(&store, &first.refresh_token, "web", end)).unwrap_err(),
            Refusal::Unknown
        );
    }

    #[test]
    fn of_two_racing_redemptions_one_wins_and_the_other_revokes() {
        let store = Memory::default();
        let (id, code) = issued(&store, None);
        // Another replica redeems between this one's read and its write.
        let racer_code = code.clone();
        *store.before_replace.lock().unwrap() = Some(Box::new(move |s: &Memory| {
            let won = redeem_at(s, &racer_code, "web", None, 1_002);
            assert!(won.is_ok());
        }));
        assert_eq!(
            redeem_at(&store, &code, "web", None, 1_002),
            Err(Refusal::Replayed)
        );
        assert!(matches!(
            store.get(&id).unwrap().phase,
            GrantPhase::Revoked { .. }
        ));
    }

    #[test]
    fn of_two_racing_refreshes_one_rotates_and_the_other_ends_the_family() {
        let store = Memory::default();
        let (id, code) = issued(&store, None);
        let first = redeem_at(&store, &code, "web", None, 1_001).unwrap();
        let token = first.refresh_token.clone();
        *store.before_replace.lock().unwrap() = Some(Box::new(move |s: &Memory| {
            assert!(block_on(refresh(s, &token, "web", 1_002)).is_ok());
        }));
        assert_eq!(
            block_on(refresh(&store, &first.refresh_token, "web", 1_002)).unwrap_err(),
            Refusal::Replayed
        );
        assert!(matches!(
            store.get(&id).unwrap().phase,
            GrantPhase::Revoked { .. }
        ));
    }

    #[test]
    fn revoke_ends_a_grant_and_tolerates_a_gone_one() {
        let store = Memory::default();
        let (id, code) = issued(&store, None);
        let first = redeem_at(&store, &code, "web", None, 1_001).unwrap();
        block_on(revoke(&store, &id, "user disabled")).unwrap();
        assert_eq!(
            block_on(refresh(&store, &first.refresh_token, "web", 1_002)).unwrap_err(),
            Refusal::Revoked
        );
        block_on(revoke(&store, &"0".repeat(32), "x")).unwrap();
        assert_eq!(grant_id_of(&first.refresh_token), Some(id.as_str()));
        assert_eq!(grant_id_of("zz.1.x"), None);
        // A record put back by hand stays readable (the stored form is stable JSON).
        let back: GrantRecord =
            serde_json::from_str(&serde_json::to_string(&store.get(&id).unwrap()).unwrap())
                .unwrap();
        store.put("copy", back);
    }
}
