//! `/api/v1/componentstatuses`: the health of the scheduler, the controller manager and the
//! store, computed on every read as upstream's componentstatus REST storage computes it (it
//! probes each component's /healthz; here they run in-process, so each is asked directly).
//!
//! The binary registers a probe per in-process component when it starts them; a component
//! without one (turned off by a flag) reports an Unknown condition with the reason as error,
//! as upstream reports a component it cannot reach.

use std::sync::Arc;
use std::time::Duration;

use capstan_api::catalogue::ResourceInfo;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

/// Answers whether a component is healthy; `Err` carries why not.
pub type Probe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The scheduler's entry.
pub const SCHEDULER: &str = "scheduler";
/// The controller manager's entry.
pub const CONTROLLER_MANAGER: &str = "controller-manager";
/// The store's entry: upstream's name for its first etcd server, which clients look for.
pub const STORE: &str = "etcd-0";

/// The entries, in the order upstream's `kubectl get cs` usually prints them.
const NAMES: &[&str] = &[CONTROLLER_MANAGER, SCHEDULER, STORE];

/// How long the store may take to answer its read before it counts as unhealthy.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The probes of the in-process components, registered at wiring.
#[derive(Clone, Default)]
pub struct ComponentHealth {
    probes: Arc<parking_lot::RwLock<Vec<(&'static str, Probe)>>>,
}

impl ComponentHealth {
    /// Registers (or replaces) the probe of `name` ([`SCHEDULER`] or [`CONTROLLER_MANAGER`]).
    pub fn register(&self, name: &'static str, probe: Probe) {
        let mut probes = self.probes.write();
        probes.retain(|(n, _)| *n != name);
        probes.push((name, probe));
    }

    fn probe(&self, name: &str) -> Option<Probe> {
        self.probes
            .read()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.clone())
    }
}

/// The condition of one component: (status, message, error) as upstream fills them.
async fn check(
    health: &ComponentHealth,
    store: &dyn capstan_store::Store,
    name: &str,
) -> (&'static str, &'static str, String) {
    let result = if name == STORE {
        // A real read of the database, bounded so a stuck store reports instead of hanging.
        match tokio::time::timeout(STORE_TIMEOUT, store.get("/core/namespaces/default")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("reading the store failed: {e}")),
            Err(_) => Err(format!(
                "reading the store did not finish in {}s",
                STORE_TIMEOUT.as_secs()
            )),
        }
    } else {
        match health.probe(name) {
            Some(p) => p(),
            None => {
                return (
                    "Unknown",
                    "",
                    format!("the {name} does not run in this server"),
                )
            }
        }
    };
    match result {
        Ok(()) => ("True", "ok", String::new()),
        Err(e) => ("False", "", e),
    }
}

/// One ComponentStatus object.
async fn status(health: &ComponentHealth, store: &dyn capstan_store::Store, name: &str) -> Value {
    let (status, message, error) = check(health, store, name).await;
    let mut condition = serde_json::Map::new();
    condition.insert("type".into(), json!("Healthy"));
    condition.insert("status".into(), json!(status));
    if !message.is_empty() {
        condition.insert("message".into(), json!(message));
    }
    if !error.is_empty() {
        condition.insert("error".into(), json!(error));
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [Value::Object(condition)],
    })
}

/// GET of one component. An unknown name is an internal error, worded as upstream's.
pub async fn get(
    health: &ComponentHealth,
    store: &dyn capstan_store::Store,
    name: &str,
) -> ApiResult<Value> {
    if !NAMES.contains(&name) {
        return Err(ApiError::internal(format!("Component not found: {name}")));
    }
    Ok(status(health, store, name).await)
}

/// Every component, checked concurrently, filtered by the request's selectors.
pub async fn list(
    info: &ResourceInfo,
    health: &ComponentHealth,
    store: &dyn capstan_store::Store,
    matcher: &crate::read::Matcher,
) -> Vec<Value> {
    let all = futures::future::join_all(NAMES.iter().map(|n| status(health, store, n))).await;
    all.into_iter()
        .filter(|o| matcher.matches(info, o))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_store::Store;

    fn store() -> Arc<dyn Store> {
        Arc::new(
            capstan_store::sqlite::SqliteStore::open_temporary(Default::default()).expect("store"),
        )
    }

    #[tokio::test]
    async fn components_report_their_probes() {
        let health = ComponentHealth::default();
        let store = store();
        health.register(SCHEDULER, Arc::new(|| Ok(())));
        health.register(CONTROLLER_MANAGER, Arc::new(|| Err("stopped".into())));
        let s = get(&health, store.as_ref(), SCHEDULER).await.expect("s");
        assert_eq!(
            s["conditions"],
            json!([{"type":"Healthy","status":"True","message":"ok"}])
        );
        let c = get(&health, store.as_ref(), CONTROLLER_MANAGER)
            .await
            .expect("cm");
        assert_eq!(
            c["conditions"],
            json!([{"type":"Healthy","status":"False","error":"stopped"}])
        );
        let e = get(&health, store.as_ref(), STORE).await.expect("etcd");
        assert_eq!(e["conditions"][0]["status"], "True");
        assert_eq!(
            get(&health, store.as_ref(), "x").await.expect_err("x").code,
            500
        );
    }

    #[tokio::test]
    async fn a_component_without_a_probe_is_unknown() {
        let health = ComponentHealth::default();
        let s = get(&health, store().as_ref(), SCHEDULER).await.expect("s");
        assert_eq!(s["conditions"][0]["status"], "Unknown");
        assert!(s["conditions"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not run")));
    }
}
