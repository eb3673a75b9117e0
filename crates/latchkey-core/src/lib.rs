#![forbid(unsafe_code)]
//! Latchkey's pure domain: who the clients are, what they may ask for, and how a token is made.
//!
//! Nothing here touches the network, Kubernetes or the clock: time is always a parameter, so
//! every rule can be tested without a server and without sleeping.

pub mod assertion;
pub mod authorization_grant;
pub mod certificate;
pub mod client;
pub mod error;
pub mod grant;
pub mod introspection;
pub mod issuer;
pub mod key_driver;
pub mod keyring;
pub mod oauth;
pub mod password;
pub mod registration_token;
pub mod registry;
pub mod revocation;
pub mod scope;
pub mod secret_digest;
pub mod session_keys;
pub mod signing;
pub mod store;
pub mod token;
pub mod token_endpoint_auth;
// Issue 11: whether a client's assertion sources resolve.
pub mod trust_check;
pub mod user;

pub use client::{ClientRecord, ClientSpec};
pub use error::CoreError;
pub use grant::GrantType;
pub use issuer::{Issuer, TokenRequest};
pub use oauth::{ErrorCode, OAuthError};
pub use registry::Registry;
pub use scope::ScopePolicy;
pub use secret_digest::SecretDigest;
pub use signing::{KeyMaterial, KeySet, SigningAlgorithm, SigningKey};
pub use token::{IssuedToken, TokenSettings};
pub use token_endpoint_auth::TokenEndpointAuthMethod;
pub use user::{UserDirectory, UserRecord};

/// The APK defaults Latchkey must reproduce exactly in its APK profile.
pub mod apk {
    /// `iss` of every token unless `--issuer` says otherwise.
    pub const ISSUER: &str = "https://idp.am.wso2.com/token";
    /// The `kid` APK's gateway pins.
    pub const KID: &str = "gateway_certificate_alias";
    /// Default token lifetime, seconds.
    pub const TOKEN_LIFETIME_SECS: u64 = 3600;
    /// APK's default non-production client id.
    pub const DEFAULT_CLIENT_ID: &str = "45f1c5c8-a92e-11ed-afa1-0242ac120002";
    /// APK's default non-production client secret (public knowledge: testing only).
    pub const DEFAULT_CLIENT_SECRET: &str = "4fbd62ec-a92e-11ed-afa1-0242ac120002";
}
