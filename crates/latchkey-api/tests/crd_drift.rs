//! The committed CRD manifest is exactly what `latchkey crd` prints.

use std::path::Path;

#[test]
fn committed_crd_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/crds/oauthclients.latchkey.dev.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make generate`", path.display()));
    let generated = latchkey_api::crd::crd_yaml();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{} is out of date with the OAuthClient types (first difference at line {}); \
             run `make generate` and commit the result",
            path.display(),
            line + 1
        );
    }
}

// Issue 12: the User CRD.
#[test]
fn committed_user_crd_matches_the_types() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/crds/users.latchkey.dev.yaml");
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make generate`", path.display()));
    assert!(
        committed == latchkey_api::user_crd::crd_yaml(),
        "{} is out of date with the User types; run `make generate` and commit the result",
        path.display()
    );
}
