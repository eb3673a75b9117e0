//! Where each public resource lives. Both the router (`app`) and the documents that advertise
//! the paths (`discovery`) read them from here, so neither imports the other.

/// The token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// Paths of the JWK Set: Latchkey's own (advertised), the well-known one, and APK 1.x's.
pub const JWKS_PATHS: [&str; 3] = ["/oauth2/jwks", "/.well-known/jwks.json", "/oauth2/keys"];
/// The active key's X.509 certificate (PEM), for verifiers in certificate mode.
pub const CERTIFICATE_PATH: &str = "/oauth2/certificate";
/// RFC 8414's well-known suffix for authorization server metadata.
pub const METADATA_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";

// Issue 13
/// Token introspection (RFC 7662).
pub const INTROSPECTION_PATH: &str = "/oauth2/introspect";
/// Token revocation (RFC 7009).
pub const REVOCATION_PATH: &str = "/oauth2/revoke";
// Issue 13: registration.
/// Dynamic client registration (RFC 7591); `<it>/<client_id>` manages one (RFC 7592).
pub const REGISTRATION_PATH: &str = "/oauth2/register";
/// APK's inbuilt IdP's registration path, served the same way.
pub const APK_REGISTRATION_PATH: &str = "/dcr/register";

// Issue 12: people sign in.
/// The authorization endpoint (RFC 6749 §3.1).
pub const AUTHORIZE_PATH: &str = "/oauth2/authorize";
/// Where the login form posts.
pub const LOGIN_PATH: &str = "/oauth2/login";
/// Where the consent form posts.
pub const CONSENT_PATH: &str = "/oauth2/consent";
/// OpenID Connect's UserInfo endpoint.
pub const USERINFO_PATH: &str = "/oauth2/userinfo";
/// RP-initiated logout (OpenID Connect's end-session endpoint).
pub const LOGOUT_PATH: &str = "/oauth2/logout";
/// OpenID Connect Discovery's well-known suffix.
pub const OPENID_WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Where the OpenID configuration is served: after the issuer's path (Discovery 1.0 §4), and
/// at the root.
pub fn openid_configuration_paths(issuer: &str) -> Vec<String> {
    let path = issuer_path(issuer);
    let mut paths = vec![format!("{path}{OPENID_WELL_KNOWN}")];
    if !path.is_empty() {
        paths.push(OPENID_WELL_KNOWN.to_owned());
    }
    paths
}

/// The path part of an issuer identifier (`https://host/token` → `/token`), without a
/// trailing '/'; empty for an issuer at the host's root.
pub fn issuer_path(issuer: &str) -> &str {
    let after_scheme = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.trim_end_matches('/')
}

/// Where the metadata is served: RFC 8414 §3.1 inserts the well-known suffix between the host
/// and the issuer's path, so discovery from the issuer identifier finds it. Also at the root,
/// and after the issuer's path (OpenID Connect Discovery's placement, which some OAuth
/// libraries use for RFC 8414 too, e.g. Nimbus' `AuthorizationServerMetadata.resolve`).
pub fn metadata_paths(issuer: &str) -> Vec<String> {
    let path = issuer_path(issuer);
    let mut paths = vec![format!("{METADATA_WELL_KNOWN}{path}")];
    if !path.is_empty() {
        paths.push(METADATA_WELL_KNOWN.to_owned());
        paths.push(format!("{path}{METADATA_WELL_KNOWN}"));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_paths() {
        assert_eq!(issuer_path("https://idp.am.wso2.com/token"), "/token");
        assert_eq!(issuer_path("https://idp.example.com"), "");
        assert_eq!(issuer_path("https://idp.example.com/"), "");
        assert_eq!(issuer_path("https://h:8443/a/b/"), "/a/b");
    }

    #[test]
    fn metadata_is_found_from_the_issuer_identifier() {
        assert_eq!(
            metadata_paths("https://idp.am.wso2.com/token"),
            [
                "/.well-known/oauth-authorization-server/token",
                "/.well-known/oauth-authorization-server",
                "/token/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            metadata_paths("https://idp.example.com"),
            ["/.well-known/oauth-authorization-server"]
        );
    }

    // Issue 12
    #[test]
    fn openid_configuration_follows_the_issuer_path() {
        assert_eq!(
            openid_configuration_paths("https://idp.am.wso2.com/token"),
            [
                "/token/.well-known/openid-configuration",
                "/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            openid_configuration_paths("https://idp.example.com/"),
            ["/.well-known/openid-configuration"]
        );
    }
}
