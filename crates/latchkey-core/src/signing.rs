//! Signing keys: generation, parsing, the public JWK, and signing with a key pair that is
//! parsed once for its whole life (parsing per signature would halve RS256 throughput).

use std::{str::FromStr, sync::Arc};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType,
};

use crate::CoreError;

/// A JWS algorithm Latchkey signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SigningAlgorithm {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "RS256" => Ok(SigningAlgorithm::RS256),
            "ES256" => Ok(SigningAlgorithm::ES256),
            "EdDSA" => Ok(SigningAlgorithm::EdDSA),
            other => Err(CoreError::Key(format!(
                "unknown algorithm {other:?} (expected RS256, ES256 or EdDSA)"
            ))),
        }
    }
}

/// RSA modulus sizes Latchkey generates.
pub const RSA_BITS: [u32; 3] = [2048, 3072, 4096];

/// A private key as PKCS#8 DER, with the algorithm it signs for. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    alg: SigningAlgorithm,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({}, <redacted>)", self.alg)
    }
}

const PEM_TAG: &str = "PRIVATE KEY";

impl KeyMaterial {
    /// Make a new private key. `rsa_bits` is used for RS256 only.
    pub fn generate(alg: SigningAlgorithm, rsa_bits: u32) -> Result<KeyMaterial, CoreError> {
        let failed = |what: &str| CoreError::Key(format!("could not generate {what} key"));
        let pkcs8 = match alg {
            SigningAlgorithm::RS256 => {
                let size = match rsa_bits {
                    2048 => rsa::KeySize::Rsa2048,
                    3072 => rsa::KeySize::Rsa3072,
                    4096 => rsa::KeySize::Rsa4096,
                    other => {
                        return Err(CoreError::Key(format!(
                            "RSA key size {other} is not one of 2048, 3072, 4096"
                        )));
                    }
                };
                let pair = rsa::KeyPair::generate(size).map_err(|_| failed("RSA"))?;
                pair.as_der().map_err(|_| failed("RSA"))?.as_ref().to_vec()
            }
            SigningAlgorithm::ES256 => {
                let pair = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| failed("P-256"))?;
                pair.to_pkcs8v1()
                    .map_err(|_| failed("P-256"))?
                    .as_ref()
                    .to_vec()
            }
            SigningAlgorithm::EdDSA => {
                let pair = Ed25519KeyPair::generate().map_err(|_| failed("Ed25519"))?;
                pair.to_pkcs8()
                    .map_err(|_| failed("Ed25519"))?
                    .as_ref()
                    .to_vec()
            }
        };
        Ok(KeyMaterial { alg, pkcs8 })
    }

    /// Key material from PKCS#8 DER; checked by parsing it.
    pub fn from_pkcs8(alg: SigningAlgorithm, pkcs8: Vec<u8>) -> Result<KeyMaterial, CoreError> {
        let material = KeyMaterial { alg, pkcs8 };
        Signer::parse(&material)?;
        Ok(material)
    }

    /// Key material from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(alg: SigningAlgorithm, text: &str) -> Result<KeyMaterial, CoreError> {
        let block = pem::parse(text).map_err(|e| CoreError::Key(format!("not a PEM key: {e}")))?;
        if block.tag() != PEM_TAG {
            return Err(CoreError::Key(format!(
                "expected a PKCS#8 \"{PEM_TAG}\" PEM block, found {:?}",
                block.tag()
            )));
        }
        KeyMaterial::from_pkcs8(alg, block.into_contents())
    }

    /// Key material from a PEM of any common private-key form — PKCS#8 (`PRIVATE KEY`),
    /// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`, P-256) — as cert-manager and
    /// vault operators write them; the algorithm follows from the key.
    pub fn from_any_pem(text: &str) -> Result<KeyMaterial, CoreError> {
        let block = pem::parse(text).map_err(|e| CoreError::Key(format!("not a PEM key: {e}")))?;
        let der = block.contents();
        let unusable = |what: &str| CoreError::Key(format!("{what} key is not usable"));
        match block.tag() {
            PEM_TAG => [
                SigningAlgorithm::RS256,
                SigningAlgorithm::ES256,
                SigningAlgorithm::EdDSA,
            ]
            .into_iter()
            .find_map(|alg| KeyMaterial::from_pkcs8(alg, der.to_vec()).ok())
            .ok_or_else(|| unusable("the PKCS#8")),
            "RSA PRIVATE KEY" => {
                let pair = rsa::KeyPair::from_der(der).map_err(|_| unusable("the PKCS#1 RSA"))?;
                let pkcs8 = pair
                    .as_der()
                    .map_err(|_| unusable("the PKCS#1 RSA"))?
                    .as_ref()
                    .to_vec();
                KeyMaterial::from_pkcs8(SigningAlgorithm::RS256, pkcs8)
            }
            "EC PRIVATE KEY" => {
                let pair = EcdsaKeyPair::from_private_key_der(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                )
                .map_err(|_| unusable("the SEC1 P-256"))?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| unusable("the SEC1 P-256"))?
                    .as_ref()
                    .to_vec();
                KeyMaterial::from_pkcs8(SigningAlgorithm::ES256, pkcs8)
            }
            other => Err(CoreError::Key(format!("unsupported PEM block {other:?}"))),
        }
    }

    /// PKCS#8 PEM text of the private key.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new(PEM_TAG, self.pkcs8.clone()))
    }

    pub fn alg(&self) -> SigningAlgorithm {
        self.alg
    }
}

