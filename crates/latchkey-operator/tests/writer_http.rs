//! The writer against a stand-in API server: what it sends for a status and for generated
//! credentials, and what it does not send.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::{Method, StatusCode};
use latchkey_api::{
    OAuthClient, OAuthClientStatus,
    resolve::{ClientState, CredentialsToCreate, MANAGED_BY_LABEL, ObjKey, Outcome},
};
use latchkey_operator::{client_watch::Changes, credentials::CLIENT_LABEL, writer::Writer};
use serde_json::{Value, json};
use support::{ApiServer, Call};
use tokio::{sync::mpsc, sync::watch, task::JoinHandle};

const TOKEN_URL: &str = "https://latchkey.example/oauth2/token";
const STATUS_PATH: &str = "/apis/latchkey.dev/v1alpha1/namespaces/apps/oauthclients/gw/status";

fn key() -> ObjKey {
    ("apps".into(), "gw".into())
}

fn client(status: Option<Value>) -> OAuthClient {
    let mut c = OAuthClient::new("gw", Default::default());
    c.metadata.namespace = Some("apps".into());
    c.metadata.uid = Some("u1".into());
    c.metadata.generation = Some(1);
    c.status = status.map(|s| serde_json::from_value(s).expect("a status"));
    c
}

fn outcome(client: OAuthClient, state: ClientState) -> Outcome {
    Outcome {
        client: Arc::new(client),
        client_id: Some("gw-id".into()),
        secret_name: "gw-credentials".into(),
        state,
        previous_secret: Default::default(),
    }
}

fn registered(status: Option<Value>) -> Changes {
    Changes {
        outcomes: vec![(
            key(),
            Some(outcome(client(status), ClientState::Registered)),
        )],
        to_create: Vec::new(),
    }
}

/// A leading writer running against the stand-in; dropping the senders stops it.
struct Running {
    api: ApiServer,
    changes: mpsc::UnboundedSender<Changes>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    _leading: watch::Sender<bool>,
}

fn start() -> Running {
    let (client, api) = support::pair();
    let writer = Writer::new(client, "latchkey-0", TOKEN_URL);
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (leading, leading_rx) = watch::channel(true);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(writer.run(changes_rx, leading_rx, |_| {}, shutdown_rx));
    Running {
        api,
        changes,
        shutdown,
        task,
        _leading: leading,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.send_replace(true);
        self.task.await.expect("the writer ends cleanly");
    }
}

/// Checks a status SSA and answers it with the object as applied; returns the status sent.
fn answer_status_apply(call: Call) -> Value {
    assert_eq!(call.method, Method::PATCH);
    assert_eq!(call.path, STATUS_PATH);
    assert_eq!(call.param("fieldManager"), Some("latchkey"));
    assert_eq!(call.param("force"), Some("true"));
    assert_eq!(call.content_type(), "application/apply-patch+yaml");
    assert_eq!(call.body["apiVersion"], "latchkey.dev/v1alpha1");
    assert_eq!(call.body["kind"], "OAuthClient");
    let status = call.body["status"].clone();
    let mut applied = serde_json::to_value(client(Some(status.clone()))).expect("an object");
    applied["metadata"]["resourceVersion"] = json!("2");
    call.respond(StatusCode::OK, &applied);
    status
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test(start_paused = true)]
async fn a_status_is_applied_once_and_not_again_while_unchanged() {
    let mut w = start();
    w.changes.send(registered(None)).unwrap();

    let status = answer_status_apply(w.api.next().await);
    assert_eq!(status["clientId"], "gw-id");
    assert_eq!(status["secretName"], "gw-credentials");
    assert_eq!(status["observedGeneration"], 1);
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("Registered"))
    );
    assert_eq!(condition(&status, "SecretResolved")["status"], "True");
    assert_eq!(condition(&status, "SpecValid")["status"], "True");

    // The same outcome again before the watch shows the write (and resyncs meanwhile): the
    // status just written is not written again.
    w.changes.send(registered(None)).unwrap();
    w.api.expect_silence().await;

    // The watch's echo of the write: nothing to do either.
    w.changes.send(registered(Some(status))).unwrap();
    w.api.expect_silence().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn credentials_are_created_first_and_no_pending_status_is_written() {
    let mut w = start();
    w.changes
        .send(Changes {
            outcomes: vec![(
                key(),
                Some(outcome(
                    client(None),
                    ClientState::CredentialsPending {
                        secret: "gw-credentials".into(),
                    },
                )),
            )],
            to_create: vec![CredentialsToCreate {
                owner: key(),
                secret_name: "gw-credentials".into(),
                client_id: "gw-id".into(),
                recreate: false,
            }],
        })
        .unwrap();

    let call = w.api.next().await;
    assert_eq!(call.method, Method::POST);
    assert_eq!(call.path, "/api/v1/namespaces/apps/secrets");
    let meta = &call.body["metadata"];
    assert_eq!(meta["name"], "gw-credentials");
    assert_eq!(meta["namespace"], "apps");
    assert_eq!(meta["labels"][MANAGED_BY_LABEL], "latchkey");
    assert_eq!(meta["labels"][CLIENT_LABEL], "gw");
    assert_eq!(
        meta["ownerReferences"],
        json!([{
            "apiVersion": "latchkey.dev/v1alpha1",
            "kind": "OAuthClient",
            "name": "gw",
            "uid": "u1",
            "controller": true,
        }])
    );
    let decoded = |k: &str| {
        let text = call.body["data"][k].as_str().expect("a data entry");
        String::from_utf8(STANDARD.decode(text).expect("base64")).expect("text")
    };
    assert_eq!(decoded("clientId"), "gw-id");
    assert_eq!(decoded("tokenUrl"), TOKEN_URL);
    assert_eq!(decoded("clientSecret").len(), 43, "256 random bits");
    // Someone made it meanwhile: it is left as it is, and that is no failure.
    call.fail(StatusCode::CONFLICT, "AlreadyExists");

    // No retry of the create, and no "pending" status while the Secret is on its way.
    w.api.expect_silence().await;

    // The watch sees the Secret: now the status is written.
    w.changes.send(registered(None)).unwrap();
    let status = answer_status_apply(w.api.next().await);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    w.api.expect_silence().await;
    w.stop().await;
}

