//! Signing keys over their life, `next` → `active` → `retired` → gone, with the time passed in.
//!
//! Rules: a key is published at least the longest verifier cache before it signs,
//! so every verifier holds it before it sees a token signed with it, whether it honours the
//! JWKS `max-age` or keeps its own period (APK's router: 2 h, no refetch on an unknown kid);
//! a retired key stays published for the longest token lifetime it may have signed plus the
//! clock skew, so no token outlives its key. Exactly one key is active.
//!
//! The ring is the stored form: a cluster keeps it in a Secret and standalone mode in its
//! state directory; both call [`KeyRing::advance`] on a timer and write back what changed.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{CoreError, KeyMaterial, KeySet, SigningAlgorithm, SigningKey, token::unix_seconds};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet.
    Next,
    /// Signing.
    Active,
    /// Published, no longer signing.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// How key ids are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KidStrategy {
    /// The RFC 7638 JWK thumbprint (SHA-256): every key its own id; rotation is possible.
    Thumbprint,
    /// One fixed id for verifiers that pin it (APK's `gateway_certificate_alias`). Two keys
    /// cannot share an id, so automatic rotation is off.
    Static(String),
}

/// The schedule and the kind of keys to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    pub alg: SigningAlgorithm,
    pub rsa_bits: u32,
    pub kid: KidStrategy,
    /// How long a key signs before it is replaced.
    pub rotation_period: Duration,
    /// The longest any verifier keeps a copy of the key set, whatever the JWKS `max-age` says
    /// (APK's router: 2 h): a next key is published this long before it signs.
    pub verifier_cache: Duration,
    /// Allowed clock difference between Latchkey and verifiers.
    pub clock_skew: Duration,
    /// The longest lifetime of a token issued now (server default and every client's).
    pub max_token_lifetime: Duration,
}

impl RotationPolicy {
    /// Rotation needs distinct key ids.
    pub fn rotates(&self) -> bool {
        self.kid == KidStrategy::Thumbprint
    }

    /// This policy, with retired keys kept for at least `longest` (the longest lifetime of a
    /// token issued now: the server default or any client's, whichever is longer).
    pub fn covering(&self, longest: Duration) -> RotationPolicy {
        RotationPolicy {
            max_token_lifetime: self.max_token_lifetime.max(longest),
            ..self.clone()
        }
    }

    /// How long a new key is published before it may sign.
    pub fn lead_time(&self) -> Duration {
        self.verifier_cache
    }
}

/// What `advance` or `revoke` changed, for logs, Events and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    Created { kid: String, state: KeyState },
    Activated { kid: String },
    Retired { kid: String },
    Removed { kid: String },
    Revoked { kid: String },
}

/// What a revocation means for verifiers that cache the key set, and what to do: for the
/// Warning Event in a cluster and the warning of `latchkey keys revoke`.
pub fn revocation_note(kid: &str) -> String {
    format!(
        "key {kid} revoked: its tokens no longer verify. Its replacement signs at once: \
         verifiers that cached the JWKS before it was published reject its tokens until they \
         refetch (APK's router keeps the JWKS for up to 2h and does not refetch on an unknown \
         kid). To make APK refetch now, restart its router pods, or change the TokenIssuer's \
         signatureValidation (e.g. to the new key's certificate from /oauth2/certificate, and \
         back to the JWKS later); reapplying it unchanged does nothing"
    )
}

