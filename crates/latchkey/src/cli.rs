//! Command-line interface. Every flag also reads a `LATCHKEY_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use latchkey_core::{SigningAlgorithm, apk};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "A Kubernetes-native OAuth 2.0 token issuer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; boxing the large variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve tokens from YAML files and a local state directory, with no cluster.
    Standalone(StandaloneArgs),
    /// Run in a cluster: watch OAuthClients and their Secrets, serve tokens; the Lease holder
    /// writes status, generated credentials and signing keys.
    Run(RunArgs),
    /// Show and change the signing keys (`--state-dir` for standalone, else in the cluster).
    Keys(KeysArgs),
    /// Print a CustomResourceDefinition (YAML) to stdout, for `kubectl apply -f -`.
    Crd(CrdArgs),
    // Issue 13
    /// Manage clients' credentials (`--clients PATH` for standalone, else in the cluster).
    Clients(ClientsArgs),
    /// Revoke tokens (`--clients PATH` for standalone, else in the cluster).
    Tokens(TokensArgs),
    // Issue 12: people who sign in.
    /// Read a password from stdin (one line) and print its Argon2id PHC hash, for a User's
    /// password Secret.
    HashPassword,
}

/// Which CustomResourceDefinition `latchkey crd` prints.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// `oauthclients` (the default) or `users`.
    #[arg(value_enum, default_value = "oauthclients")]
    pub kind: CrdKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrdKind {
    #[value(name = "oauthclients")]
    OAuthClients,
    #[value(name = "users")]
    Users,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

impl From<KeyAlg> for SigningAlgorithm {
    fn from(a: KeyAlg) -> Self {
        match a {
            KeyAlg::Rs256 => SigningAlgorithm::RS256,
            KeyAlg::Es256 => SigningAlgorithm::ES256,
            KeyAlg::EdDsa => SigningAlgorithm::EdDSA,
        }
    }
}

/// Flags shared by every serving mode: listeners, TLS, tokens, logs, limits.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the token endpoint (HTTPS unless --plaintext).
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "0.0.0.0:9095")]
    pub listen: SocketAddr,
    /// Address of the admin endpoint (plain HTTP: /healthz, /readyz, /metrics).
    #[arg(long, env = "LATCHKEY_ADMIN_LISTEN", default_value = "127.0.0.1:9096")]
    pub admin_listen: SocketAddr,
    /// Serving certificate chain (PEM); reloaded when the file changes. Needs --tls-key.
    #[arg(
        long,
        env = "LATCHKEY_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "plaintext"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM); reloaded when the file changes. Needs --tls-cert.
    #[arg(
        long,
        env = "LATCHKEY_TLS_KEY",
        requires = "tls_cert",
        conflicts_with = "plaintext"
    )]
    pub tls_key: Option<PathBuf>,
    /// Extra subject alternative name (DNS name or IP) for the self-signed certificate; repeatable.
    #[arg(long = "tls-san", env = "LATCHKEY_TLS_SANS", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// Serve plain HTTP (behind a mesh or a TLS-terminating proxy).
    #[arg(long, env = "LATCHKEY_PLAINTEXT")]
    pub plaintext: bool,
    /// The `iss` claim of every token.
    #[arg(long, env = "LATCHKEY_ISSUER", default_value = apk::ISSUER)]
    pub issuer: String,
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Base URL advertised in discovery documents (default: from the request's Host).
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// An origin (https://app.example.com) whose pages may call the token endpoint (CORS);
    /// repeatable. The JWKS and metadata are readable from any origin.
    #[arg(long = "cors-origin", env = "LATCHKEY_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    /// Log format.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax, e.g. info or latchkey=debug).
    #[arg(long, env = "LATCHKEY_LOG", default_value = "info")]
    pub log_level: String,
    /// Serving threads for the token listener, each with a socket of its own on the same port
    /// (0: one per CPU this process may use, a CPU quota included). Pinned one per CPU when
    /// the process may run on exactly that many CPUs.
    #[arg(long, env = "LATCHKEY_SERVE_THREADS", default_value_t = 0)]
    pub serve_threads: usize,
    /// Connections served at once on each listener.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Connections one source (IPv4 address, IPv6 /64) may hold on the token listener; 0: no
    /// limit (set 0 behind a proxy that connects for every client).
    #[arg(
        long,
        env = "LATCHKEY_MAX_CONNECTIONS_PER_SOURCE",
        default_value_t = 256
    )]
    pub max_connections_per_source: usize,
    /// Time from a connection's start to its first request head (and for each later head).
    #[arg(long, env = "LATCHKEY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// A response the peer does not take for this long closes its connection.
    #[arg(long, env = "LATCHKEY_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Requests in progress at once (HTTP/2 streams awaiting their body included); more are
    /// answered 503. Bounds the memory requests hold.
    #[arg(long, env = "LATCHKEY_MAX_PENDING_REQUESTS", default_value_t = 4096)]
    pub max_pending_requests: usize,
    /// HTTP/2 streams one connection may have open at once (each costs a few KiB until the
    /// peer ends it).
    #[arg(
        long,
        env = "LATCHKEY_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 32
    )]
    pub max_streams_per_connection: u32,
    /// HTTP/2 streams all connections together may have open; a connection that starts when
    /// little is left gets fewer (at least one). Bounds the memory streams hold.
    #[arg(long, env = "LATCHKEY_MAX_OPEN_STREAMS", default_value_t = 8192)]
    pub max_open_streams: usize,
    /// Failed client authentications a source may make at once before it is slowed down.
    #[arg(long, env = "LATCHKEY_AUTH_FAILURE_BURST", default_value_t = 20)]
    pub auth_failure_burst: u32,
    /// Failed client authentications per second a source is allowed after its burst (one
    /// client id from unknown sources: twice this); 0: no throttling.
    #[arg(long, env = "LATCHKEY_AUTH_FAILURE_RATE", default_value_t = 5.0)]
    pub auth_failure_rate: f64,
    /// Issue 12: wrong passwords a source may send to the login form at once before it is
    /// slowed down (a username, from sources never signed in as it: five times this).
    #[arg(long, env = "LATCHKEY_LOGIN_FAILURE_BURST", default_value_t = latchkey_server::sign_in::LOGIN_FAILURE_BURST)]
    pub login_failure_burst: u32,
    /// Wrong passwords per second a source is allowed after its burst (a username, from
    /// sources never signed in as it: 2.5 times this); 0: no login throttling.
    #[arg(long, env = "LATCHKEY_LOGIN_FAILURE_RATE", default_value_t = latchkey_server::sign_in::LOGIN_FAILURE_RATE)]
    pub login_failure_rate: f64,
    /// Log lines buffered while the log reader is slow; beyond that, lines are dropped and
    /// counted (serving never waits for the log).
    #[arg(long, env = "LATCHKEY_LOG_BUFFER_LINES", default_value_t = 16384)]
    pub log_buffer_lines: usize,
    /// On SIGTERM, how long in-flight requests may take before the process exits.
    #[arg(long, env = "LATCHKEY_DRAIN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Where the self-signed certificate (and, standalone, the signing key) are kept.
    #[arg(long, env = "LATCHKEY_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// How often the clients files and TLS files are checked for changes.
    #[arg(long, env = "LATCHKEY_RELOAD_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    // Issue 11: client authentication by assertion.
    /// An audience client assertions may name besides the issuer and
    /// `{--public-url}/oauth2/token`; repeatable.
    #[arg(
        long = "assertion-audience",
        env = "LATCHKEY_ASSERTION_AUDIENCES",
        value_delimiter = ','
    )]
    pub assertion_audiences: Vec<String>,
    /// Longest lifetime (exp - iat) of a private_key_jwt assertion.
    #[arg(long, env = "LATCHKEY_ASSERTION_MAX_LIFETIME", default_value = "5m", value_parser = parse_duration)]
    pub assertion_max_lifetime: Duration,
    /// PEM certificates trusted, besides the system's, when fetching a client's jwksUri or a
    /// federated issuer's discovery document and keys.
    #[arg(long, env = "LATCHKEY_ASSERTION_CA_FILE")]
    pub assertion_ca_file: Option<PathBuf>,
    /// Shortest time between two fetches of one remote key set (also its shortest cache life).
    #[arg(long, env = "LATCHKEY_ASSERTION_REFETCH_FLOOR", default_value = "30s", value_parser = parse_duration)]
    pub assertion_refetch_floor: Duration,
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "./.latchkey";

