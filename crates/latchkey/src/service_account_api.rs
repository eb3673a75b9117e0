//! What `latchkey run` asks the API server about ServiceAccount tokens, with its own
//! credentials: the service-account issuer (`/.well-known/openid-configuration`), its keys
//! (`/openid/v1/jwks`; RBAC: the `system:service-account-issuer-discovery` ClusterRole) and
//! whether the objects a token depends on still exist (RBAC: `get` on serviceaccounts, pods,
//! secrets and nodes; only metadata is read). Each call is bounded in time and size.
//! Also the reader of client JWK Sets kept in Secrets and ConfigMaps (`jwksFrom`).

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use kube::Api;
use latchkey_core::{
    assertion::{JwkSet, ObjectKeyRef, parse_jwks},
    trust_check::{FORBIDDEN, Finding, LOOKUP_FAILED, SERVICE_ACCOUNT_NOT_FOUND},
};
use latchkey_server::{
    App,
    object_jwks::ObjectReader,
    service_account::{BoundObject, BoxFuture, ClusterApi, ServiceAccounts},
};

/// Time allowed for one call to the API server.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The kube client as [`ClusterApi`].
pub struct KubeClusterApi {
    client: kube::Client,
}

async fn get_text(client: &kube::Client, path: &str) -> Result<String, &'static str> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|_| "bad request path")?;
    let text = tokio::time::timeout(CALL_TIMEOUT, client.request_text(req))
        .await
        .map_err(|_| "the API server did not answer in time")?
        .map_err(|_| "the API server refused or failed the request")?;
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err("the API server's document is too large");
    }
    Ok(text)
}

impl ClusterApi for KubeClusterApi {
    fn jwks(&self) -> BoxFuture<'_, Result<JwkSet, &'static str>> {
        Box::pin(async move {
            let text = get_text(&self.client, "/openid/v1/jwks").await?;
            parse_jwks(text.as_bytes()).map_err(|_| "the cluster's JWK Set is not usable")
        })
    }

    fn exists<'a>(&'a self, object: &'a BoundObject) -> BoxFuture<'a, Result<bool, &'static str>> {
        Box::pin(async move {
            let c = self.client.clone();
            let (ns, name) = (object.namespace.as_str(), object.name.as_str());
            let read = async {
                match object.kind {
                    "ServiceAccount" => {
                        uid_of(Api::<ServiceAccount>::namespaced(c, ns), name).await
                    }
                    "Pod" => uid_of(Api::<Pod>::namespaced(c, ns), name).await,
                    "Secret" => uid_of(Api::<Secret>::namespaced(c, ns), name).await,
                    "Node" => uid_of(Api::<Node>::all(c), name).await,
                    _ => Err("unknown bound object kind"),
                }
            };
            let uid = tokio::time::timeout(CALL_TIMEOUT, read)
                .await
                .map_err(|_| "the API server did not answer in time")??;
            Ok(uid.as_deref() == Some(object.uid.as_str()))
        })
    }

    fn account<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Finding> {
        Box::pin(async move {
            let unresolved = |reason, why| Finding::Unresolved { reason, why };
            let api = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace);
            match tokio::time::timeout(CALL_TIMEOUT, api.get_metadata_opt(name)).await {
                Ok(Ok(Some(_))) => Finding::Resolved,
                Ok(Ok(None)) => unresolved(SERVICE_ACCOUNT_NOT_FOUND, "does not exist"),
                Ok(Err(kube::Error::Api(s))) if s.code == 403 => unresolved(
                    FORBIDDEN,
                    "Latchkey is not allowed to get ServiceAccounts in this namespace",
                ),
                Ok(Err(_)) => {
                    unresolved(LOOKUP_FAILED, "the API server refused or failed the lookup")
                }
                Err(_) => unresolved(LOOKUP_FAILED, "the API server did not answer in time"),
            }
        })
    }
}

/// The UID of the named object (its metadata only), or `None` when it does not exist.
async fn uid_of<K>(api: Api<K>, name: &str) -> Result<Option<String>, &'static str>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let meta = api
        .get_metadata_opt(name)
        .await
        .map_err(|_| "reading a bound object failed (is Latchkey allowed to get it?)")?;
    Ok(meta.and_then(|m| m.metadata.uid))
}

/// Find the cluster's service-account issuer (retrying until the API server answers) and
/// enable ServiceAccount assertions on `app`.
pub async fn discover(
    client: kube::Client,
    app: Arc<App>,
    audience: String,
    refetch_floor: Duration,
) {
    let mut warned = false;
    loop {
        let found = get_text(&client, "/.well-known/openid-configuration")
            .await
            .and_then(|text| {
                let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| "not JSON")?;
                doc["issuer"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or("no issuer in the discovery document")
            });
        match found {
            Ok(issuer) => {
                tracing::info!(
                    %issuer,
                    %audience,
                    "ServiceAccount tokens accepted as client assertions"
                );
                let api = Arc::new(KubeClusterApi {
                    client: client.clone(),
                });
                let sa = ServiceAccounts::new(issuer, audience, api, refetch_floor);
                // Fetch the keys now so the first request finds them.
                let _ = sa.jwks(None).await;
                let _ = app.service_accounts.set(sa);
                return;
            }
            Err(why) => {
                if !warned {
                    tracing::warn!(
                        reason = why,
                        "the cluster's service-account issuer is not known yet; ServiceAccount \
                         assertions are refused until it is (retrying)"
                    );
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
    }
}

/// Reads `jwksFrom` objects through the kube client.
pub struct KubeObjectReader {
    pub client: kube::Client,
}

impl ObjectReader for KubeObjectReader {
    fn read<'a>(
        &'a self,
        object: &'a ObjectKeyRef,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, &'static str>> {
        Box::pin(async move {
            let (c, ns) = (self.client.clone(), object.namespace.as_str());
            let read = async {
                let failed = |e| match e {
                    kube::Error::Api(s) if s.code == 403 => latchkey_server::object_jwks::FORBIDDEN,
                    _ => "reading the client's key object failed",
                };
                match object.kind {
                    "Secret" => Ok(Api::<Secret>::namespaced(c, ns)
                        .get_opt(&object.name)
                        .await
                        .map_err(failed)?
                        .and_then(|s| s.data)
                        .and_then(|mut d| d.remove(&object.key))
                        .map(|v| v.0)),
                    "ConfigMap" => Ok(Api::<ConfigMap>::namespaced(c, ns)
                        .get_opt(&object.name)
                        .await
                        .map_err(failed)?
                        .and_then(|m| m.data)
                        .and_then(|mut d| d.remove(&object.key))
                        .map(String::into_bytes)),
                    _ => Err("unknown key object kind"),
                }
            };
            let value = tokio::time::timeout(CALL_TIMEOUT, read)
                .await
                .map_err(|_| "the API server did not answer in time")??;
            if value.as_ref().is_some_and(|v| v.len() > MAX_DOCUMENT_BYTES) {
                return Err("the client's key object is too large");
            }
            Ok(value)
        })
    }
}
