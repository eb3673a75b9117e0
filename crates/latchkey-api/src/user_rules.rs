//! The rules a `User` spec follows, stated once: the CRD schema carries them (OpenAPI patterns
//! and bounds) and [`validate_user`] enforces the same ones on documents that never met an API
//! server. Patterns are RE2 and ECMA-262 alike.

use crate::{
    ApiError,
    rules::{MAX_SECRET_KEY_LEN, MAX_SECRET_NAME_LEN, is_secret_key, is_secret_name},
    user::UserSpec,
};

/// A username, organization or group: no spaces and no control characters (any other
/// Unicode is allowed).
pub const NAME_PATTERN: &str = r"^[^\x00-\x20\x7F]+$";
/// Longest username, in characters.
pub const MAX_USERNAME_LEN: usize = 256;
/// Longest organization or group name, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// Most organizations, most groups.
pub const MAX_ORGANIZATIONS: usize = 64;
pub const MAX_GROUPS: usize = 256;
/// A display name: no control characters.
pub const DISPLAY_NAME_PATTERN: &str = r"^[^\x00-\x1F\x7F]*$";
pub const MAX_DISPLAY_NAME_LEN: usize = 256;
/// An email address: one '@' with something on each side, no spaces or control characters.
pub const EMAIL_PATTERN: &str = r"^[^@\x00-\x20\x7F]+@[^@\x00-\x20\x7F]+$";
/// RFC 5321's longest path.
pub const MAX_EMAIL_LEN: usize = 254;

fn plain(c: char) -> bool {
    !(c <= ' ' || c == '\x7f')
}

/// Whether `s` matches [`NAME_PATTERN`] within `max` characters.
pub fn is_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && s.chars().all(plain)
}

/// Whether `s` matches [`EMAIL_PATTERN`] and its bound.
pub fn is_email(s: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.chars().all(|c| plain(c) && c != '@');
    s.chars().count() <= MAX_EMAIL_LEN
        && s.split_once('@')
            .is_some_and(|(local, domain)| part(local) && part(domain))
}

/// Check a spec against the rules the CRD states, naming the field at fault.
pub fn validate_user(spec: &UserSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::InvalidSpec(m));
    if !is_name(&spec.username, MAX_USERNAME_LEN) {
        return bad(format!(
            "spec.username: must be 1 to {MAX_USERNAME_LEN} characters without spaces or \
             control characters"
        ));
    }
    if let Some(d) = &spec.display_name
        && (d.chars().count() > MAX_DISPLAY_NAME_LEN || d.chars().any(|c| c < ' ' || c == '\x7f'))
    {
        return bad(format!(
            "spec.displayName: must be at most {MAX_DISPLAY_NAME_LEN} characters without \
             control characters"
        ));
    }
    if let Some(e) = &spec.email
        && !is_email(e)
    {
        return bad(format!(
            "spec.email: must be an address with one '@', without spaces, at most \
             {MAX_EMAIL_LEN} characters"
        ));
    }
    for (field, list, max) in [
        ("spec.organizations", &spec.organizations, MAX_ORGANIZATIONS),
        ("spec.groups", &spec.groups, MAX_GROUPS),
    ] {
        if list.len() > max {
            return bad(format!("{field}: at most {max} entries are allowed"));
        }
        if let Some(i) = list.iter().position(|n| !is_name(n, MAX_NAME_LEN)) {
            return bad(format!(
                "{field}[{i}]: must be 1 to {MAX_NAME_LEN} characters without spaces or \
                 control characters"
            ));
        }
    }
    let r = &spec.password_ref;
    if !is_secret_name(&r.name) {
        return bad(format!(
            "spec.passwordRef.name: {:?} is not a DNS subdomain name (lowercase letters, digits, \
             '-' and '.', at most {MAX_SECRET_NAME_LEN} characters)",
            r.name
        ));
    }
    if !is_secret_key(&r.key) {
        return bad(format!(
            "spec.passwordRef.key: {:?} is not a Secret key (letters, digits, '-', '_' and '.', \
             at most {MAX_SECRET_KEY_LEN} characters)",
            r.key
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> UserSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    fn rejected(yaml: &str, field: &str) {
        let e = validate_user(&spec(yaml)).expect_err(yaml).to_string();
        assert!(e.starts_with(&format!("{field}:")), "{yaml}: {e}");
    }

    const BASE: &str = "passwordRef: { name: alice-password }\n";

    #[test]
    fn a_minimal_user_is_valid_and_its_key_defaults() {
        let s = spec(&format!("username: alice\n{BASE}"));
        assert_eq!(s.password_ref.key, "passwordHash");
        validate_user(&s).unwrap();
        let full = spec(
            "username: jörg@example.com\ndisplayName: Jörg Müller\nemail: j@example.com\n\
             emailVerified: true\norganizations: [org1, carbon.super]\ngroups: [admins]\n\
             passwordRef: { name: pw, key: hash }\ndisabled: true\n",
        );
        validate_user(&full).unwrap();
    }

    #[test]
    fn every_field_is_checked_and_named() {
        rejected(&format!("username: ''\n{BASE}"), "spec.username");
        rejected(&format!("username: 'a b'\n{BASE}"), "spec.username");
        rejected(&format!("username: \"a\\tb\"\n{BASE}"), "spec.username");
        rejected(
            &format!("username: {}\n{BASE}", "a".repeat(MAX_USERNAME_LEN + 1)),
            "spec.username",
        );
        rejected(
            &format!("username: a\ndisplayName: \"a\\nb\"\n{BASE}"),
            "spec.displayName",
        );
        for e in ["a", "a@", "@b", "a@b@c", "a b@c", "a@b c"] {
            rejected(&format!("username: a\nemail: '{e}'\n{BASE}"), "spec.email");
        }
        rejected(
            &format!("username: a\norganizations: [ok, '']\n{BASE}"),
            "spec.organizations[1]",
        );
        rejected(
            &format!("username: a\ngroups: ['a b']\n{BASE}"),
            "spec.groups[0]",
        );
        let many = vec!["o"; MAX_ORGANIZATIONS + 1].join(", ");
        rejected(
            &format!("username: a\norganizations: [{many}]\n{BASE}"),
            "spec.organizations",
        );
        rejected(
            "username: a\npasswordRef: { name: Bad_Name }\n",
            "spec.passwordRef.name",
        );
        rejected(
            "username: a\npasswordRef: { name: ok, key: 'a/b' }\n",
            "spec.passwordRef.key",
        );
    }

    #[test]
    fn names_and_emails() {
        for ok in ["a", "ålice", "a.b@c", "x".repeat(256).as_str()] {
            assert!(is_name(ok, 256), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\u{7f}",
            "a\u{0}",
            "x".repeat(257).as_str(),
        ] {
            assert!(!is_name(bad, 256), "{bad:?}");
        }
        assert!(is_email("a@b"));
        assert!(!is_email(&format!("{}@b", "a".repeat(MAX_EMAIL_LEN))));
    }
}
