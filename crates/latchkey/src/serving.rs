//! Starting the public and admin listeners from the shared serving flags, and stopping them
//! on SIGTERM/SIGINT after in-flight requests finish.

use std::{
    future::Future,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use latchkey_server::{
    App, AppConfig, Limits, Metrics,
    admin::Admin,
    serve,
    throttle::ThrottleConfig,
    tls::{self, CertStore},
};
use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;

use crate::{cli::ServeArgs, error::Error, self_signed, shards};

/// Seconds since the Unix epoch, for metrics.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The default token lifetime must be one a client could also ask for.
pub fn check_lifetime(settings: &latchkey_core::TokenSettings) -> Result<(), Error> {
    let max = latchkey_core::client::MAX_TOKEN_LIFETIME;
    if settings.default_lifetime.is_zero() || settings.default_lifetime > max {
        return Err(Error::Usage(format!(
            "--token-lifetime must be between 1s and {}s",
            max.as_secs()
        )));
    }
    Ok(())
}

/// The public listener's and the admin listener's handlers (Issue 13: with the
/// registration settings).
pub fn handlers_with(
    args: &ServeArgs,
    issuer: Arc<latchkey_core::Issuer>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    registration: latchkey_server::register::RegistrationConfig,
) -> (Arc<App>, Arc<Admin>) {
    if let Some(dropped) = crate::logging::dropped() {
        metrics.count_log_drops_from(move || dropped.load(std::sync::atomic::Ordering::Relaxed));
    }
    let config = AppConfig {
        registration,
        ..app_config(args)
    };
    let app = Arc::new(App::new(issuer, metrics.clone(), config));
    (app, Arc::new(Admin { metrics, ready }))
}

/// The public listener's settings from the flags.
pub fn app_config(args: &ServeArgs) -> AppConfig {
    AppConfig {
        public_url: args.public_url.clone(),
        scheme: if args.plaintext { "http" } else { "https" },
        jwks_max_age: args.timing.jwks_max_age,
        throttle: ThrottleConfig {
            burst: args.auth_failure_burst.max(1),
            per_second: args.auth_failure_rate.max(0.0),
            client_per_second: args.auth_failure_rate.max(0.0) * 2.0,
            ..ThrottleConfig::default()
        },
        // Issue 12: the login form's own budgets.
        login_throttle: latchkey_server::sign_in::login_throttle(
            args.login_failure_burst,
            args.login_failure_rate,
        ),
        cors_origins: args.cors_origins.clone(),
        // Issue 11: client authentication by assertion (checked at start by
        // `assertion_config`; here a file gone since then counts as no extra roots).
        assertion: assertion_config(args).unwrap_or_default(),
        ..AppConfig::default()
    }
}

// Issue 11: client authentication by assertion.
/// How client assertions are accepted, from the flags; an unreadable or non-PEM
/// `--assertion-ca-file` is an error.
pub fn assertion_config(
    args: &ServeArgs,
) -> Result<latchkey_server::client_assertion::AssertionConfig, Error> {
    let extra_roots = match &args.assertion_ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            latchkey_server::remote_jwks::parse_roots(&pem)
                .map_err(|e| Error::Usage(format!("--assertion-ca-file: {e}")))?
        }
    };
    if args.assertion_max_lifetime.is_zero()
        || args.assertion_max_lifetime > latchkey_core::assertion::MAX_FEDERATED_LIFETIME
    {
        return Err(Error::Usage(
            "--assertion-max-lifetime must be between 1s and 1h".into(),
        ));
    }
    Ok(latchkey_server::client_assertion::AssertionConfig {
        extra_audiences: args.assertion_audiences.clone(),
        max_lifetime: args.assertion_max_lifetime,
        remote: latchkey_server::remote_jwks::RemoteKeysConfig {
            refetch_floor: args.assertion_refetch_floor,
            ..Default::default()
        },
        extra_roots,
        ..Default::default()
    })
}

fn limits(args: &ServeArgs) -> Limits {
    Limits {
        max_connections: args.max_connections.max(1),
        max_connections_per_source: args.max_connections_per_source,
        header_read_timeout: args.header_timeout,
        write_timeout: args.write_timeout,
        idle_timeout: args.idle_timeout,
        drain_timeout: args.drain_timeout,
        max_pending_requests: args.max_pending_requests.max(1),
        max_concurrent_streams: args.max_streams_per_connection.max(1),
        max_open_streams: args.max_open_streams.max(1),
        ..Limits::default()
    }
}

/// The admin listener's own limits: few, short-lived connections (probes, scrapes), so a
/// flood of slow peers gives its slots back within seconds.
fn admin_limits(args: &ServeArgs) -> Limits {
    Limits {
        max_connections: 64,
        max_connections_per_source: 16,
        tls_handshake_timeout: Duration::from_secs(5),
        header_read_timeout: args.header_timeout.min(Duration::from_secs(5)),
        write_timeout: args.write_timeout.min(Duration::from_secs(5)),
        idle_timeout: args.idle_timeout.min(Duration::from_secs(30)),
        drain_timeout: args.drain_timeout,
        max_pending_requests: 64,
        ..Limits::default()
    }
}

