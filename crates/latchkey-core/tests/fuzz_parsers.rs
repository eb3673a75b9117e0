//! Property tests ("fuzzing without nightly") of the parsers that read files an operator or
//! another program wrote: the key ring JSON and PEM private keys. Cases per property:
//! `PROPTEST_CASES` (256 by default; `make fuzz` runs many more). A panic is a failure.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use latchkey_core::{KeyMaterial, keyring::KeyRing};
use proptest::prelude::*;

/// A well-formed key ring document to mutate (its key is not a real key: the parser must
/// refuse or accept it without panicking either way).
const RING: &str = r#"{"keys":[{"kid":"k1","alg":"EdDSA","state":"active","createdAt":1700000000,"activatedAt":1700000000,"maxTokenLifetime":3600,"privateKeyPem":"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"}]}"#;

/// `base` with a few bytes replaced, inserted or removed at `edits` positions.
fn mutated(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8).prop_map(move |edits| {
        let mut v = base.to_vec();
        for (at, byte, op) in edits {
            let i = at % (v.len() + 1);
            match op {
                0 if i < v.len() => v[i] = byte,
                1 => v.insert(i, byte),
                _ if i < v.len() => {
                    v.remove(i);
                }
                _ => {}
            }
        }
        v
    })
}

fn pem_label() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("PRIVATE KEY"),
        Just("RSA PRIVATE KEY"),
        Just("EC PRIVATE KEY"),
        Just("CERTIFICATE"),
        Just("ENCRYPTED PRIVATE KEY"),
    ]
}

proptest! {
    #[test]
    fn the_key_ring_parser_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = KeyRing::from_json(&bytes);
    }

    #[test]
    fn the_key_ring_parser_never_panics_on_a_mutated_ring(bytes in mutated(RING.as_bytes())) {
        let _ = KeyRing::from_json(&bytes);
    }

    #[test]
    fn the_pem_key_parser_never_panics_on_any_text(text in "\\PC{0,512}") {
        let _ = KeyMaterial::from_any_pem(&text);
    }

    #[test]
    fn the_pem_key_parser_never_panics_on_any_der(label in pem_label(), der in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let text = format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der));
        let _ = KeyMaterial::from_any_pem(&text);
    }

    #[test]
    fn the_pem_key_parser_never_panics_on_a_mutated_key(bytes in mutated(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n")) {
        let _ = KeyMaterial::from_any_pem(&String::from_utf8_lossy(&bytes));
    }
}
