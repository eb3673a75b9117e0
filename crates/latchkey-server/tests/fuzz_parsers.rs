//! Property tests ("fuzzing without nightly") of the parsers that take a client's bytes: the
//! token form body and the HTTP Basic header. Cases per property: `PROPTEST_CASES` (256 by
//! default; `make fuzz` runs many more). A panic anywhere is a failure.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use latchkey_server::{basic_auth, form};
use proptest::prelude::*;

/// application/x-www-form-urlencoded encoding of one value (every byte but unreserved ones
/// percent-encoded), as a client would send it.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bytes that look like a form: names, '=', '&', '%' escapes (good and bad), '+'.
fn formish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"grant_type".to_vec()),
        Just(b"client_id".to_vec()),
        Just(b"client_secret".to_vec()),
        Just(b"scope".to_vec()),
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"+".to_vec()),
        Just(b"%".to_vec()),
        "%[0-9A-Fa-fzZ]{0,2}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn the_form_parser_never_panics_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = form::parse_token_form(&body);
    }

    #[test]
    fn the_form_parser_never_panics_on_form_shaped_bytes(body in formish()) {
        let _ = form::parse_token_form(&body);
    }

    #[test]
    fn form_values_round_trip(grant in "\\PC{0,40}", id in "\\PC{1,40}", scope in "\\PC{1,40}") {
        let body = format!(
            "grant_type={}&client_id={}&scope={}",
            form_encode(&grant), form_encode(&id), form_encode(&scope)
        );
        let parsed = form::parse_token_form(body.as_bytes());
        prop_assert!(parsed.is_ok(), "{body}");
        let f = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f.client_id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(f.scope.as_deref(), Some(scope.as_str()));
        // An empty value counts as omitted.
        prop_assert_eq!(f.grant_type.as_deref(), (!grant.is_empty()).then_some(grant.as_str()));
    }

    #[test]
    fn the_basic_parser_never_panics_on_any_bytes(header in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = basic_auth::parse(&header);
    }

    #[test]
    fn the_basic_parser_never_panics_on_any_base64_payload(raw in proptest::collection::vec(any::<u8>(), 0..256), scheme in "(?i)basic|bearer|") {
        let header = format!("{scheme} {}", STANDARD.encode(raw));
        let _ = basic_auth::parse(header.as_bytes());
    }

    #[test]
    fn basic_credentials_round_trip(id in "\\PC{1,60}", secret in "\\PC{0,60}") {
        let header = format!("Basic {}", STANDARD.encode(format!("{}:{}", form_encode(&id), form_encode(&secret))));
        let parsed = basic_auth::parse(header.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let c = parsed.ok_or_else(|| TestCaseError::fail("not Basic"))?;
        prop_assert_eq!(c.client_id, id);
        prop_assert_eq!(c.client_secret, secret);
    }
}
