//! `latchkey run`: the token service fed by the operator from the Kubernetes API.

use std::sync::{Arc, atomic::AtomicBool};

use latchkey_core::{Issuer, Registry, TokenSettings};
use latchkey_operator::{Operator, OperatorConfig};
use latchkey_server::Metrics;
use tokio::sync::watch;

use crate::{
    cli::{KidStrategyArg, RunArgs},
    error::Error,
    observe::MetricsObserver,
    serving,
};

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
    kube::Client::try_default()
        .await
        .map_err(|e| Error::NoCluster(e.to_string()))
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
        default_lifetime: args.serve.timing.token_lifetime,
    };
    serving::check_lifetime(&settings)?;
    // Issue 11: client authentication by assertion.
    serving::assertion_config(&args.serve)?;
    // Issue 13: the revocation list Secret, in Latchkey's namespace.
    let revocations = latchkey_operator::revocation_secret::SecretRevocationStore::new(
        kube::Api::namespaced(client.clone(), &namespace),
        &args.revocations_secret,
    );
    let cfg = OperatorConfig {
        namespaces: (!args.namespaces.is_empty()).then(|| args.namespaces.clone()),
        namespace,
        lease_name: args.lease_name.clone(),
        identity: identity(&args),
        lease_duration: args.lease_duration,
        retry_period: args.lease_retry,
        keys_secret: args.keys_secret.keys_secret.clone(),
        key_policy: args
            .keys
            .policy(KidStrategyArg::Thumbprint, &args.serve.timing),
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
    let (app, admin) = serving::handlers_with(
        &args.serve,
        issuer.clone(),
        metrics.clone(),
        ready.clone(),
        serving::registration_config(&args.registration),
    );
    // Issue 11: client authentication by assertion.
    let sa_audience = args
        .service_account_audience
        .clone()
        .unwrap_or_else(|| cfg.token_url.clone());
    let _ = app
        .object_jwks
        .set(latchkey_server::object_jwks::ObjectJwks::new(
            Arc::new(crate::service_account_api::KubeObjectReader {
                client: client.clone(),
            }),
            args.serve.assertion_refetch_floor,
        ));
    tokio::spawn(crate::service_account_api::discover(
        client.clone(),
        app.clone(),
        sa_audience,
        args.serve.assertion_refetch_floor,
    ));
    // Issue 13: every replica follows the list; any replica records a revocation.
    tokio::spawn(revocations.clone().follow(app.introspector.clone()));
    app.revoker
        .set(Arc::new(latchkey_server::revoke::StoreRevoker(revocations)));
    // Issue 13: registrations are OAuthClients in the registration namespace.
    if serving::registration_mode(&args.registration)
        != latchkey_server::register::RegistrationMode::Closed
    {
        let ns = args
            .registration
            .registration_namespace
            .clone()
            .unwrap_or_else(|| cfg.namespace.clone());
        if let Some(watched) = &cfg.namespaces
            && !watched.contains(&ns)
        {
            return Err(Error::Usage(format!(
                "--registration-namespace {ns} is not among the watched --namespaces"
            )));
        }
        app.registrar
            .set(Arc::new(crate::registration_cluster::ClusterRegistrar {
                clients: kube::Api::namespaced(client.clone(), &ns),
                secrets: kube::Api::namespaced(client.clone(), &ns),
                namespace: ns,
                policy: latchkey_api::registration::RegistrationPolicy {
                    scope_cap: args.registration.registration_allowed_scopes.clone(),
                    ..Default::default()
                },
                issuer: issuer.clone(),
            }));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let operator = Operator {
        client,
        cfg,
        issuer,
        observer: Arc::new(MetricsObserver(metrics)),
        ready,
        users: Arc::new(arc_swap::ArcSwap::from_pointee(
            latchkey_core::UserDirectory::default(),
        )),
        session_keys: Arc::new(arc_swap::ArcSwap::from_pointee(
            latchkey_core::session_keys::SessionKeys::default(),
        )),
        // Issue 11: the status conditions of clients' assertion sources.
        trust_probe: Some(Arc::new(AppTrustProbe(app.clone()))),
    };
    // Issue 12: sign-in reads the operator's users and session keys, and keeps grants as
    // ConfigMaps in Latchkey's namespace (any replica writes them, conditionally).
    let grants = latchkey_operator::collection_configmaps::CollectionConfigMaps::<
        latchkey_core::authorization_grant::GrantRecord,
    >::grants(operator.client.clone(), &operator.cfg.namespace);
    app.sign_in.set(latchkey_server::sign_in::SignIn {
        users: operator.users.clone(),
        session_keys: operator.session_keys.clone(),
        grants: latchkey_server::sign_in::Grants(Arc::new(latchkey_server::sign_in::StoreGrants(
            grants,
        ))),
    });
    let operator = async move { Ok(operator.run(shutdown_rx).await?) };
    serving::run(&args.serve, app, admin, shutdown_tx, operator).await
}

// Issue 11: client authentication by assertion.
/// The token server's own caches as the writer's [`TrustProbe`].
struct AppTrustProbe(Arc<latchkey_server::App>);

impl latchkey_operator::writer::TrustProbe for AppTrustProbe {
    fn check<'a>(
        &'a self,
        trust: &'a latchkey_core::assertion::AssertionTrust,
    ) -> latchkey_server::service_account::BoxFuture<'a, latchkey_core::trust_check::TrustFindings>
    {
        Box::pin(latchkey_server::trust_check::check(&self.0, trust))
    }
}
