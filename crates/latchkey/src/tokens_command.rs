//! Issue 13: `latchkey tokens revoke --client NAME`: revoke in bulk every token issued to a
//! client before a time, by setting the annotation `latchkey.dev/revoke-tokens-before` on its
//! OAuthClient (through the API in a cluster; in the manifests standalone). Every replica sees
//! the annotation with the OAuthClient, and introspection answers inactive for those tokens.

use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use latchkey_api::{OAuthClient, resolve::REVOKE_BEFORE_ANNOTATION};

use crate::{
    cli::{TokensAction, TokensArgs},
    error::Error,
};

pub async fn run(args: TokensArgs) -> Result<(), Error> {
    let TokensAction::Revoke(a) = args.action;
    // Whole seconds, as token `iat` claims are. "Now" rounds up: a token issued in the same
    // second as the command is revoked too, rather than one slipping through.
    let seconds = match &a.before {
        Some(t) => t
            .parse::<Timestamp>()
            .map_err(|_| Error::Usage(format!("--before {t:?} is not an RFC 3339 time")))?
            .as_second(),
        None => {
            Timestamp::try_from(SystemTime::now())
                .map_err(|e| Error::Usage(format!("the clock: {e}")))?
                .as_second()
                + 1
        }
    };
    let before = Timestamp::from_second(seconds)
        .map_err(|e| Error::Usage(format!("--before: {e}")))?
        .to_string();
    match &a.clients {
        Some(path) => {
            let ns = a.namespace.clone().unwrap_or_else(|| "default".into());
            let file = crate::rotate_secret::annotate_in_files(
                path,
                &ns,
                &a.client,
                REVOKE_BEFORE_ANNOTATION,
                &before,
            )?;
            println!(
                "tokens issued to OAuthClient {ns}/{} before {before} are revoked ({})",
                a.client,
                file.display()
            );
        }
        None => {
            let client = crate::cluster::kube_client().await?;
            let ns = a
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let api: Api<OAuthClient> = Api::namespaced(client, &ns);
            let patch = serde_json::json!({
                "metadata": { "annotations": { REVOKE_BEFORE_ANNOTATION: before } }
            });
            api.patch(&a.client, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::kube(format!(
                    "annotating OAuthClient {ns}/{}",
                    a.client
                )))?;
            println!(
                "tokens issued to OAuthClient {ns}/{} before {before} are revoked",
                a.client
            );
        }
    }
    Ok(())
}
