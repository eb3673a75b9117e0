//! Leader election over a `coordination.k8s.io/v1` Lease: one writer among the replicas.
//!
//! Every write to the Lease carries the resourceVersion read just before, so two replicas
//! cannot both win. Expiry is judged by how long this replica has seen the same holder and
//! renew time (its own clock only), so clock skew between nodes does not matter. A leader that
//! cannot renew for a whole lease duration steps down; on shutdown it releases the Lease so
//! another replica takes over at once.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use tokio::sync::watch;

use crate::OperatorError;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub name: String,
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often to try to acquire or renew.
    pub retry_period: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Whether an error is a lost optimistic-concurrency race (someone else wrote first).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The election state of one replica.
struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    /// The holder and renew time last seen, and when this replica first saw them.
    observed: Option<(Option<String>, Option<MicroTime>)>,
    observed_at: Instant,
}

impl Elector {
    fn spec(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Try once; `Ok(true)` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let mine = holder.as_deref() == Some(self.cfg.identity.as_str());
        if !mine {
            let record = (holder.clone(), spec.renew_time.clone());
            if self.observed.as_ref() != Some(&record) {
                self.observed = Some(record);
                self.observed_at = Instant::now();
            }
            let duration = spec
                .lease_duration_seconds
                .map_or(self.cfg.lease_duration, |s| {
                    Duration::from_secs(s.max(0) as u64)
                });
            let expired = holder.is_none() || self.observed_at.elapsed() > duration;
            if !expired {
                return Ok(false);
            }
        }
        let next = if mine {
            self.spec(transitions, spec.acquire_time)
        } else {
            self.spec(transitions + 1, None)
        };
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this fail.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                if !mine {
                    tracing::info!(identity = %self.cfg.identity, lease = %lease.name_any(), "acquired the lease");
                }
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up so another replica can take it at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(identity = %self.cfg.identity, "released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
    }
}

/// Run the election until `shutdown`, publishing whether this replica leads. `contact` is
/// called after every answer from the API server.
pub async fn run(
    api: Api<Lease>,
    cfg: LeaderConfig,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
    contact: impl Fn() + Send,
) -> Result<(), OperatorError> {
    if cfg.identity.is_empty() {
        return Err(OperatorError::Lease("the replica identity is empty".into()));
    }
    let mut elector = Elector {
        api,
        cfg: cfg.clone(),
        observed: None,
        observed_at: Instant::now(),
    };
    let mut last_renewed: Option<Instant> = None;
    let mut tick = tokio::time::interval(cfg.retry_period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                if *leading.borrow() {
                    leading.send_replace(false);
                    elector.release().await;
                }
                return Ok(());
            }
        }
        match elector.try_acquire_or_renew().await {
            Ok(held) => {
                contact();
                if held {
                    last_renewed = Some(Instant::now());
                }
                if *leading.borrow() != held {
                    tracing::info!(identity = %cfg.identity, leading = held, "leadership changed");
                    leading.send_replace(held);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease not renewed");
                let stale = last_renewed.is_none_or(|t| t.elapsed() >= cfg.lease_duration);
                if *leading.borrow() && stale {
                    tracing::warn!(identity = %cfg.identity, "stepping down: the lease could not be renewed in time");
                    leading.send_replace(false);
                }
            }
        }
    }
}