/// Serve the admin listener on a thread and runtime of its own, so token load (signing,
/// floods) never delays `/healthz` and `/readyz`.
fn admin_thread(
    listener: std::net::TcpListener,
    admin: Arc<Admin>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<()>, Error> {
    let config = Error::Runtime;
    listener.set_nonblocking(true).map_err(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(config)?;
    std::thread::Builder::new()
        .name("latchkey-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(l) => serve(l, None, admin, limits, shutdown).await,
                    Err(e) => tracing::error!(error = %e, "admin listener failed"),
                }
            });
        })
        .map_err(config)
}

/// The TLS acceptor for the public listener: the given files (watched for changes), or the
/// self-signed certificate kept in `state_dir`; `None` with `--plaintext`.
fn tls(
    args: &ServeArgs,
    state_dir: &Path,
    metrics: &Arc<Metrics>,
    reload_every: Duration,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<TlsAcceptor>, Error> {
    if args.plaintext {
        tracing::warn!("serving plain HTTP (--plaintext): put TLS in front of this listener");
        return Ok(None);
    }
    let store = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let store = CertStore::new(tls::load_files(cert, key)?);
            let files = tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            tokio::spawn(tls::watch_files(
                store.clone(),
                files,
                reload_every,
                metrics.clone(),
                shutdown.clone(),
            ));
            store
        }
        _ => {
            let (cert, key) = self_signed::load_or_create(state_dir, &args.tls_sans)?;
            CertStore::new(tls::certified_key_from_pem(
                cert.as_bytes(),
                key.as_bytes(),
            )?)
        }
    };
    Ok(Some(TlsAcceptor::from(tls::server_config(store)?)))
}

/// Serve the token endpoint and the admin endpoint until a termination signal (or until
/// `fatal` ends: its error is the process's), then drain.
pub async fn run(
    args: &ServeArgs,
    app: Arc<App>,
    admin: Arc<Admin>,
    shutdown_tx: watch::Sender<bool>,
    fatal: impl Future<Output = Result<(), Error>>,
) -> Result<(), Error> {
    let shutdown = shutdown_tx.subscribe();
    crate::files::ensure_private_dir(&args.state_dir)?;
    let acceptor = tls(
        args,
        &args.state_dir,
        &app.metrics,
        args.reload_interval,
        &shutdown,
    )?;
    let plan = shards::plan(
        args.serve_threads,
        &shards::allowed_cpus(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let (public, public_addr) = shards::bind(args.listen, &plan)?;
    let admin_listener =
        std::net::TcpListener::bind(args.admin_listen).map_err(|source| Error::Bind {
            addr: args.admin_listen,
            source,
        })?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let admin_addr = admin_listener.local_addr().map_err(|source| Error::Bind {
        addr: args.admin_listen,
        source,
    })?;
    tracing::info!(
        listener = "token",
        addr = %public_addr,
        scheme,
        threads = plan.shards,
        pinned = plan.pinned.is_some(),
        "listening"
    );
    tracing::info!(listener = "admin", addr = %admin_addr, scheme = "http", "listening");
    let public_threads =
        shards::start(public, &plan, acceptor, app, limits(args), shutdown.clone())?;
    let admin_task = admin_thread(admin_listener, admin, admin_limits(args), shutdown)?;
    tokio::pin!(fatal);
    let outcome = tokio::select! {
        _ = terminated() => None,
        r = &mut fatal => Some(r),
    };
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = shutdown_tx.send(true);
    // Each shard's thread ends once its connections have drained (bounded by the drain
    // timeout).
    let _ = tokio::task::spawn_blocking(move || {
        for t in public_threads {
            let _ = t.join();
        }
    })
    .await;
    // The admin thread ends once its listener has drained (bounded by the drain timeout).
    let _ = tokio::task::spawn_blocking(move || admin_task.join()).await;
    // Let the background work finish its own shutdown (e.g. releasing the Lease).
    let result = match outcome {
        Some(r) => r,
        None => tokio::time::timeout(Duration::from_secs(5), fatal)
            .await
            .unwrap_or(Ok(())),
    };
    tracing::info!("stopped");
    result
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

// Issue 13: dynamic client registration.
/// The registration policy the flags state.
pub fn registration_mode(
    args: &crate::cli::RegistrationArgs,
) -> latchkey_server::register::RegistrationMode {
    use crate::cli::RegistrationModeArg as M;
    use latchkey_server::register::RegistrationMode;
    match args.registration {
        M::Closed => RegistrationMode::Closed,
        M::Open => RegistrationMode::Open,
        M::InitialToken => RegistrationMode::InitialToken {
            scope: args.registration_scope.clone(),
        },
    }
}

/// The registration settings of the public listener.
pub fn registration_config(
    args: &crate::cli::RegistrationArgs,
) -> latchkey_server::register::RegistrationConfig {
    latchkey_server::register::RegistrationConfig {
        mode: registration_mode(args),
        per_minute: args.registration_rate.max(1),
    }
}
