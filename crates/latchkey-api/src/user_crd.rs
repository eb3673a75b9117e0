//! The `User` CustomResourceDefinition, generated from the Rust types: what `latchkey crd users`
//! prints and `manifests/crds/users.latchkey.dev.yaml` holds.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{crd::unwrap_descriptions, user::User};

/// The CRD as the API server receives it.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = User::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            && let Ok(mut value) = serde_json::to_value(&*schema)
        {
            unwrap_descriptions(&mut value);
            if let Ok(rewrapped) = serde_json::from_value(value) {
                *schema = rewrapped;
            }
        }
    }
    crd
}

/// The CRD as YAML, the same bytes on every run.
pub fn crd_yaml() -> String {
    // A CRD is plain data, which serde_norway always serializes.
    #[allow(clippy::expect_used)]
    let body = serde_norway::to_string(&crd()).expect("a CRD serializes to YAML");
    format!("{}{body}", crate::crd::HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{crd::tests::structural, user_rules::*};
    use serde_json::{Value, json};

    fn schema() -> Value {
        let crd = crd();
        let v = &crd.spec.versions[0];
        serde_json::to_value(
            v.schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn names_short_name_scope_columns() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("users.latchkey.dev"));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "User");
        assert_eq!(crd.spec.names.plural, "users");
        assert_eq!(crd.spec.names.short_names, Some(vec!["lkuser".to_string()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let columns: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Username", "Ready", "Disabled", "Age"]);
    }

    #[test]
    fn schema_is_structural_and_carries_the_rules() {
        let root = schema();
        structural("", &root, true);
        let spec = &root["properties"]["spec"];
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["passwordRef", "username"]);
        let p = &spec["properties"];
        assert_eq!(p["username"]["pattern"], json!(NAME_PATTERN));
        assert_eq!(p["username"]["maxLength"], json!(MAX_USERNAME_LEN));
        assert_eq!(p["email"]["pattern"], json!(EMAIL_PATTERN));
        assert_eq!(p["displayName"]["pattern"], json!(DISPLAY_NAME_PATTERN));
        assert_eq!(p["organizations"]["maxItems"], json!(MAX_ORGANIZATIONS));
        assert_eq!(p["organizations"]["items"]["pattern"], json!(NAME_PATTERN));
        assert_eq!(p["groups"]["items"]["maxLength"], json!(MAX_NAME_LEN));
        assert_eq!(
            p["passwordRef"]["properties"]["key"]["default"],
            json!("passwordHash")
        );
        let d = p["username"]["description"].as_str().unwrap();
        assert!(!d.contains('\n'), "{d}");
    }

    #[test]
    fn yaml_is_deterministic_and_round_trips() {
        let yaml = crd_yaml();
        assert_eq!(yaml, crd_yaml());
        let back: CustomResourceDefinition = serde_norway::from_str(&yaml).unwrap();
        assert_eq!(back, crd());
    }
}
