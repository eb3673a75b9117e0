//! `latchkey run`: the token service fed by the operator from the Kubernetes API.

use std::sync::{Arc, atomic::AtomicBool};

use latchkey_core::{
    Issuer, KeySet, Registry, TokenSettings,
    keyring::{KeyEvent, KeyRing, RotationPolicy},
};
use latchkey_operator::{Observer, OperatorConfig};
use latchkey_server::Metrics;
use tokio::sync::watch;

use crate::{
    cli::{KidStrategyArg, RunArgs},
    error::Error,
    serving,
};

/// Operator events become metrics (the policy says when a next key signs).
struct MetricsObserver(Arc<Metrics>, RotationPolicy);

impl Observer for MetricsObserver {
    fn registry_swapped(&self, registry: &Registry) {
        self.0.observe_registry(registry);
    }
    fn keys_swapped(&self, _keys: &KeySet, ring: &KeyRing, _next_rotation: Option<u64>) {
        self.0.observe_key_ring(ring, &self.1);
    }
    fn key_events(&self, events: &[KeyEvent]) {
        self.0.observe_key_events(events);
    }
    fn api_contact(&self) {
        self.0.observe_sync(serving::unix_now());
    }
    fn leading(&self, leading: bool) {
        self.0.observe_leader(leading);
    }
}

/// This replica's name in the Lease: the flag, else the pod name, else host and process id.
fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}

/// A client for `KUBECONFIG` (or `~/.kube/config`), else the in-cluster configuration.
pub async fn kube_client() -> Result<kube::Client, Error> {
    kube::Client::try_default().await.map_err(|e| {
        Error::Config(format!(
            "no Kubernetes API to talk to (KUBECONFIG or in-cluster config): {e}"
        ))
    })
}

pub async fn run(args: RunArgs) -> Result<(), Error> {
    let client = kube_client().await?;
    let namespace = args
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let token_url = args.token_url.clone().unwrap_or_else(|| {
        format!(
            "https://latchkey.{namespace}.svc:{}/oauth2/token",
            args.serve.listen.port()
        )
    });
    let settings = TokenSettings {
        issuer: args.serve.issuer.clone(),
        default_lifetime: args.serve.token_lifetime,
    };
    serving::check_lifetime(&settings)?;
    let cfg = OperatorConfig {
        namespaces: (!args.namespaces.is_empty()).then(|| args.namespaces.clone()),
        namespace,
        lease_name: args.lease_name.clone(),
        identity: identity(&args),
        lease_duration: args.lease_duration,
        retry_period: args.lease_retry,
        keys_secret: args.keys_secret.clone(),
        key_policy: args.keys.policy(
            KidStrategyArg::Thumbprint,
            args.serve.jwks_max_age,
            args.serve.token_lifetime,
        ),
        token_url,
    };
    if !cfg.key_policy.rotates() {
        tracing::info!(kid = %args.keys.kid, "static kid: automatic key rotation is off");
    }
    tracing::info!(
        identity = %cfg.identity,
        namespace = %cfg.namespace,
        watch = %cfg.namespaces.as_ref().map_or("all namespaces".to_owned(), |n| n.join(",")),
        "starting the operator"
    );
    let metrics = Arc::new(Metrics::new());
    let issuer = Arc::new(Issuer::new(settings, Registry::default(), None));
    let ready = Arc::new(AtomicBool::new(false));
    let (app, admin) =
        serving::handlers(&args.serve, issuer.clone(), metrics.clone(), ready.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let observer = Arc::new(MetricsObserver(metrics, cfg.key_policy.clone()));
    let operator = latchkey_operator::run(client, cfg, issuer, observer, ready, shutdown_rx);
    let operator = async move {
        operator
            .await
            .map_err(|e| Error::Config(format!("operator stopped: {e}")))
    };
    serving::run(&args.serve, app, admin, shutdown_tx, operator).await
}
