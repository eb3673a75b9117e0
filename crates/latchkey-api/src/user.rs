//! `User` (`latchkey.dev/v1alpha1`, short name `lkuser`): a person who may sign in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::user_rules::*;

/// Who the person is, what their tokens say about them, and where their password hash is.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    doc = "A person who may sign in to Latchkey: the login name, the claims of their tokens, and \
           the Secret key holding their Argon2id password hash.",
    group = "latchkey.dev",
    version = "v1alpha1",
    kind = "User",
    plural = "users",
    shortname = "lkuser",
    namespaced,
    status = "UserStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Username","type":"string","jsonPath":".spec.username"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The login name: 1 to 256 characters without spaces or control characters, matched
    /// exactly. Unique among the Users Latchkey serves: when two claim one, the older keeps it
    /// and the other reports a UsernameConflict.
    #[schemars(length(min = 1, max = MAX_USERNAME_LEN), regex(pattern = NAME_PATTERN))]
    pub username: String,
    /// The name shown to people (the `name` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_DISPLAY_NAME_LEN), regex(pattern = DISPLAY_NAME_PATTERN))]
    pub display_name: Option<String>,
    /// The user's email address (the `email` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_EMAIL_LEN), regex(pattern = EMAIL_PATTERN))]
    pub email: Option<String>,
    /// Whether the email address is known to belong to the user (`email_verified`).
    #[serde(default)]
    pub email_verified: bool,
    /// Organizations the user belongs to. A token carries one of them as `organization`
    /// (APK's gateway maps it to `x-wso2-organization`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_ORGANIZATIONS),
        inner(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))
    )]
    pub organizations: Vec<String>,
    /// Groups the user belongs to (the `groups` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = MAX_GROUPS),
        inner(length(min = 1, max = MAX_NAME_LEN), regex(pattern = NAME_PATTERN))
    )]
    pub groups: Vec<String>,
    /// The Secret (same namespace) and key holding the user's Argon2id password hash in PHC
    /// format, as `latchkey hash-password` prints it.
    pub password_ref: PasswordRef,
    /// A disabled user cannot sign in, and their refresh tokens stop working.
    #[serde(default)]
    pub disabled: bool,
}

/// A key of a Secret in the User's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordRef {
    /// Name of the Secret (a DNS subdomain name).
    #[schemars(
        length(max = crate::rules::MAX_SECRET_NAME_LEN),
        regex(pattern = crate::rules::SECRET_NAME_PATTERN)
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[serde(default = "default_password_key")]
    #[schemars(
        length(max = crate::rules::MAX_SECRET_KEY_LEN),
        regex(pattern = crate::rules::SECRET_KEY_PATTERN)
    )]
    pub key: String,
}

/// What Latchkey observed.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The user's stable id: the `sub` of their tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, plus PasswordResolved and UsernameUnique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The key a `passwordRef` reads when it names none.
pub const DEFAULT_PASSWORD_KEY: &str = "passwordHash";

fn default_password_key() -> String {
    DEFAULT_PASSWORD_KEY.to_owned()
}