/// Token lifetime and JWKS caching: they set how long tokens live and how long keys stay
/// published, so the server and `latchkey keys` read them from one declaration.
#[derive(Debug, Clone, Args)]
pub struct TimingArgs {
    /// Token lifetime for clients that set none (e.g. 3600s, 1h).
    #[arg(long, env = "LATCHKEY_TOKEN_LIFETIME", default_value = "3600s", value_parser = parse_duration)]
    pub token_lifetime: Duration,
    /// How long verifiers may cache the JWKS, the certificate and the metadata (Cache-Control
    /// max-age).
    #[arg(long, env = "LATCHKEY_JWKS_MAX_AGE", default_value = "5m", value_parser = parse_duration)]
    pub jwks_max_age: Duration,
}

/// The Secret (in Latchkey's namespace) holding the signing keys in a cluster.
#[derive(Debug, Clone, Args)]
pub struct KeysSecretArg {
    /// Name of the Secret (in --namespace) holding the signing keys.
    #[arg(
        long,
        env = "LATCHKEY_KEYS_SECRET",
        default_value = "latchkey-signing-keys"
    )]
    pub keys_secret: String,
}

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// OAuthClient and Secret manifests: a YAML file or a directory of them. Omitted: APK's
    /// default non-production client (testing only).
    #[arg(long, env = "LATCHKEY_CLIENTS")]
    pub clients: Option<PathBuf>,
    // Issue 12: people who sign in.
    /// User and Secret manifests: a YAML file or a directory of them (may be the clients').
    /// Omitted: APK's sample non-production users (testing only).
    #[arg(long, env = "LATCHKEY_USERS")]
    pub users: Option<PathBuf>,
    // Issue 13: dynamic client registration.
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

