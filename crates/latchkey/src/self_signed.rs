//! The self-signed serving certificate made at first start and kept in the state directory,
//! so that a client that pinned it keeps working across restarts. It is made again when the
//! requested names change or it nears expiry.

use std::{net::IpAddr, path::Path, time::Duration};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{error::Error, files};

/// Names every self-signed certificate carries.
pub const DEFAULT_SANS: [&str; 4] = ["localhost", "127.0.0.1", "::1", "idp.am.wso2.com"];
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";
const META_FILE: &str = "tls.json";

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Meta {
    sans: Vec<String>,
    not_after_unix: i64,
}

/// The SANs for a certificate: the defaults plus `extra`, without repeats.
pub fn sans(extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
    for s in extra {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    all
}

/// PEM certificate and key from `dir`, made (again) when missing, stale or for other names.
pub fn load_or_create(dir: &Path, extra_sans: &[String]) -> Result<(String, String), Error> {
    let wanted = sans(extra_sans);
    let now = OffsetDateTime::now_utc();
    let meta: Option<Meta> = std::fs::read(dir.join(META_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let fresh = meta.as_ref().is_some_and(|m| {
        m.sans == wanted && m.not_after_unix > (now + RENEW_BEFORE).unix_timestamp()
    });
    if fresh
        && let (Ok(cert), Ok(key)) = (
            std::fs::read_to_string(dir.join(CERT_FILE)),
            std::fs::read_to_string(dir.join(KEY_FILE)),
        )
    {
        return Ok((cert, key));
    }
    let (cert, key, not_after) = generate(&wanted, now)?;
    files::write_atomic(&dir.join(KEY_FILE), key.as_bytes(), true)?;
    files::write_atomic(&dir.join(CERT_FILE), cert.as_bytes(), false)?;
    let meta = Meta {
        sans: wanted,
        not_after_unix: not_after.unix_timestamp(),
    };
    let meta = serde_json::to_vec_pretty(&meta).map_err(|e| Error::SelfSigned(e.to_string()))?;
    files::write_atomic(&dir.join(META_FILE), &meta, false)?;
    tracing::info!(dir = %dir.display(), "made a self-signed serving certificate");
    Ok((cert, key))
}

fn generate(
    sans: &[String],
    now: OffsetDateTime,
) -> Result<(String, String, OffsetDateTime), Error> {
    let failed = |e: rcgen::Error| Error::SelfSigned(e.to_string());
    for san in sans {
        if san.parse::<IpAddr>().is_err()
            && !san
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.*".contains(&b))
        {
            return Err(Error::Usage(format!(
                "--tls-san {san:?} is neither a DNS name nor an IP address"
            )));
        }
    }
    let mut params = CertificateParams::new(sans.to_vec()).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "latchkey");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Latchkey self-signed");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::minutes(5);
    let not_after = now + VALIDITY;
    params.not_after = not_after;
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_calls_and_remade_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(load_or_create(dir.path(), &[]).unwrap(), first);
        let other = load_or_create(dir.path(), &["idp.example.com".into()]).unwrap();
        assert_ne!(other, first);
        assert!(
            latchkey_server::tls::certified_key_from_pem(other.0.as_bytes(), other.1.as_bytes())
                .is_ok()
        );
    }

    #[test]
    fn refuses_junk_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_or_create(dir.path(), &["bad name".into()]).is_err());
    }
}
