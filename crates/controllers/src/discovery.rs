//! `Resources`: the served resource types, from API discovery, for the controllers that work
//! on every kind (garbage collector, namespace controller): one preferred version per
//! resource, with its verbs and scope, and lookup by (group, kind) for owner references.

use std::collections::HashMap;

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

/// One resource type.
#[derive(Clone, Debug)]
pub struct Resource {
    pub ar: ApiResource,
    pub caps: ApiCapabilities,
}

impl Resource {
    pub fn namespaced(&self) -> bool {
        matches!(self.caps.scope, Scope::Namespaced)
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.caps.supports_operation(verb)
    }
}

/// The served resources.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub all: Vec<Resource>,
    by_kind: HashMap<(String, String), usize>,
}

/// Discovery failed; retryable.
#[derive(Debug, thiserror::Error)]
#[error("API discovery failed: {0}")]
pub struct Error(#[source] pub kube::Error);

/// Events carry no owners and are never owners worth collecting (as upstream's GC ignores them).
fn ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

impl Resources {
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let d = Discovery::new(client.clone()).run().await.map_err(Error)?;
        let mut out = Resources::default();
        for g in d.groups() {
            for (ar, caps) in g.recommended_resources() {
                if ignored(&ar) {
                    continue;
                }
                out.by_kind
                    .insert((ar.group.clone(), ar.kind.clone()), out.all.len());
                out.all.push(Resource { ar, caps });
            }
        }
        Ok(out)
    }

    /// The resource an ownerReference's apiVersion and kind name.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.by_kind
            .get(&(group.to_string(), kind.to_string()))
            .map(|&i| &self.all[i])
    }

    /// Resources that can be listed, watched and deleted (what the GC tracks).
    pub fn collectable(&self) -> impl Iterator<Item = &Resource> {
        self.all.iter().filter(|r| {
            r.supports(verbs::LIST) && r.supports(verbs::WATCH) && r.supports(verbs::DELETE)
        })
    }
}
