//! A self-signed X.509 certificate for a signing key, for verifiers that take a certificate
//! rather than a JWK (APK's TokenIssuer certificate mode, `x5c`).

use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair};

use crate::{CoreError, KeyMaterial, SigningAlgorithm};

/// PEM of a certificate for `material`, valid from an hour before `now` (Unix seconds) for
/// `validity`.
pub fn self_signed(
    material: &KeyMaterial,
    kid: &str,
    now: u64,
    validity: Duration,
) -> Result<String, CoreError> {
    let failed = |e: rcgen::Error| CoreError::Key(format!("certificate for {kid:?}: {e}"));
    let alg = match material.alg() {
        SigningAlgorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        SigningAlgorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        SigningAlgorithm::EdDSA => &rcgen::PKCS_ED25519,
    };
    let key = KeyPair::from_pem_and_sign_algo(&material.to_pem(), alg).map_err(failed)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Latchkey signing key {kid}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Latchkey");
    let start = time::OffsetDateTime::from_unix_timestamp(now as i64 - 3600)
        .map_err(|e| CoreError::Key(format!("certificate time: {e}")))?;
    params.not_before = start;
    params.not_after = start + validity + Duration::from_secs(3600);
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_gets_a_certificate() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let m = KeyMaterial::generate(alg, 2048).unwrap();
            let pem = self_signed(&m, "k", 1_700_000_000, Duration::from_secs(86400)).unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{alg}");
        }
    }
}
