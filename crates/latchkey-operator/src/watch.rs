//! Watch streams over one or several namespaces, and the one relist driver every watched kind
//! goes through: events of a relist are gathered until `InitDone` and handed over whole, so
//! the index is replaced in one step and never sees a half-listed namespace.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, stream::BoxStream};
use kube::{
    Api, Client, Resource,
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};

use latchkey_api::resolve::{ObjKey, key_of};

/// A namespace, or `None` for all.
pub type Scope = Option<String>;
pub type Scoped<K> = (Scope, Result<Event<K>, watcher::Error>);

/// Objects as kept in memory: without `managedFields`, which can be most of an object's size
/// and which Latchkey never reads.
fn trim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// One merged stream of watches, one per scope.
pub fn scoped<K>(
    client: &Client,
    scopes: &[Scope],
    config: &watcher::Config,
) -> BoxStream<'static, Scoped<K>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let streams = scopes.iter().map(|scope| {
        let api = match scope {
            None => Api::<K>::all(client.clone()),
            Some(ns) => Api::<K>::namespaced(client.clone(), ns),
        };
        let scope = scope.clone();
        watcher::watcher(api, config.clone())
            .backoff(crate::backoff::watch_backoff())
            .map(move |e| (scope.clone(), e.map(|ev| ev.modify(trim))))
            .boxed()
    });
    futures::stream::select_all(streams).boxed()
}

/// What one watch event means for the index.
#[derive(Debug)]
pub enum Step<K> {
    Apply(K),
    Delete(ObjKey),
    /// A relist of `scope` finished: `names` of every object listed, `kept` those whose data
    /// was kept.
    Relisted {
        scope: Scope,
        names: Vec<ObjKey>,
        kept: Vec<K>,
    },
    /// Nothing to do yet (a relist in progress), or an error the watch retries.
    Nothing,
}

/// The relist bookkeeping of one kind.
pub struct Relister<K> {
    kept: HashMap<Scope, Vec<K>>,
    names: HashMap<Scope, Vec<ObjKey>>,
    synced: HashSet<Scope>,
    kind: &'static str,
}

impl<K: Resource> Relister<K> {
    pub fn new(kind: &'static str) -> Self {
        Relister {
            kept: HashMap::new(),
            names: HashMap::new(),
            synced: HashSet::new(),
            kind,
        }
    }

    /// Whether every scope has been listed once.
    pub fn synced(&self, scopes: &[Scope]) -> bool {
        scopes.iter().all(|s| self.synced.contains(s))
    }

    /// Turn an event into a step. During a relist only the objects for which `keep` holds are
    /// held in memory (their names are always kept).
    pub fn step(
        &mut self,
        scope: Scope,
        event: Result<Event<K>, watcher::Error>,
        keep: impl Fn(&ObjKey, &K) -> bool,
    ) -> Step<K> {
        let event = match event {
            Ok(ev) => ev,
            Err(e) => {
                // A malformed object or a lost connection: logged, never fatal to the watch.
                tracing::warn!(kind = self.kind, error = %e, "watch failed; retrying");
                return Step::Nothing;
            }
        };
        match event {
            Event::Apply(o) => Step::Apply(o),
            Event::Delete(o) => Step::Delete(key_of(&o)),
            Event::Init => {
                self.kept.insert(scope.clone(), Vec::new());
                self.names.insert(scope, Vec::new());
                Step::Nothing
            }
            Event::InitApply(o) => {
                let key = key_of(&o);
                if keep(&key, &o) {
                    self.kept.entry(scope.clone()).or_default().push(o);
                }
                self.names.entry(scope).or_default().push(key);
                Step::Nothing
            }
            Event::InitDone => {
                let kept = self.kept.remove(&scope).unwrap_or_default();
                let names = self.names.remove(&scope).unwrap_or_default();
                tracing::info!(
                    kind = self.kind,
                    namespace = scope.as_deref().unwrap_or("*"),
                    objects = names.len(),
                    "listed"
                );
                self.synced.insert(scope.clone());
                Step::Relisted { scope, names, kept }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;

    fn secret(ns: &str, name: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn a_relist_is_handed_over_whole_with_every_name() {
        let mut r = Relister::<Secret>::new("Secret");
        let scope: Scope = Some("a".into());
        assert!(!r.synced(std::slice::from_ref(&scope)));
        let keep_x = |k: &ObjKey, _: &Secret| k.1 == "x";
        assert!(matches!(
            r.step(scope.clone(), Ok(Event::Init), keep_x),
            Step::Nothing
        ));
        for name in ["x", "y"] {
            assert!(matches!(
                r.step(
                    scope.clone(),
                    Ok(Event::InitApply(secret("a", name))),
                    keep_x
                ),
                Step::Nothing
            ));
        }
        match r.step(scope.clone(), Ok(Event::InitDone), keep_x) {
            Step::Relisted { names, kept, .. } => {
                assert_eq!(names.len(), 2);
                assert_eq!(kept.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(r.synced(std::slice::from_ref(&scope)));
        assert!(matches!(
            r.step(scope.clone(), Ok(Event::Delete(secret("a", "x"))), keep_x),
            Step::Delete(k) if k == ("a".to_string(), "x".to_string())
        ));
    }

    #[test]
    fn managed_fields_are_not_kept() {
        let mut s = secret("a", "x");
        s.metadata.managed_fields = Some(vec![Default::default()]);
        trim(&mut s);
        assert!(s.metadata.managed_fields.is_none());
    }
}
