//! `latchkey standalone`: the token service with no cluster, from YAML files and a local state
//! directory. The rules are the cluster's (the one client resolver, the one key driver); only
//! the stores differ: files here, Kubernetes objects there.

pub mod client_files;
pub mod collection_files;
pub mod json_file;
pub mod key_file;
pub mod registration_files;
// Issue 11
pub mod trust_warnings;
pub mod user_files;

use std::{
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use latchkey_core::{
    Issuer, TokenSettings,
    key_driver::{self, KeyRequests},
    store::DocumentStore,
};
use latchkey_operator::key_driver::KeyDriver;
use latchkey_server::Metrics;
use tokio::sync::watch;

use crate::{
    cli::{KidStrategyArg, StandaloneArgs},
    error::Error,
    files,
    observe::MetricsObserver,
    serving::{self, unix_now},
};
use key_file::KeyFile;

/// `f` on a blocking thread: file reads never stall the request workers.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

pub async fn run(args: StandaloneArgs) -> Result<(), Error> {
    let state_dir = &args.serve.state_dir;
    files::ensure_private_dir(state_dir)?;
    let policy = args.keys.policy(KidStrategyArg::Static, &args.serve.timing);
    if !policy.rotates() {
        tracing::info!(kid = %args.keys.kid, "static kid: automatic key rotation is off");
    }
    // Issue 13: registrations join the clients files (and need them).
    let registrations = registration_dir(&args)?;
    let (registry, loaded) = match &args.clients {
        Some(path) => {
            let (p, r) = (path.clone(), registrations.clone());
            let snapshot =
                off_runtime(move || registration_files::read_all(&p, r.as_deref())).await??;
            let registry = client_files::load(&snapshot)?;
            tracing::info!(path = %path.display(), clients = registry.len(), "clients loaded");
            (registry, Some(snapshot.digest()))
        }
        None => {
            tracing::warn!(
                client_id = latchkey_core::apk::DEFAULT_CLIENT_ID,
                "no --clients given: serving APK's default non-production client, whose secret is public; for testing only"
            );
            (client_files::apk_default(), None)
        }
    };
    // Issue 12: the users who may sign in.
    let (users, users_loaded) = load_users(&args).await?;
    let settings = TokenSettings {
        issuer: args.serve.issuer.clone(),
        default_lifetime: args.serve.timing.token_lifetime,
    };
    serving::check_lifetime(&settings)?;
    // Issue 11: client authentication by assertion.
    serving::assertion_config(&args.serve)?;
    let metrics = Arc::new(Metrics::new());
    metrics.observe_registry(&registry);
    metrics.observe_sync(unix_now());
    metrics.observe_users(users.len());
    let users = Arc::new(ArcSwap::from_pointee(users));

    // The first pass before serving: a key exists, and a stored key the flags contradict is
    // refused with a one-line error rather than replaced.
    // The driver keeps the configured policy and stretches retention to the live registry on
    // every pass; the first pass stretches it to the registry just loaded.
    let store = KeyFile::new(state_dir, &policy);
    let first_policy = policy.covering(registry.longest_token_lifetime());
    if let Some(stored) = store.load().await? {
        key_file::check_static_alg(&store.path(), &stored.value.ring, &first_policy)
            .map_err(Error::Usage)?;
    }
    let first = key_driver::pass(
        &store,
        &first_policy,
        KeyRequests::default(),
        SystemTime::now(),
    )
    .await?;
    let keys = first.ring.key_set()?;
    metrics.observe_key_ring(&first.ring, &first_policy);

    let issuer = Arc::new(Issuer::new(settings, registry, Some(keys)));
    let ready = Arc::new(AtomicBool::new(true));
    let (app, admin) = serving::handlers_with(
        &args.serve,
        issuer.clone(),
        metrics.clone(),
        ready,
        serving::registration_config(&args.registration),
    );
    // Issue 13: revoked access tokens, kept in the state directory (this process is the only
    // writer, so what it wrote is what it holds).
    let revocations = json_file::RevocationFile::new(state_dir);
    if let Some(stored) = revocations.load().await? {
        app.introspector.replace_revocations(stored.value);
    }
    app.revoker
        .set(Arc::new(latchkey_server::revoke::StoreRevoker(revocations)));
    // Issue 13: one lock for every registry reload, so a registration answers once served.
    let reload_lock = Arc::new(tokio::sync::Mutex::new(()));
    let open = serving::registration_mode(&args.registration)
        != latchkey_server::register::RegistrationMode::Closed;
    if let (Some(dir), Some(clients), true) = (&registrations, &args.clients, open) {
        app.registrar
            .set(Arc::new(registration_files::RegistrationFiles {
                dir: dir.clone(),
                clients: clients.clone(),
                policy: latchkey_api::registration::RegistrationPolicy {
                    scope_cap: args.registration.registration_allowed_scopes.clone(),
                    ..Default::default()
                },
                issuer: issuer.clone(),
                metrics: metrics.clone(),
                lock: reload_lock.clone(),
                namespace: args
                    .registration
                    .registration_namespace
                    .clone()
                    .unwrap_or_else(|| registration_files::DEFAULT_NAMESPACE.into()),
            }));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let driver = KeyDriver {
        store,
        policy,
        issuer: issuer.clone(),
        observer: Arc::new(MetricsObserver(metrics.clone())),
    };
    // Standalone, this process is always the one writer.
    let (_writer_tx, writer_rx) = watch::channel(true);
    tokio::spawn(driver.run(Some(first.ring), writer_rx.clone(), shutdown_rx.clone()));
    if let Some(path) = args.clients.clone() {
        let reload = Reload {
            path,
            every: args.serve.reload_interval,
            issuer,
            metrics: metrics.clone(),
            registrations,
            lock: reload_lock,
        };
        tokio::spawn(reload.run(loaded, shutdown_rx.clone()));
    }
    // Issue 12: expired authorization grants leave the state directory.
    let grants =
        collection_files::CollectionFiles::<latchkey_core::authorization_grant::GrantRecord>::new(
            &state_dir.join("grants"),
        );
    tokio::spawn(latchkey_operator::grant_sweep::run(
        grants.clone(),
        latchkey_operator::grant_sweep::SWEEP_EVERY,
        writer_rx.clone(),
        shutdown_rx.clone(),
    ));
    // Issue 12: the session-cookie keys, made on first start and rotated in the state dir.
    let session_store = json_file::SessionKeyFile::new(state_dir);
    let policy = latchkey_core::session_keys::SessionKeyPolicy::default();
    let session_keys = Arc::new(ArcSwap::from_pointee(
        latchkey_core::session_keys::pass(&session_store, &policy, unix_now() as u64).await?,
    ));
    // Issue 12: sign-in reads the users and session keys above and keeps grants in files.
    app.sign_in.set(latchkey_server::sign_in::SignIn {
        users: users.clone(),
        session_keys: session_keys.clone(),
        grants: latchkey_server::sign_in::Grants(Arc::new(latchkey_server::sign_in::StoreGrants(
            grants,
        ))),
    });
    tokio::spawn(latchkey_operator::session_key_loop::run(
        session_store,
        policy,
        latchkey_operator::session_key_loop::POLL_EVERY,
        session_keys,
        writer_rx.clone(),
        shutdown_rx.clone(),
    ));
    // Issue 11: unresolvable federated issuers and jwksUri, said in the log.
    tokio::spawn(trust_warnings::run(app.clone(), shutdown_rx.clone()));
    if let Some(path) = args.users.clone() {
        let reload = user_files::Reload {
            path,
            every: args.serve.reload_interval,
            directory: users.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(reload.run(users_loaded, shutdown_rx));
    }
    serving::run(&args.serve, app, admin, shutdown_tx, std::future::pending()).await
}

/// The users from `--users`, or APK's sample users (with a warning) without it.
async fn load_users(
    args: &StandaloneArgs,
) -> Result<(latchkey_core::UserDirectory, Option<[u8; 32]>), Error> {
    match &args.users {
        Some(path) => {
            let p = path.clone();
            let snapshot = off_runtime(move || client_files::read_snapshot(&p)).await??;
            let s = snapshot.clone();
            let directory = off_runtime(move || user_files::load(&s)).await??;
            tracing::info!(path = %path.display(), users = directory.len(), "users loaded");
            Ok((directory, Some(snapshot.digest())))
        }
        None => {
            tracing::warn!(
                "no --users given: serving APK's sample non-production users admin/admin and user1/user1, whose passwords are public; for testing only"
            );
            Ok((off_runtime(user_files::apk_samples).await??, None))
        }
    }
}

/// Reloads the clients whenever the manifests' content changes.
struct Reload {
    path: PathBuf,
    every: Duration,
    issuer: Arc<Issuer>,
    metrics: Arc<Metrics>,
    // Issue 13: registrations, read with the clients files; the lock registration writes take.
    registrations: Option<PathBuf>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Reload {
    async fn snapshot(&self) -> Option<client_files::Snapshot> {
        let (path, registrations) = (self.path.clone(), self.registrations.clone());
        match off_runtime(move || registration_files::read_all(&path, registrations.as_deref()))
            .await
        {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.failed(&e);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "clients reload task failed");
                None
            }
        }
    }

    fn failed(&self, e: &client_files::LoadError) {
        self.metrics.observe_reload("clients", false);
        for problem in &e.0 {
            tracing::error!(
                file = %problem.file.display(),
                document = problem.doc,
                reason = %problem.reason,
                "clients not reloaded; the last good clients keep serving"
            );
        }
    }

    /// A failed load keeps the last good state. A change is taken only once the content has
    /// stayed the same for a moment, so a file caught mid-write is not loaded half-written.
    async fn run(self, mut loaded: Option<[u8; 32]>, mut shutdown: watch::Receiver<bool>) {
        let settle = (self.every / 2).min(Duration::from_millis(250));
        let mut tick = tokio::time::interval(self.every);
        let mut failed: Option<[u8; 32]> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(first) = self.snapshot().await else {
                continue;
            };
            let digest = first.digest();
            if Some(digest) == loaded || Some(digest) == failed {
                continue;
            }
            tokio::time::sleep(settle).await;
            let _guard = self.lock.lock().await;
            let Some(settled) = self.snapshot().await else {
                continue;
            };
            if settled.digest() != digest {
                continue;
            }
            match client_files::load(&settled) {
                Ok(registry) => {
                    loaded = Some(digest);
                    failed = None;
                    tracing::info!(path = %self.path.display(), clients = registry.len(), "clients reloaded");
                    self.metrics.observe_registry(&registry);
                    self.metrics.observe_sync(unix_now());
                    self.metrics.observe_reload("clients", true);
                    self.issuer.replace_registry(registry);
                }
                Err(e) => {
                    failed = Some(digest);
                    self.failed(&e);
                }
            }
        }
    }
}

// Issue 13: dynamic client registration.
/// Where registrations are kept, when registration is enabled (it needs `--clients`).
fn registration_dir(args: &StandaloneArgs) -> Result<Option<PathBuf>, Error> {
    let mode = serving::registration_mode(&args.registration);
    let dir = args
        .serve
        .state_dir
        .join(registration_files::REGISTRATIONS_DIR);
    if mode == latchkey_server::register::RegistrationMode::Closed {
        // Clients registered while it was open keep working; only new registrations stop.
        return Ok((dir.is_dir() && args.clients.is_some()).then_some(dir));
    }
    if args.clients.is_none() {
        return Err(Error::Usage(
            "--registration open or initial-token needs --clients (registrations join those \
             files; an empty directory will do)"
                .into(),
        ));
    }
    files::ensure_private_dir(&dir)?;
    Ok(Some(dir))
}
