//! Signing rates per CPU-second of one thread: the raw RS256, ES256 and Ed25519 signatures of
//! aws-lc-rs (the physical limit of a token), Latchkey's whole mint (claims, JSON, base64,
//! signature) for each, and jsonwebtoken's `encode` (which parses the key again per call), for
//! comparison.
//!
//! Prints `name=value` lines that `tests/bench/bench.sh` reads. CPU time is this thread's own
//! on-CPU time from /proc/thread-self/schedstat, so other load on the machine does not count.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use aws_lc_rs::{
    rand::SystemRandom,
    rsa,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair},
};
use latchkey_core::{
    ClientRecord, ClientSpec, GrantType, KeyMaterial, SigningAlgorithm, SigningKey, TokenSettings,
    token,
};

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Run `op` until `budget` of CPU time is spent; operations per CPU-second.
fn rate(budget: Duration, mut op: impl FnMut()) -> f64 {
    for _ in 0..50 {
        op(); // warm up caches and lazy init
    }
    let start = thread_cpu_ns();
    let mut n = 0u64;
    loop {
        for _ in 0..50 {
            op();
        }
        n += 50;
        let spent = thread_cpu_ns() - start;
        if spent >= budget.as_nanos() as u64 {
            return n as f64 / (spent as f64 / 1e9);
        }
    }
}

/// The bare RS256 signature of aws-lc-rs.
fn raw_rs256(budget: Duration, pkcs8: &[u8], rng: &SystemRandom, message: &[u8]) -> f64 {
    let pair = rsa::KeyPair::from_pkcs8(pkcs8).unwrap();
    let mut sig = vec![0u8; pair.public_modulus_len()];
    rate(budget, || {
        pair.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut sig)
            .unwrap();
    })
}

/// The bare ES256 signature.
fn raw_es256(budget: Duration, rng: &SystemRandom, message: &[u8]) -> f64 {
    let es = KeyMaterial::generate(SigningAlgorithm::ES256, 0).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem::parse(es.to_pem()).unwrap().into_contents(),
    )
    .unwrap();
    rate(budget, || {
        std::hint::black_box(pair.sign(rng, message).unwrap());
    })
}

/// The bare Ed25519 signature.
fn raw_ed25519(budget: Duration, message: &[u8]) -> f64 {
    let ed = KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap();
    let pair =
        Ed25519KeyPair::from_pkcs8(&pem::parse(ed.to_pem()).unwrap().into_contents()).unwrap();
    rate(budget, || {
        std::hint::black_box(pair.sign(message));
    })
}

fn main() {
    let secs: u64 = std::env::var("SIGN_RATE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let budget = Duration::from_secs(secs);
    let material = KeyMaterial::generate(SigningAlgorithm::RS256, 2048).unwrap();
    let pkcs8 = pem::parse(material.to_pem()).unwrap().into_contents();

    let rng = SystemRandom::new();
    let message = vec![b'a'; 420];

    // SIGN_RATE_ONLY=rs256|es256|ed25519: just that raw rate, for the short samples
    // `bench.sh` takes right beside the loads they are compared with.
    if let Ok(only) = std::env::var("SIGN_RATE_ONLY") {
        let raw = match only.as_str() {
            "rs256" => raw_rs256(budget, &pkcs8, &rng, &message),
            "es256" => raw_es256(budget, &rng, &message),
            "ed25519" => raw_ed25519(budget, &message),
            other => panic!("SIGN_RATE_ONLY={other}: use rs256, es256 or ed25519"),
        };
        println!("{only}_raw_signs_per_cpu_second={raw:.0}");
        return;
    }

    // 1. The bare signatures over a token-sized message.
    let raw = raw_rs256(budget, &pkcs8, &rng, &message);
    let es_raw = raw_es256(budget, &rng, &message);
    let ed_raw = raw_ed25519(budget, &message);
    let es = KeyMaterial::generate(SigningAlgorithm::ES256, 0).unwrap();
    let ed = KeyMaterial::generate(SigningAlgorithm::EdDSA, 0).unwrap();

    // 2. Latchkey's mint: claims, JSON, jti, base64 and the signature.
    let client = ClientRecord::new(ClientSpec {
        client_id: "45f1c5c8-a92e-11ed-afa1-0242ac120002".into(),
        secret: latchkey_core::SecretDigest::of(b"x"),
        grant_types: vec![GrantType::ClientCredentials],
        default_scopes: vec!["default".into()],
        ..ClientSpec::default()
    })
    .unwrap();
    let settings = TokenSettings::default();
    let mint_with = |m: &KeyMaterial| {
        let key = SigningKey::new("gateway_certificate_alias", m).unwrap();
        rate(budget, || {
            token::mint(&key, &settings, &client, "default", SystemTime::now()).unwrap();
        })
    };
    let mint = mint_with(&material);
    let es_mint = mint_with(&es);
    let ed_mint = mint_with(&ed);

    // 3. jsonwebtoken's encode, which parses the private key on every call.
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(material.to_pem().as_bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let claims = serde_json::json!({"sub": "x", "scope": "default"});
    let jwt = rate(budget / 2, || {
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
    });

    println!("rs256_raw_signs_per_cpu_second={raw:.0}");
    println!("es256_raw_signs_per_cpu_second={es_raw:.0}");
    println!("ed25519_raw_signs_per_cpu_second={ed_raw:.0}");
    println!("latchkey_mint_per_cpu_second={mint:.0}");
    println!("latchkey_es256_mint_per_cpu_second={es_mint:.0}");
    println!("latchkey_eddsa_mint_per_cpu_second={ed_mint:.0}");
    println!("jsonwebtoken_encode_per_cpu_second={jwt:.0}");
    println!("mint_to_raw_ratio={:.3}", mint / raw);
    println!("jsonwebtoken_to_raw_ratio={:.3}", jwt / raw);
}