/// A parsed key pair, kept for the key's lifetime.
enum Signer {
    Rsa(rsa::KeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    fn parse(m: &KeyMaterial) -> Result<Signer, CoreError> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            CoreError::Key(format!("{} key rejected: {e}", m.alg))
        };
        Ok(match m.alg {
            SigningAlgorithm::RS256 => {
                let pair = rsa::KeyPair::from_pkcs8(&m.pkcs8).map_err(rejected)?;
                let bits = pair.public_modulus_len() * 8;
                if !RSA_BITS.contains(&(bits as u32)) {
                    return Err(CoreError::Key(format!(
                        "RSA key of {bits} bits; 2048, 3072 or 4096 are accepted"
                    )));
                }
                Signer::Rsa(pair)
            }
            SigningAlgorithm::ES256 => Signer::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &m.pkcs8)
                    .map_err(rejected)?,
            ),
            SigningAlgorithm::EdDSA => Signer::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&m.pkcs8).map_err(rejected)?,
            ),
        })
    }

    fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<Vec<u8>, CoreError> {
        match self {
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
                    .map_err(|_| CoreError::Signing)?;
                Ok(sig)
            }
            Signer::Ecdsa(pair) => Ok(pair
                .sign(rng, message)
                .map_err(|_| CoreError::Signing)?
                .as_ref()
                .to_vec()),
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    fn public_parameters(&self) -> Result<AlgorithmParameters, CoreError> {
        Ok(match self {
            Signer::Rsa(pair) => {
                let public = pair.public_key();
                AlgorithmParameters::RSA(RSAKeyParameters {
                    key_type: RSAKeyType::RSA,
                    n: B64.encode(public.modulus().big_endian_without_leading_zero()),
                    e: B64.encode(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ecdsa(pair) => {
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                if point.len() != 65 || point[0] != 4 {
                    return Err(CoreError::Key(
                        "unexpected P-256 public key encoding".into(),
                    ));
                }
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: B64.encode(&point[1..33]),
                    y: B64.encode(&point[33..65]),
                })
            }
            Signer::Ed25519(pair) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: B64.encode(pair.public_key().as_ref()),
            }),
        })
    }

    /// SubjectPublicKeyInfo DER of the public key.
    fn public_key_der(&self) -> Result<Vec<u8>, CoreError> {
        let failed = |_| CoreError::Key("could not encode the public key".into());
        Ok(match self {
            Signer::Rsa(pair) => pair
                .public_key()
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ecdsa(pair) => pair
                .public_key()
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Signer::Ed25519(pair) => pair
                .public_key()
                .as_der()
                .map_err(failed)?
                .as_ref()
                .to_vec(),
        })
    }
}

