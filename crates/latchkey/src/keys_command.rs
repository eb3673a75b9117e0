//! `latchkey keys list|rotate|revoke`: on a standalone state directory directly (under its
//! lock), or in a cluster by asking the leader through annotations on the keys Secret and
//! waiting until it has carried the request out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use latchkey_core::{
    key_driver::{self, KeyRequests},
    keyring::{KeyRing, RotationPolicy},
};
use latchkey_operator::key_secret::{
    self as keys, EXTERNAL_ANNOTATION, REVOKE_ANNOTATION, ROTATE_ANNOTATION,
};

use crate::{
    cli::{KeysAction, KeysArgs, KeysTarget, KidStrategyArg},
    error::Error,
    standalone::key_file::KeyFile,
};

fn time(secs: Option<u64>) -> String {
    secs.map_or_else(
        || "-".to_owned(),
        |s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
    )
}

/// A revocation cuts verifiers that cache the key set off the new key: say so where the
/// person who asked for it reads (this command has no log).
fn warn_revoked(kid: &str) {
    eprintln!("warning: {}", latchkey_core::keyring::revocation_note(kid));
}

/// The ring as a table.
pub fn table(ring: &KeyRing, policy: &RotationPolicy) -> String {
    let mut out = format!(
        "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21} {}\n",
        "KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRED", "UNPUBLISHED AFTER"
    );
    for k in &ring.keys {
        out.push_str(&format!(
            "{:<44} {:<6} {:<8} {:<21} {:<21} {:<21} {}\n",
            k.kid,
            k.alg.as_str(),
            k.state.as_str(),
            time(Some(k.created_at)),
            time(k.activated_at),
            time(k.retired_at),
            time(k.remove_at(policy.clock_skew)),
        ));
    }
    match ring.next_rotation_at(policy) {
        Some(t) => out.push_str(&format!("next rotation due: {}\n", time(Some(t)))),
        None => out.push_str("automatic rotation: off (static kid)\n"),
    }
    // The lead time, as the ring was written: verifiers must hold the next key by then.
    if let (Some(next), Some(t)) = (ring.next(), ring.next_activation_at(policy)) {
        let lead = Duration::from_secs(t.saturating_sub(next.created_at));
        out.push_str(&format!(
            "next key {} signs from: {} ({} after it was published)\n",
            next.kid,
            time(Some(t)),
            humantime::format_duration(lead)
        ));
    }
    if ring.rotation_requested_at.is_some() {
        out.push_str("a rotation is in progress\n");
    }
    out
}

pub async fn run(args: KeysArgs) -> Result<(), Error> {
    let target = args.action.target();
    match &target.state_dir {
        Some(dir) => standalone_keys(&args.action, target, dir).await,
        None => cluster_keys(&args.action, target).await,
    }
}

/// Standalone: the request goes through the same key driver pass the server runs.
async fn standalone_keys(
    action: &KeysAction,
    args: &KeysTarget,
    dir: &std::path::Path,
) -> Result<(), Error> {
    let policy = args.keys.policy(KidStrategyArg::Static, &args.timing);
    let store = KeyFile::new(dir, &policy);
    let asked = match action {
        KeysAction::List(_) => {
            let ring = store.read()?.ok_or_else(|| {
                Error::Keys(format!(
                    "no key ring in {} yet: start the server once",
                    dir.display()
                ))
            })?;
            print!("{}", table(&ring, &policy));
            return Ok(());
        }
        KeysAction::Rotate(_) => KeyRequests {
            rotate: true,
            revoke: None,
        },
        KeysAction::Revoke {
            revoke_kid: kid, ..
        } => KeyRequests {
            rotate: false,
            revoke: Some(kid.clone()),
        },
    };
    let pass = key_driver::pass(&store, &policy, asked, SystemTime::now()).await?;
    if let Some(refused) = pass.refused.first() {
        return Err(Error::Keys(refused.clone()));
    }
    if let KeysAction::Revoke { revoke_kid, .. } = action {
        warn_revoked(revoke_kid);
    }
    print!("{}", table(&pass.ring, &policy));
    Ok(())
}

async fn cluster_keys(action: &KeysAction, args: &KeysTarget) -> Result<(), Error> {
    let client = crate::cluster::kube_client().await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let policy = args.keys.policy(KidStrategyArg::Thumbprint, &args.timing);
    let name = &args.keys_secret.keys_secret;
    let get = || async {
        api.get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Secret {namespace}/{name}")))?
            .ok_or_else(|| {
                Error::Keys(format!(
                    "Secret {namespace}/{name} does not exist (is latchkey running?)"
                ))
            })
    };
    let secret = get().await?;
    let read = |s: &Secret| {
        keys::read(s, &policy.kid)
            .map_err(|e| Error::Keys(format!("Secret {namespace}/{name}: {e}")))
    };
    let ring = read(&secret)?;
    let (annotation, value) = match action {
        KeysAction::List(_) => {
            print!("{}", table(&ring, &policy));
            return Ok(());
        }
        _ if keys::is_external(&secret) => {
            return Err(Error::Keys(format!(
                "Secret {namespace}/{name} is annotated {EXTERNAL_ANNOTATION}=true: change the keys where they are managed"
            )));
        }
        KeysAction::Rotate(_) => (
            ROTATE_ANNOTATION,
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string(),
        ),
        KeysAction::Revoke {
            revoke_kid: kid, ..
        } => {
            if !ring.keys.iter().any(|k| &k.kid == kid) {
                return Err(Error::Keys(format!(
                    "no key {kid:?} in Secret {namespace}/{name}"
                )));
            }
            (REVOKE_ANNOTATION, kid.clone())
        }
    };
    let patch = serde_json::json!({ "metadata": { "annotations": { annotation: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!(
            "asking for the change on Secret {namespace}/{name}"
        )))?;
    let deadline = Instant::now() + args.wait;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let secret = get().await?;
        let pending = secret
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(annotation));
        if !pending {
            let ring = read(&secret)?;
            if let KeysAction::Revoke {
                revoke_kid: kid, ..
            } = action
                && ring.keys.iter().any(|k| &k.kid == kid)
            {
                return Err(Error::Keys(format!(
                    "the leader did not revoke {kid:?}; see its log and Events"
                )));
            }
            if let KeysAction::Revoke { revoke_kid, .. } = action {
                warn_revoked(revoke_kid);
            }
            print!("{}", table(&ring, &policy));
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Keys(format!(
                "no leader carried out the request within {}s (is a latchkey replica running?)",
                args.wait.as_secs()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::{
        SigningAlgorithm,
        keyring::{KidStrategy, RotationPolicy},
    };

    #[test]
    fn the_table_shows_when_the_next_key_signs_and_its_lead() {
        let policy = RotationPolicy {
            alg: SigningAlgorithm::EdDSA,
            rsa_bits: 2048,
            kid: KidStrategy::Thumbprint,
            rotation_period: Duration::from_secs(30 * 24 * 3600),
            verifier_cache: Duration::from_secs(2 * 3600 + 600),
            clock_skew: Duration::from_secs(60),
            max_token_lifetime: Duration::from_secs(3600),
        };
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut ring = KeyRing::bootstrap(&policy, t0).unwrap();
        assert!(!table(&ring, &policy).contains("signs from"));
        ring.request_rotation(&policy, t0).unwrap();
        ring.advance(&policy, t0).unwrap();
        let next = ring.next().unwrap().kid.clone();
        let out = table(&ring, &policy);
        assert!(
            out.contains(&format!(
                "next key {next} signs from: 2027-01-15T10:10:00Z (2h 10m after it was published)"
            )),
            "{out}"
        );
    }
}