// Issue 13: dynamic client registration.
/// Who may register clients at `/oauth2/register` (and `/dcr/register`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RegistrationModeArg {
    /// Nobody (403).
    Closed,
    /// Anybody who reaches the endpoint.
    Open,
    /// Callers with a Latchkey access token carrying `--registration-scope`.
    InitialToken,
}

/// Dynamic client registration (RFC 7591/7592), standalone.
#[derive(Debug, Clone, Args)]
pub struct RegistrationArgs {
    /// Who may register clients: closed, open, or initial-token.
    #[arg(
        long,
        env = "LATCHKEY_REGISTRATION",
        value_enum,
        default_value = "closed"
    )]
    pub registration: RegistrationModeArg,
    /// The scope an initial access token must carry (with `--registration initial-token`).
    #[arg(
        long,
        env = "LATCHKEY_REGISTRATION_SCOPE",
        default_value = "latchkey:register"
    )]
    pub registration_scope: String,
    /// Scope entries registered clients may hold (as in `spec.scopes`; `p*` allows longer
    /// scopes starting with `p`); repeatable. None: only `default`.
    #[arg(
        long = "registration-allowed-scope",
        env = "LATCHKEY_REGISTRATION_ALLOWED_SCOPES",
        value_delimiter = ','
    )]
    pub registration_allowed_scopes: Vec<String>,
    /// Registration and management requests per source address per minute.
    #[arg(long, env = "LATCHKEY_REGISTRATION_RATE", default_value_t = 10)]
    pub registration_rate: u32,
    /// The namespace of registered OAuthClients. Default: Latchkey's namespace in a cluster,
    /// `default` standalone.
    #[arg(long, env = "LATCHKEY_REGISTRATION_NAMESPACE")]
    pub registration_namespace: Option<String>,
}