// Issue 12: a public client, resolved by the real index with every Secret listed and its
// own absent: the writer applies a Ready status without secretName and creates no Secret.
#[tokio::test(start_paused = true)]
async fn a_public_client_gets_a_status_and_no_credentials() {
    use latchkey_api::resolve::{ClientIndex, creation_rank};
    let mut public = client(None);
    public.spec = serde_json::from_value(json!({
        "clientId": "gw-id",
        "tokenEndpointAuthMethod": "none",
        "grantTypes": ["authorization_code", "refresh_token"],
        "redirectUris": ["http://127.0.0.1:8400/cb"]
    }))
    .unwrap();
    let mut index = ClientIndex::default();
    let rank = creation_rank(&public);
    index.apply_client(public, rank);
    index.replace_secrets(None, vec![], &[]);
    index.mark_secrets_listed();
    index.resolve();
    let changes = Changes {
        outcomes: index.outcomes().map(|o| (key(), Some(o.clone()))).collect(),
        to_create: index.to_create().cloned().collect(),
    };
    assert!(changes.to_create.is_empty(), "no credentials to generate");

    let mut w = start();
    w.changes.send(changes).unwrap();
    let status = answer_status_apply(w.api.next().await);
    assert_eq!(status["clientId"], "gw-id");
    assert!(status.get("secretName").is_none(), "{status}");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("Registered"))
    );
    let secret = condition(&status, "SecretResolved");
    assert_eq!(
        (&secret["status"], &secret["reason"]),
        (&json!("True"), &json!("NotNeeded"))
    );
    // Nothing else: in particular no POST of a <name>-credentials Secret.
    w.api.expect_silence().await;
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_status_for_a_deleted_client_is_no_error() {
    let (client, mut api) = support::pair();
    let writer = Writer::new(client, "latchkey-0", TOKEN_URL);
    let gw = key();
    let status = OAuthClientStatus {
        client_id: Some("gw-id".into()),
        ..OAuthClientStatus::default()
    };
    let (gone, ()) = tokio::join!(writer.write_status(&gw, &status), async {
        let call = api.next().await;
        assert_eq!(call.method, Method::PATCH);
        assert_eq!(call.path, STATUS_PATH);
        assert_eq!(call.body["status"], json!({"clientId": "gw-id"}));
        call.fail(StatusCode::NOT_FOUND, "NotFound");
    });
    assert!(!gone.unwrap(), "Ok(false): the object is gone");

    let (failed, ()) = tokio::join!(writer.write_status(&gw, &status), async {
        api.next().await.fail(StatusCode::CONFLICT, "Conflict");
    });
    assert!(failed.is_err(), "any other failure is reported");
}

#[tokio::test(start_paused = true)]
async fn recreated_credentials_raise_a_warning_event() {
    let mut w = start();
    w.changes
        .send(Changes {
            outcomes: vec![(
                key(),
                Some(outcome(
                    client(None),
                    ClientState::CredentialsPending {
                        secret: "gw-credentials".into(),
                    },
                )),
            )],
            to_create: vec![CredentialsToCreate {
                owner: key(),
                secret_name: "gw-credentials".into(),
                client_id: "gw-id".into(),
                recreate: true,
            }],
        })
        .unwrap();
    let call = w.api.next().await;
    assert_eq!(call.method, Method::POST);
    assert_eq!(call.path, "/api/v1/namespaces/apps/secrets");
    let body = call.body.clone();
    let secret = STANDARD
        .decode(body["data"]["clientSecret"].as_str().unwrap())
        .unwrap();
    let secret = String::from_utf8(secret).unwrap();
    call.respond(StatusCode::CREATED, &body);

    let event = w.api.next().await;
    assert_eq!(event.method, Method::POST);
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/apps/events");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "CredentialsRecreated");
    assert_eq!(event.body["regarding"]["kind"], "OAuthClient");
    assert_eq!(event.body["regarding"]["name"], "gw");
    let note = event.body["note"].as_str().unwrap().to_owned();
    assert!(note.contains("gw-credentials"), "{note}");
    assert!(
        !event.body.to_string().contains(&secret),
        "the secret value stays out of the Event"
    );
    let body = event.body.clone();
    event.respond(StatusCode::CREATED, &body);
    w.api.expect_silence().await;
    w.stop().await;
}