/// One stored key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub state: KeyState,
    /// Unix seconds: made (and published).
    pub created_at: u64,
    /// Unix seconds: started signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<u64>,
    /// Unix seconds: stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
    /// Unix seconds: the earliest a next key may sign (made plus the longest lead time in
    /// force since). Stored so that readers with other flags (`latchkey keys list`) see the
    /// writer's lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signs_from: Option<u64>,
    /// The longest token lifetime in force while this key signed, in seconds: how long it
    /// stays published once retired (plus the skew).
    #[serde(default)]
    pub max_token_lifetime: u64,
    /// PKCS#8 PEM.
    pub private_key_pem: String,
    /// A self-signed X.509 certificate of the key (PEM), for verifiers that take certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("retired_at", &self.retired_at)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// Unix seconds from which this key, published as next, may sign: its stored time, or
    /// for a key stored without one, made plus the lead time of `policy`.
    pub fn ready_at(&self, policy: &RotationPolicy) -> u64 {
        self.signs_from
            .unwrap_or(self.created_at + policy.lead_time().as_secs())
    }

    /// Unix seconds after which a retired key is no longer published.
    pub fn remove_at(&self, skew: Duration) -> Option<u64> {
        self.retired_at
            .map(|t| t + self.max_token_lifetime + skew.as_secs())
    }

    fn signing_key(&self) -> Result<SigningKey, CoreError> {
        let material = KeyMaterial::from_pem(self.alg, &self.private_key_pem)
            .map_err(|e| CoreError::KeySet(format!("key {:?}: {e}", self.kid)))?;
        let key = SigningKey::new(self.kid.clone(), &material)?;
        // Every algorithm carries its certificate (x5c, x5t#S256, /oauth2/certificate).
        match &self.certificate_pem {
            Some(cert) => {
                let der = pem::parse(cert)
                    .map_err(|e| CoreError::KeySet(format!("certificate of {:?}: {e}", self.kid)))?
                    .into_contents();
                key.with_certificate(der)
            }
            None => Ok(key),
        }
    }
}

/// All stored keys, plus a pending rotation request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRing {
    pub keys: Vec<KeyRecord>,
    /// Unix seconds of a rotation asked for and not done yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_requested_at: Option<u64>,
}

/// The key id of `material` under `strategy`: its RFC 7638 thumbprint, or the static id. The
/// one rule for every key Latchkey names, made here or imported.
pub fn kid_for(material: &KeyMaterial, strategy: &KidStrategy) -> Result<String, CoreError> {
    match strategy {
        KidStrategy::Static(kid) => Ok(kid.clone()),
        KidStrategy::Thumbprint => SigningKey::new("thumbprint", material)?.thumbprint(),
    }
}

/// Make a key record of the policy's kind.
fn new_record(policy: &RotationPolicy, state: KeyState, now: u64) -> Result<KeyRecord, CoreError> {
    let material = KeyMaterial::generate(policy.alg, policy.rsa_bits)?;
    let kid = kid_for(&material, &policy.kid)?;
    // A static key may sign for years; a rotating one for its period plus its retirement.
    let validity = match policy.kid {
        KidStrategy::Static(_) => Duration::from_secs(10 * 365 * 24 * 3600),
        KidStrategy::Thumbprint => policy.rotation_period * 2 + Duration::from_secs(30 * 24 * 3600),
    };
    let certificate_pem = Some(crate::certificate::self_signed(
        &material, &kid, now, validity,
    )?);
    Ok(KeyRecord {
        kid,
        alg: policy.alg,
        state,
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
        signs_from: (state == KeyState::Next).then(|| now + policy.lead_time().as_secs()),
        max_token_lifetime: policy.max_token_lifetime.as_secs(),
        private_key_pem: material.to_pem(),
        certificate_pem,
    })
}

impl KeyRing {
    /// A ring with one new active key.
    pub fn bootstrap(policy: &RotationPolicy, now: SystemTime) -> Result<KeyRing, CoreError> {
        Ok(KeyRing {
            keys: vec![new_record(policy, KeyState::Active, unix_seconds(now))?],
            rotation_requested_at: None,
        })
    }

    /// A ring of one existing key, active from `now` (for keys made before rings existed).
    pub fn import(
        kid: &str,
        material: &KeyMaterial,
        now: SystemTime,
    ) -> Result<KeyRing, CoreError> {
        let now = unix_seconds(now);
        let validity = Duration::from_secs(10 * 365 * 24 * 3600);
        Ok(KeyRing {
            keys: vec![KeyRecord {
                kid: kid.to_owned(),
                alg: material.alg(),
                state: KeyState::Active,
                created_at: now,
                activated_at: Some(now),
                retired_at: None,
                signs_from: None,
                max_token_lifetime: 0,
                private_key_pem: material.to_pem(),
                certificate_pem: Some(crate::certificate::self_signed(
                    material, kid, now, validity,
                )?),
            }],
            rotation_requested_at: None,
        })
    }