/// The signing key a new key ring starts with.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Signing algorithm of a newly made key.
    #[arg(long, env = "LATCHKEY_KEY_ALG", value_enum, default_value = "RS256")]
    pub key_alg: KeyAlg,
    /// RSA modulus size of a newly made RS256 key (2048, 3072 or 4096).
    #[arg(long, env = "LATCHKEY_RSA_BITS", default_value_t = 2048, value_parser = parse_rsa_bits)]
    pub rsa_bits: u32,
    /// The key id with `--kid-strategy static` (APK's gateway pins this one).
    #[arg(long, env = "LATCHKEY_KID", default_value = apk::KID)]
    pub kid: String,
    /// How keys are named: `thumbprint` (RFC 7638; keys rotate) or `static` (`--kid` for every
    /// key; no automatic rotation). Default: thumbprint in a cluster, static standalone.
    #[arg(long, env = "LATCHKEY_KID_STRATEGY", value_enum)]
    pub kid_strategy: Option<KidStrategyArg>,
    /// How long a key signs before the next one takes over.
    #[arg(long, env = "LATCHKEY_ROTATION_PERIOD", default_value = "30d", value_parser = parse_duration)]
    pub rotation_period: Duration,
    /// Clock difference allowed between Latchkey and verifiers: a retired key stays published
    /// this much longer than the longest token it signed.
    #[arg(long, env = "LATCHKEY_CLOCK_SKEW", default_value = "60s", value_parser = parse_duration)]
    pub clock_skew: Duration,
    /// The longest any verifier keeps the JWKS, whatever its max-age says (APK's router: 2h):
    /// a next key is published this long before it signs. Never less than two --jwks-max-age,
    /// which is also the default.
    #[arg(long, env = "LATCHKEY_VERIFIER_CACHE", value_parser = parse_duration)]
    pub verifier_cache: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KidStrategyArg {
    Thumbprint,
    Static,
}

impl KeyArgs {
    /// The key policy these flags describe, with `default` strategy when none is given; the
    /// JWKS max-age and token lifetime come from the timing flags. Two max-ages bound the
    /// verifier cache from below: a cache between Latchkey and a verifier may double the age
    /// of the set the verifier holds.
    pub fn policy(
        &self,
        default: KidStrategyArg,
        timing: &TimingArgs,
    ) -> latchkey_core::keyring::RotationPolicy {
        use latchkey_core::keyring::{KidStrategy, RotationPolicy};
        RotationPolicy {
            alg: self.key_alg.into(),
            rsa_bits: self.rsa_bits,
            kid: match self.kid_strategy.unwrap_or(default) {
                KidStrategyArg::Thumbprint => KidStrategy::Thumbprint,
                KidStrategyArg::Static => KidStrategy::Static(self.kid.clone()),
            },
            rotation_period: self.rotation_period,
            verifier_cache: self
                .verifier_cache
                .unwrap_or_default()
                .max(2 * timing.jwks_max_age),
            clock_skew: self.clock_skew,
            max_token_lifetime: timing.token_lifetime,
        }
    }
}

/// `latchkey keys ACTION`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,
}