/// A key that can sign tokens: its id, algorithm, parsed key pair and public JWK.
pub struct SigningKey {
    kid: String,
    alg: SigningAlgorithm,
    signer: Signer,
    rng: SystemRandom,
    jwk: Jwk,
    public_key_der: Vec<u8>,
    /// `base64url(header) + "."`, the constant prefix of every token this key signs.
    header_prefix: String,
    /// A self-signed certificate of the key (DER), when there is one.
    certificate_der: Option<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parse key material once and prepare everything a signature needs.
    pub fn new(kid: impl Into<String>, material: &KeyMaterial) -> Result<SigningKey, CoreError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(CoreError::Key("kid is empty".into()));
        }
        let signer = Signer::parse(material)?;
        let alg = material.alg;
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(match alg {
                    SigningAlgorithm::RS256 => KeyAlgorithm::RS256,
                    SigningAlgorithm::ES256 => KeyAlgorithm::ES256,
                    SigningAlgorithm::EdDSA => KeyAlgorithm::EdDSA,
                }),
                key_id: Some(kid.clone()),
                ..CommonParameters::default()
            },
            algorithm: signer.public_parameters()?,
        };
        // Member order alg, typ, kid: exactly APK's header.
        let header = format!(
            r#"{{"alg":"{}","typ":"JWT","kid":{}}}"#,
            alg.as_str(),
            serde_json::Value::String(kid.clone())
        );
        Ok(SigningKey {
            public_key_der: signer.public_key_der()?,
            header_prefix: format!("{}.", B64.encode(header)),
            kid,
            alg,
            signer,
            rng: SystemRandom::new(),
            jwk,
            certificate_der: None,
        })
    }

    /// Attach the key's certificate: published as the JWK's `x5c` and `x5t#S256` (RFC 7517
    /// §4.7, §4.9) and served as PEM. A certificate that does not hold this key is refused:
    /// publishing it would tell verifiers a lie.
    pub fn with_certificate(mut self, der: Vec<u8>) -> Result<SigningKey, CoreError> {
        // The certificate embeds the SubjectPublicKeyInfo verbatim.
        if !der
            .windows(self.public_key_der.len())
            .any(|w| w == self.public_key_der.as_slice())
        {
            return Err(CoreError::Key(format!(
                "the certificate of {:?} is not for this key",
                self.kid
            )));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        self.jwk.common.x509_chain =
            Some(vec![base64::engine::general_purpose::STANDARD.encode(&der)]);
        self.jwk.common.x509_sha256_fingerprint = Some(B64.encode(digest.as_ref()));
        self.certificate_der = Some(der);
        Ok(self)
    }

    /// The certificate as PEM, if the key has one.
    pub fn certificate_pem(&self) -> Option<String> {
        self.certificate_der
            .as_ref()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> Result<String, CoreError> {
        self.jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|e| CoreError::Key(format!("JWK thumbprint: {e}")))
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlgorithm {
        self.alg
    }

    /// The public key as a JWK (`kid`, `alg`, `use`).
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// A compact JWS of the given claims JSON: `header.payload.signature`.
    pub fn sign_compact(&self, claims_json: &[u8]) -> Result<String, CoreError> {
        let mut out =
            String::with_capacity(self.header_prefix.len() + claims_json.len() * 4 / 3 + 400);
        out.push_str(&self.header_prefix);
        B64.encode_string(claims_json, &mut out);
        let signature = self.signer.sign(&self.rng, out.as_bytes())?;
        out.push('.');
        B64.encode_string(signature, &mut out);
        Ok(out)
    }
}

/// The keys of one moment: the one that signs and every one that verifiers should trust.
#[derive(Debug)]
pub struct KeySet {
    active: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
    jwks_json: String,
    etag: String,
}

impl KeySet {
    /// A set with one active key, published alone.
    pub fn single(active: SigningKey) -> KeySet {
        let active = Arc::new(active);
        // A one-key set cannot break the rules `new` checks.
        #[allow(clippy::expect_used)]
        KeySet::new(active.clone(), vec![active]).expect("a single key forms a valid set")
    }

    /// A set whose `published` keys (active one included) make up the JWKS, in that order.
    pub fn new(
        active: Arc<SigningKey>,
        published: Vec<Arc<SigningKey>>,
    ) -> Result<KeySet, CoreError> {
        if !published.iter().any(|k| Arc::ptr_eq(k, &active)) {
            return Err(CoreError::KeySet("the active key must be published".into()));
        }
        for (i, k) in published.iter().enumerate() {
            if published[..i].iter().any(|o| o.kid == k.kid) {
                return Err(CoreError::KeySet(format!("kid {:?} appears twice", k.kid)));
            }
        }
        let set = JwkSet {
            keys: published.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks_json = serde_json::to_string(&set)
            .map_err(|e| CoreError::KeySet(format!("JWKS could not be encoded: {e}")))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jwks_json.as_bytes());
        let etag = format!("\"{}\"", B64.encode(&digest.as_ref()[..16]));
        Ok(KeySet {
            active,
            published,
            jwks_json,
            etag,
        })
    }

    /// The key that signs now.
    pub fn active(&self) -> &Arc<SigningKey> {
        &self.active
    }

    pub fn published(&self) -> &[Arc<SigningKey>] {
        &self.published
    }

    /// The JWK Set document, encoded once.
    pub fn jwks_json(&self) -> &str {
        &self.jwks_json
    }

    /// A strong entity tag of the JWKS document (quoted).
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn verify(key: &SigningKey, token: &str) -> serde_json::Value {
        let decoding = DecodingKey::from_jwk(key.jwk()).unwrap();
        let alg = match key.alg() {
            SigningAlgorithm::RS256 => Algorithm::RS256,
            SigningAlgorithm::ES256 => Algorithm::ES256,
            SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        };
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(token, &decoding, &v)
            .unwrap()
            .claims
    }

    #[test]
    fn every_algorithm_signs_what_its_jwk_verifies() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let material = KeyMaterial::generate(alg, 2048).unwrap();
            let key = SigningKey::new("k1", &material).unwrap();
            let token = key.sign_compact(br#"{"sub":"x"}"#).unwrap();
            assert_eq!(verify(&key, &token)["sub"], "x", "{alg}");
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some("k1"));
        }
    }

    #[test]
    fn pem_round_trip_keeps_the_key() {
        let material = KeyMaterial::generate(SigningAlgorithm::ES256, 2048).unwrap();
        let back = KeyMaterial::from_pem(SigningAlgorithm::ES256, &material.to_pem()).unwrap();
        assert_eq!(material, back);
        assert!(KeyMaterial::from_pem(SigningAlgorithm::RS256, &material.to_pem()).is_err());
        assert!(!format!("{material:?}").contains("PRIVATE"));
    }

    #[test]
    fn header_is_exactly_alg_typ_kid() {
        let material = KeyMaterial::generate(SigningAlgorithm::EdDSA, 2048).unwrap();
        let key = SigningKey::new("gateway_certificate_alias", &material).unwrap();
        let token = key.sign_compact(b"{}").unwrap();
        let header = B64.decode(token.split('.').next().unwrap()).unwrap();
        assert_eq!(
            header,
            br#"{"alg":"EdDSA","typ":"JWT","kid":"gateway_certificate_alias"}"#
        );
    }

    #[test]
    fn any_common_pem_form_is_read() {
        for alg in [
            SigningAlgorithm::RS256,
            SigningAlgorithm::ES256,
            SigningAlgorithm::EdDSA,
        ] {
            let m = KeyMaterial::generate(alg, 2048).unwrap();
            assert_eq!(KeyMaterial::from_any_pem(&m.to_pem()).unwrap(), m);
        }
        // PKCS#1 and SEC1, as OpenSSL writes them.
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let pkcs1 = openssl(&["genrsa", "-traditional", "2048"]);
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
        assert_eq!(
            KeyMaterial::from_any_pem(&pkcs1).unwrap().alg(),
            SigningAlgorithm::RS256
        );
        let sec1 = openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout"]);
        assert!(sec1.contains("BEGIN EC PRIVATE KEY"));
        assert_eq!(
            KeyMaterial::from_any_pem(&sec1).unwrap().alg(),
            SigningAlgorithm::ES256
        );
        assert!(
            KeyMaterial::from_any_pem("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n").is_err()
        );
    }

    #[test]
    fn rejects_unsupported_rsa_sizes() {
        assert!(KeyMaterial::generate(SigningAlgorithm::RS256, 1024).is_err());
    }

    #[test]
    fn key_sets_need_a_published_active_key_and_unique_kids() {
        let m = KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap();
        let a = Arc::new(SigningKey::new("a", &m).unwrap());
        let a2 = Arc::new(SigningKey::new("a", &m).unwrap());
        assert!(KeySet::new(a.clone(), vec![]).is_err());
        assert!(KeySet::new(a.clone(), vec![a.clone(), a2]).is_err());
        let set = KeySet::new(a.clone(), vec![a]).unwrap();
        let jwks: serde_json::Value = serde_json::from_str(set.jwks_json()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "a");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
        assert!(set.etag().starts_with('"'));
    }
}