    pub fn from_json(bytes: &[u8]) -> Result<KeyRing, CoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| CoreError::KeySet(format!("stored key ring is not valid: {e}")))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A ring is plain strings and numbers: encoding cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn active(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    pub fn next(&self) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Next)
    }

    fn index_of(&self, state: KeyState) -> Option<usize> {
        self.keys.iter().position(|k| k.state == state)
    }

    /// When the active key is due to be replaced (Unix seconds), if rotation is on.
    pub fn next_rotation_at(&self, policy: &RotationPolicy) -> Option<u64> {
        if !policy.rotates() {
            return None;
        }
        let active = self.active()?;
        Some(active.activated_at.unwrap_or(active.created_at) + policy.rotation_period.as_secs())
    }

    /// When the next key starts signing (Unix seconds), if one is published. The time stored
    /// with it is the writer's (a next key is made a lead time before the active one is due, or
    /// at once when a rotation is asked for), so a reader with other flags sees the same; for
    /// a key stored without one, when the active key is due under `policy`, but never before
    /// the key has been published for the lead time.
    pub fn next_activation_at(&self, policy: &RotationPolicy) -> Option<u64> {
        if !policy.rotates() {
            return None;
        }
        let next = self.next()?;
        if let Some(t) = next.signs_from {
            return Some(t);
        }
        let active = self.active()?;
        let due_now = self.rotation_requested_at.is_some() || active.alg != policy.alg;
        let due_at = if due_now {
            0
        } else {
            active.activated_at.unwrap_or(active.created_at) + policy.rotation_period.as_secs()
        };
        Some(next.ready_at(policy).max(due_at))
    }

    /// Keys of `earlier` that this ring no longer has although `advance` did not remove them
    /// (`events` of the pass that made it): revoked by another writer, such as
    /// `latchkey keys revoke` on a standalone state directory.
    pub fn revoked_since(&self, earlier: &KeyRing, events: &[KeyEvent]) -> Vec<String> {
        earlier
            .keys
            .iter()
            .map(|k| &k.kid)
            .filter(|kid| self.keys.iter().all(|k| &k.kid != *kid))
            .filter(|kid| {
                !events
                    .iter()
                    .any(|e| matches!(e, KeyEvent::Removed { kid: r } if r == *kid))
            })
            .cloned()
            .collect()
    }

    /// Ask for a rotation now: a next key is made at once and signs after its lead time.
    pub fn request_rotation(
        &mut self,
        policy: &RotationPolicy,
        now: SystemTime,
    ) -> Result<(), CoreError> {
        if !policy.rotates() {
            return Err(CoreError::KeySet(
                "keys use a static kid: rotation needs --kid-strategy thumbprint".into(),
            ));
        }
        self.rotation_requested_at.get_or_insert(unix_seconds(now));
        Ok(())
    }

    /// Remove a key at once (it is compromised): tokens it signed stop verifying, by design.
    /// If it was the active key, the next one (or, without one, a new one) signs from now.
    pub fn revoke(
        &mut self,
        kid: &str,
        policy: &RotationPolicy,
        now: SystemTime,
    ) -> Result<Vec<KeyEvent>, CoreError> {
        let Some(i) = self.keys.iter().position(|k| k.kid == kid) else {
            return Err(CoreError::KeySet(format!("no key {kid:?}")));
        };
        // With a static kid the replacement takes the same id: verifiers holding the old key
        // keep failing until they refetch, which is what revocation is for.
        self.keys.remove(i);
        let mut events = vec![KeyEvent::Revoked {
            kid: kid.to_owned(),
        }];
        events.extend(self.advance(policy, now)?);
        Ok(events)
    }

    /// Bring the ring up to date at `now`. Idempotent: calling it again at the same time
    /// changes nothing.
    pub fn advance(
        &mut self,
        policy: &RotationPolicy,
        now: SystemTime,
    ) -> Result<Vec<KeyEvent>, CoreError> {
        let now = unix_seconds(now);
        let mut events = Vec::new();
        let lifetime = policy.max_token_lifetime.as_secs();

        // What the active key may have signed bounds how long it must stay published.
        if let Some(i) = self.index_of(KeyState::Active) {
            let k = &mut self.keys[i];
            k.max_token_lifetime = k.max_token_lifetime.max(lifetime);
        }

        // Retired keys past their time go.
        let skew = policy.clock_skew;
        self.keys.retain(|k| {
            let gone = k.state == KeyState::Retired && k.remove_at(skew).is_some_and(|t| now >= t);
            if gone {
                events.push(KeyEvent::Removed { kid: k.kid.clone() });
            }
            !gone
        });

        // A next key of another kind than the policy asks for never signed: drop it.
        if let Some(i) = self.index_of(KeyState::Next) {
            let k = &self.keys[i];
            if !policy.rotates() || k.alg != policy.alg {
                events.push(KeyEvent::Removed { kid: k.kid.clone() });
                self.keys.remove(i);
            }
        }

        // No active key (first start, or the active one was revoked): the next one signs now,
        // or a new one if there is none. The only case where a key signs unannounced.
        if self.index_of(KeyState::Active).is_none() {
            if let Some(i) = self.index_of(KeyState::Next) {
                let k = &mut self.keys[i];
                k.state = KeyState::Active;
                k.activated_at = Some(now);
                k.max_token_lifetime = k.max_token_lifetime.max(lifetime);
                events.push(KeyEvent::Activated { kid: k.kid.clone() });
            } else {
                let k = new_record(policy, KeyState::Active, now)?;
                events.push(KeyEvent::Created {
                    kid: k.kid.clone(),
                    state: KeyState::Active,
                });
                events.push(KeyEvent::Activated { kid: k.kid.clone() });
                self.keys.push(k);
            }
            self.rotation_requested_at = None;
        }
        if !policy.rotates() {
            return Ok(events);
        }

        // A lead raised since the next key was published counts (a shorter one does not
        // shorten it); stored, so every reader sees when it signs.
        if let Some(i) = self.index_of(KeyState::Next) {
            let k = &mut self.keys[i];
            let ready = k.created_at + policy.lead_time().as_secs();
            if k.signs_from.is_none_or(|t| t < ready) {
                k.signs_from = Some(ready);
            }
        }

        let Some(ai) = self.index_of(KeyState::Active) else {
            return Ok(events);
        };
        let active = &self.keys[ai];
        let due_at =
            active.activated_at.unwrap_or(active.created_at) + policy.rotation_period.as_secs();
        let due = now >= due_at || active.alg != policy.alg || self.rotation_requested_at.is_some();
        // Publish the next key early enough that it can sign when the active one is due: made
        // a lead time before then, its stored time is the due time.
        let prepare = due || now + policy.lead_time().as_secs() >= due_at;
        if prepare && self.index_of(KeyState::Next).is_none() {
            let k = new_record(policy, KeyState::Next, now)?;
            events.push(KeyEvent::Created {
                kid: k.kid.clone(),
                state: KeyState::Next,
            });
            self.keys.push(k);
        }
        if let Some(ni) = self.index_of(KeyState::Next)
            && due
            && now >= self.keys[ni].ready_at(policy)
        {
            let old = &mut self.keys[ai];
            old.state = KeyState::Retired;
            old.retired_at = Some(now);
            events.push(KeyEvent::Retired {
                kid: old.kid.clone(),
            });
            let new = &mut self.keys[ni];
            new.state = KeyState::Active;
            new.activated_at = Some(now);
            new.max_token_lifetime = new.max_token_lifetime.max(lifetime);
            events.push(KeyEvent::Activated {
                kid: new.kid.clone(),
            });
            self.rotation_requested_at = None;
        }
        Ok(events)
    }

    /// The key set to serve: exactly one active key, every key published.
    pub fn key_set(&self) -> Result<KeySet, CoreError> {
        let mut active = None;
        let mut published = Vec::with_capacity(self.keys.len());
        for record in &self.keys {
            let key = std::sync::Arc::new(record.signing_key()?);
            if record.state == KeyState::Active {
                if active.is_some() {
                    return Err(CoreError::KeySet("more than one active key".into()));
                }
                active = Some(key.clone());
            }
            published.push(key);
        }
        let active = active.ok_or_else(|| CoreError::KeySet("no active key".into()))?;
        KeySet::new(active, published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::time::UNIX_EPOCH;

    /// Two 5-minute `max-age`s: the lead the binary derives by default.
    const LEAD: u64 = 600;
    const PERIOD: u64 = 30 * 24 * 3600;
    const LIFETIME: u64 = 3600;
    const SKEW: u64 = 60;

    fn policy() -> RotationPolicy {
        RotationPolicy {
            alg: SigningAlgorithm::EdDSA,
            rsa_bits: 2048,
            kid: KidStrategy::Thumbprint,
            rotation_period: Duration::from_secs(PERIOD),
            verifier_cache: Duration::from_secs(LEAD),
            clock_skew: Duration::from_secs(SKEW),
            max_token_lifetime: Duration::from_secs(LIFETIME),
        }
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn states(r: &KeyRing) -> Vec<KeyState> {
        r.keys.iter().map(|k| k.state).collect()
    }

    const T0: u64 = 1_000_000;

    #[test]
    fn bootstrap_makes_one_active_key_with_a_thumbprint_kid_and_certificate() {
        let r = KeyRing::bootstrap(&policy(), at(T0)).unwrap();
        assert_eq!(states(&r), [KeyState::Active]);
        let k = &r.keys[0];
        assert_eq!(k.kid.len(), 43, "base64url SHA-256");
        assert!(
            k.certificate_pem
                .as_deref()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        assert_eq!(KeyRing::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.key_set().unwrap().active().kid(), k.kid);
        assert!(!format!("{r:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_full_rotation_cycle_keeps_both_invariants() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        let first = r.keys[0].kid.clone();
        // Nothing before the lead time.
        assert!(
            r.advance(&p, at(T0 + PERIOD - LEAD - 1))
                .unwrap()
                .is_empty()
        );
        // Next key published a lead time before the active one is due.
        let ev = r.advance(&p, at(T0 + PERIOD - LEAD)).unwrap();
        assert!(
            matches!(
                &ev[..],
                [KeyEvent::Created {
                    state: KeyState::Next,
                    ..
                }]
            ),
            "{ev:?}"
        );
        assert_eq!(states(&r), [KeyState::Active, KeyState::Next]);
        let second = r.next().unwrap().kid.clone();
        // Not a second early.
        assert!(r.advance(&p, at(T0 + PERIOD - 1)).unwrap().is_empty());
        let ev = r.advance(&p, at(T0 + PERIOD)).unwrap();
        assert_eq!(
            ev,
            [
                KeyEvent::Retired { kid: first.clone() },
                KeyEvent::Activated {
                    kid: second.clone()
                }
            ]
        );
        assert_eq!(states(&r), [KeyState::Retired, KeyState::Active]);
        // Publish-before-sign: the new key was published a full lead time before signing.
        let k = r.active().unwrap();
        assert!(k.activated_at.unwrap() >= k.created_at + LEAD);
        // Keep-after-retire: the old key stays for lifetime + skew, then goes.
        assert!(
            r.advance(&p, at(T0 + PERIOD + LIFETIME + SKEW - 1))
                .unwrap()
                .is_empty()
        );
        assert_eq!(r.keys.len(), 2);
        let ev = r.advance(&p, at(T0 + PERIOD + LIFETIME + SKEW)).unwrap();
        assert_eq!(ev, [KeyEvent::Removed { kid: first }]);
        assert_eq!(states(&r), [KeyState::Active]);
        // Idempotent.
        assert!(
            r.advance(&p, at(T0 + PERIOD + LIFETIME + SKEW))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_retired_key_stays_for_the_longest_lifetime_it_signed_under() {
        let mut p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        // A client with 24 h tokens appears, then goes, while the first key signs.
        p.max_token_lifetime = Duration::from_secs(24 * 3600);
        r.advance(&p, at(T0 + 10)).unwrap();
        p.max_token_lifetime = Duration::from_secs(LIFETIME);
        r.advance(&p, at(T0 + PERIOD - LEAD)).unwrap();
        r.advance(&p, at(T0 + PERIOD)).unwrap();
        let retired = r
            .keys
            .iter()
            .find(|k| k.state == KeyState::Retired)
            .unwrap();
        assert_eq!(
            retired.remove_at(p.clock_skew),
            Some(T0 + PERIOD + 24 * 3600 + SKEW)
        );
    }

    #[test]
    fn a_requested_rotation_waits_for_the_lead_time() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        r.request_rotation(&p, at(T0 + 5)).unwrap();
        let ev = r.advance(&p, at(T0 + 5)).unwrap();
        assert!(matches!(
            &ev[..],
            [KeyEvent::Created {
                state: KeyState::Next,
                ..
            }]
        ));
        assert!(r.advance(&p, at(T0 + 5 + LEAD - 1)).unwrap().is_empty());
        let ev = r.advance(&p, at(T0 + 5 + LEAD)).unwrap();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(r.rotation_requested_at, None);
        // The new active key's period starts when it activates.
        assert_eq!(r.next_rotation_at(&p), Some(T0 + 5 + LEAD + PERIOD));
    }

    #[test]
    fn an_algorithm_change_is_a_rotation() {
        let mut p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        p.alg = SigningAlgorithm::ES256;
        r.advance(&p, at(T0 + 1)).unwrap();
        assert_eq!(r.next().unwrap().alg, SigningAlgorithm::ES256);
        assert_eq!(
            r.active().unwrap().alg,
            SigningAlgorithm::EdDSA,
            "still signing with the old key"
        );
        r.advance(&p, at(T0 + 1 + LEAD)).unwrap();
        assert_eq!(r.active().unwrap().alg, SigningAlgorithm::ES256);
        // A next key of the old algorithm is replaced, not promoted.
        let mut p2 = policy();
        let mut r2 = KeyRing::bootstrap(&p2, at(T0)).unwrap();
        r2.request_rotation(&p2, at(T0)).unwrap();
        r2.advance(&p2, at(T0)).unwrap();
        p2.alg = SigningAlgorithm::ES256;
        r2.advance(&p2, at(T0 + 1)).unwrap();
        assert_eq!(r2.next().unwrap().alg, SigningAlgorithm::ES256);
        assert_eq!(r2.next().unwrap().created_at, T0 + 1);
    }

    #[test]
    fn revoking_the_active_key_promotes_the_next_at_once() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        r.request_rotation(&p, at(T0)).unwrap();
        r.advance(&p, at(T0)).unwrap();
        let (old, next) = (
            r.active().unwrap().kid.clone(),
            r.next().unwrap().kid.clone(),
        );
        let ev = r.revoke(&old, &p, at(T0 + 1)).unwrap();
        assert_eq!(ev[0], KeyEvent::Revoked { kid: old.clone() });
        assert_eq!(r.active().unwrap().kid, next);
        assert!(r.keys.iter().all(|k| k.kid != old));
        // Without a next key, a new one signs at once.
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        let old = r.active().unwrap().kid.clone();
        r.revoke(&old, &p, at(T0 + 1)).unwrap();
        assert_ne!(r.active().unwrap().kid, old);
        assert_eq!(r.keys.len(), 1);
        assert!(r.revoke("nope", &p, at(T0 + 2)).is_err());
    }

    #[test]
    fn static_kids_never_rotate() {
        let mut p = policy();
        p.kid = KidStrategy::Static("gateway_certificate_alias".into());
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        assert_eq!(r.keys[0].kid, "gateway_certificate_alias");
        assert!(r.advance(&p, at(T0 + 10 * PERIOD)).unwrap().is_empty());
        assert!(r.request_rotation(&p, at(T0)).is_err());
        assert_eq!(r.next_rotation_at(&p), None);
    }

    #[test]
    fn exactly_one_active_key_whatever_the_order_of_events() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        let mut t = T0;
        for step in 0..200u64 {
            t += 37 * 3600 + step;
            if step % 7 == 0 {
                let _ = r.request_rotation(&p, at(t));
            }
            r.advance(&p, at(t)).unwrap();
            assert_eq!(
                r.keys
                    .iter()
                    .filter(|k| k.state == KeyState::Active)
                    .count(),
                1
            );
            assert!(r.keys.iter().filter(|k| k.state == KeyState::Next).count() <= 1);
            let a = r.active().unwrap();
            if a.created_at != T0 {
                assert!(
                    a.activated_at.unwrap() >= a.created_at + LEAD,
                    "signed before published"
                );
            }
        }
    }

    #[test]
    fn a_long_verifier_cache_publishes_the_next_key_that_much_earlier() {
        // APK's router keeps the JWKS 2 h; the chart asks for 2 h 10 min.
        let lead = 2 * 3600 + 600;
        let mut p = policy();
        p.verifier_cache = Duration::from_secs(lead);
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        assert_eq!(r.next_activation_at(&p), None, "no next key yet");
        assert!(
            r.advance(&p, at(T0 + PERIOD - lead - 1))
                .unwrap()
                .is_empty()
        );
        r.advance(&p, at(T0 + PERIOD - lead)).unwrap();
        let next = r.next().unwrap().clone();
        assert_eq!(next.signs_from, Some(T0 + PERIOD));
        assert_eq!(r.next_activation_at(&p), Some(T0 + PERIOD));
        assert!(r.advance(&p, at(T0 + PERIOD - 1)).unwrap().is_empty());
        r.advance(&p, at(T0 + PERIOD)).unwrap();
        assert_eq!(r.active().unwrap().kid, next.kid);
        assert_eq!(r.next_activation_at(&p), None);
    }

    #[test]
    fn a_requested_rotation_under_a_long_cache_signs_a_full_lead_after_publishing() {
        let lead = 2 * 3600 + 600;
        let mut p = policy();
        p.verifier_cache = Duration::from_secs(lead);
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        r.request_rotation(&p, at(T0 + 7)).unwrap();
        r.advance(&p, at(T0 + 7)).unwrap();
        assert_eq!(r.next_activation_at(&p), Some(T0 + 7 + lead));
        assert!(r.advance(&p, at(T0 + 7 + lead - 1)).unwrap().is_empty());
        assert_eq!(r.advance(&p, at(T0 + 7 + lead)).unwrap().len(), 2);
    }

    #[test]
    fn the_stored_activation_time_holds_for_readers_with_a_shorter_lead() {
        // The server publishes with a 2 h 10 min lead; `keys list` run with default flags
        // (a 10 min lead) still shows, and a leader with those flags still waits, the stored time.
        let lead = 2 * 3600 + 600;
        let mut long = policy();
        long.verifier_cache = Duration::from_secs(lead);
        let mut r = KeyRing::bootstrap(&long, at(T0)).unwrap();
        r.request_rotation(&long, at(T0)).unwrap();
        r.advance(&long, at(T0)).unwrap();
        let short = policy();
        assert_eq!(r.next_activation_at(&short), Some(T0 + lead));
        assert!(r.advance(&short, at(T0 + LEAD)).unwrap().is_empty());
        // A lead raised after the key was made counts too, and is stored for every reader.
        let mut r = KeyRing::bootstrap(&short, at(T0)).unwrap();
        r.request_rotation(&short, at(T0)).unwrap();
        r.advance(&short, at(T0)).unwrap();
        assert_eq!(r.next_activation_at(&short), Some(T0 + LEAD));
        assert_eq!(r.next_activation_at(&long), Some(T0 + LEAD), "as stored");
        assert!(r.advance(&long, at(T0 + LEAD)).unwrap().is_empty());
        assert_eq!(r.next_activation_at(&short), Some(T0 + lead));
        assert!(r.advance(&short, at(T0 + LEAD + 1)).unwrap().is_empty());
        // Rings stored before the field existed read as made plus the lead.
        let mut old = r.clone();
        old.keys.iter_mut().for_each(|k| k.signs_from = None);
        let json = String::from_utf8(old.to_json()).unwrap();
        assert!(!json.contains("signsFrom"));
        let old = KeyRing::from_json(json.as_bytes()).unwrap();
        assert_eq!(old.next_activation_at(&short), Some(T0 + LEAD));
    }

    #[test]
    fn the_next_activation_waits_for_the_active_keys_period() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        r.advance(&p, at(T0 + PERIOD - LEAD - 100)).unwrap();
        assert!(r.next().is_none());
        r.advance(&p, at(T0 + PERIOD - LEAD)).unwrap();
        assert_eq!(r.next_activation_at(&p), Some(T0 + PERIOD));
        // A reader with other flags (another algorithm, period or lead) sees the stored time.
        let mut other = p.clone();
        other.alg = SigningAlgorithm::ES256;
        other.rotation_period = Duration::from_secs(PERIOD * 2);
        other.verifier_cache = Duration::from_secs(5);
        assert_eq!(r.next_activation_at(&other), Some(T0 + PERIOD));
        // Stored without a time (an older ring): computed from the reader's policy.
        let mut old = r.clone();
        old.keys.iter_mut().for_each(|k| k.signs_from = None);
        assert_eq!(old.next_activation_at(&p), Some(T0 + PERIOD));
        // Static kids never rotate.
        let mut st = p.clone();
        st.kid = KidStrategy::Static("k".into());
        assert_eq!(r.next_activation_at(&st), None);
    }

    #[test]
    fn a_key_gone_without_a_removal_was_revoked_elsewhere() {
        let p = policy();
        let mut r = KeyRing::bootstrap(&p, at(T0)).unwrap();
        r.request_rotation(&p, at(T0)).unwrap();
        r.advance(&p, at(T0)).unwrap();
        r.advance(&p, at(T0 + LEAD)).unwrap();
        let earlier = r.clone();
        let retired = earlier.keys[0].kid.clone();
        // Removed on schedule: not a revocation.
        let mut later = earlier.clone();
        let ev = later.advance(&p, at(T0 + LEAD + LIFETIME + SKEW)).unwrap();
        assert!(later.revoked_since(&earlier, &ev).is_empty());
        // Revoked by another writer: the events of this pass do not name it.
        let mut later = earlier.clone();
        let active = later.active().unwrap().kid.clone();
        later.revoke(&active, &p, at(T0 + LEAD + 1)).unwrap();
        assert_eq!(later.revoked_since(&earlier, &[]), [active]);
        assert!(later.keys.iter().any(|k| k.kid == retired));
    }

    #[test]
    fn rings_need_exactly_one_active_key_to_serve() {
        let mut r = KeyRing::bootstrap(&policy(), at(T0)).unwrap();
        r.keys[0].state = KeyState::Next;
        assert!(r.key_set().is_err());
    }

    #[test]
    fn covering_only_ever_lengthens_the_lifetime() {
        let p = policy();
        assert_eq!(p.covering(Duration::ZERO), p);
        let longer = p.covering(Duration::from_secs(LIFETIME * 3));
        assert_eq!(longer.max_token_lifetime, Duration::from_secs(LIFETIME * 3));
        assert_eq!(longer.rotation_period, p.rotation_period);
    }

    #[test]
    fn kids_follow_the_strategy() {
        let m = KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap();
        let thumb = kid_for(&m, &KidStrategy::Thumbprint).unwrap();
        assert_eq!(
            thumb,
            SigningKey::new("x", &m).unwrap().thumbprint().unwrap()
        );
        assert_eq!(kid_for(&m, &KidStrategy::Static("k".into())).unwrap(), "k");
    }

    #[test]
    fn every_algorithm_carries_x5c_and_x5t_s256() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let mut p = policy();
            p.alg = alg;
            let r = KeyRing::bootstrap(&p, at(T0)).unwrap();
            let set = r.key_set().unwrap();
            let jwks: serde_json::Value = serde_json::from_str(set.jwks_json()).unwrap();
            let jwk = &jwks["keys"][0];
            let x5c = jwk["x5c"][0].as_str().unwrap();
            let der = base64::engine::general_purpose::STANDARD
                .decode(x5c)
                .unwrap();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
            assert_eq!(
                jwk["x5t#S256"],
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
                "{alg}"
            );
            assert!(
                set.active()
                    .certificate_pem()
                    .unwrap()
                    .contains("BEGIN CERTIFICATE")
            );
        }
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let mut r = KeyRing::bootstrap(&policy(), at(T0)).unwrap();
        let other = KeyRing::bootstrap(&policy(), at(T0)).unwrap();
        r.keys[0].certificate_pem = other.keys[0].certificate_pem.clone();
        assert!(r.key_set().is_err());
    }
}