/// Where `latchkey keys` finds the keys: a standalone state directory, or a cluster Secret.
#[derive(Debug, Clone, Args)]
pub struct KeysTarget {
    /// Work on the key ring of this standalone state directory (else: the cluster's Secret).
    #[arg(long, env = "LATCHKEY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Namespace of the keys Secret (default: the kubeconfig's).
    #[arg(long, env = "LATCHKEY_NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub keys_secret: KeysSecretArg,
    /// In a cluster, how long to wait for the leader to carry out a request.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub wait: Duration,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Standalone: the server's timing, which the key schedule follows.
    #[command(flatten)]
    pub timing: TimingArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysAction {
    /// List every key with its state and times.
    List(KeysTarget),
    /// Start a rotation now: a next key is published and signs after the lead time
    /// (--verifier-cache, at least two JWKS max-ages).
    Rotate(KeysTarget),
    /// Remove a compromised key at once and promote the next: its tokens stop verifying.
    Revoke {
        /// The key id to revoke.
        #[arg(value_name = "KID")]
        revoke_kid: String,
        #[command(flatten)]
        target: KeysTarget,
    },
}

impl KeysAction {
    pub fn target(&self) -> &KeysTarget {
        match self {
            KeysAction::List(t) | KeysAction::Rotate(t) | KeysAction::Revoke { target: t, .. } => t,
        }
    }
}

// Issue 13: client credentials.
/// `latchkey clients ACTION`.
#[derive(Debug, Clone, Args)]
pub struct ClientsArgs {
    #[command(subcommand)]
    pub action: ClientsAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClientsAction {
    /// Give a client a new secret and keep the old one valid for --grace, so its callers
    /// switch with no failed request.
    RotateSecret(RotateSecretArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RotateSecretArgs {
    /// The OAuthClient's name.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The OAuthClient's namespace (default: the kubeconfig's; standalone: "default").
    #[arg(long, env = "LATCHKEY_NAMESPACE")]
    pub namespace: Option<String>,
    /// How long the old secret stays valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Standalone: edit these clients manifests (file or directory) instead of the cluster.
    #[arg(long, env = "LATCHKEY_CLIENTS")]
    pub clients: Option<PathBuf>,
    /// How long every replica (or a standalone server's file reload) gets to see the old
    /// secret's grace period before the new secret replaces it.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// `latchkey tokens ACTION`.
#[derive(Debug, Clone, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub action: TokensAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokensAction {
    /// Revoke every token issued to a client before a time (introspection then answers
    /// inactive for them; offline JWT verifiers cannot see it).
    Revoke(RevokeTokensArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RevokeTokensArgs {
    /// The OAuthClient's name.
    #[arg(long)]
    pub client: String,
    /// The OAuthClient's namespace (default: the kubeconfig's; standalone: "default").
    #[arg(long, env = "LATCHKEY_NAMESPACE")]
    pub namespace: Option<String>,
    /// Revoke tokens issued before this time (RFC 3339); default: now.
    #[arg(long)]
    pub before: Option<String>,
    /// Standalone: edit these clients manifests (file or directory) instead of the cluster.
    #[arg(long, env = "LATCHKEY_CLIENTS")]
    pub clients: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Watch OAuthClients only in these namespaces (comma-separated); default: all.
    #[arg(long, env = "LATCHKEY_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Latchkey's own namespace, holding the Lease and the signing-keys Secret (default:
    /// $POD_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long, env = "LATCHKEY_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in the Lease (default: $POD_NAME, else host name and process id).
    #[arg(long, env = "LATCHKEY_IDENTITY")]
    pub identity: Option<String>,
    /// Name of the Lease that elects the one writer.
    #[arg(long, env = "LATCHKEY_LEASE_NAME", default_value = "latchkey-leader")]
    pub lease_name: String,
    /// How long the Lease holds without renewal; another replica takes over after this.
    #[arg(long, env = "LATCHKEY_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How often the Lease is acquired or renewed.
    #[arg(long, env = "LATCHKEY_LEASE_RETRY", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry: Duration,
    #[command(flatten)]
    pub keys_secret: KeysSecretArg,
    /// `tokenUrl` written into generated credentials (default:
    /// https://latchkey.NAMESPACE.svc:PORT/oauth2/token).
    #[arg(long, env = "LATCHKEY_TOKEN_URL")]
    pub token_url: Option<String>,
    // Issue 11: client authentication by assertion.
    /// The audience a ServiceAccount token must name to authenticate a client (default: the
    /// token URL, as --token-url).
    #[arg(long, env = "LATCHKEY_SERVICE_ACCOUNT_AUDIENCE")]
    pub service_account_audience: Option<String>,
    // Issue 13
    /// Name of the Secret (in --namespace) holding the revocation list.
    #[arg(
        long,
        env = "LATCHKEY_REVOCATIONS_SECRET",
        default_value = "latchkey-revocations"
    )]
    pub revocations_secret: String,
    // Issue 13: dynamic client registration.
    #[command(flatten)]
    pub registration: RegistrationArgs,
}

fn parse_origin(text: &str) -> Result<String, String> {
    if latchkey_server::cors::is_origin(text) {
        Ok(text.to_owned())
    } else {
        Err("an origin is scheme and authority only, lowercase: https://app.example.com".into())
    }
}

fn parse_rsa_bits(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(bits) if latchkey_core::signing::RSA_BITS.contains(&bits) => Ok(bits),
        _ => Err(format!("{text:?} is not one of 2048, 3072, 4096")),
    }
}

/// A duration like `3600s`, `5m`, `1h30m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (e.g. 90s, 5m, 1h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_apk() {
        let cli = Cli::try_parse_from(["latchkey", "standalone"]).unwrap();
        let Command::Standalone(a) = cli.command else {
            panic!("standalone parses as Standalone")
        };
        assert_eq!(a.serve.listen.to_string(), "0.0.0.0:9095");
        assert_eq!(a.serve.admin_listen.to_string(), "127.0.0.1:9096");
        assert_eq!(a.serve.issuer, "https://idp.am.wso2.com/token");
        assert_eq!(a.serve.timing.token_lifetime, Duration::from_secs(3600));
        assert_eq!(a.keys.kid, "gateway_certificate_alias");
        assert_eq!(a.keys.key_alg, KeyAlg::Rs256);
        assert_eq!(a.keys.rsa_bits, 2048);
    }

    #[test]
    fn readme_documents_every_flag_and_variable() {
        let readme = include_str!("../../../README.md");
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                assert!(
                    readme.contains(&format!("| `--{long}")),
                    "README lacks --{long}"
                );
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    assert!(readme.contains(&format!("`{env}`")), "README lacks {env}");
                }
            }
        }
    }

    #[test]
    fn shared_flags_have_one_default_everywhere() {
        let keys = Cli::try_parse_from(["latchkey", "keys", "list"]).unwrap();
        let Command::Keys(k) = keys.command else {
            panic!("keys parses as Keys")
        };
        let run = Cli::try_parse_from(["latchkey", "run"]).unwrap();
        let Command::Run(r) = run.command else {
            panic!("run parses as Run")
        };
        let t = &k.action.target().timing;
        assert_eq!(t.jwks_max_age, r.serve.timing.jwks_max_age);
        assert_eq!(t.token_lifetime, r.serve.timing.token_lifetime);
        assert_eq!(
            k.action.target().keys_secret.keys_secret,
            r.keys_secret.keys_secret
        );
    }

    #[test]
    fn the_lead_time_is_the_verifier_cache_and_at_least_two_max_ages() {
        let lead = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["latchkey", "standalone"], args].concat()).unwrap();
            let Command::Standalone(a) = cli.command else {
                panic!("standalone parses as Standalone")
            };
            let policy = a.keys.policy(KidStrategyArg::Thumbprint, &a.serve.timing);
            policy.lead_time().as_secs()
        };
        assert_eq!(lead(&[]), 600, "two 5 min max-ages, as before the flag");
        assert_eq!(lead(&["--jwks-max-age", "1m"]), 120);
        assert_eq!(lead(&["--verifier-cache", "2h10m"]), 7800);
        assert_eq!(
            lead(&["--verifier-cache", "1m"]),
            600,
            "never shorter than verifiers honouring max-age need"
        );
    }

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
    }
}
