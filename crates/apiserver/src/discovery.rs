//! Discovery documents: aggregated discovery (apidiscovery.k8s.io v2 and v2beta1) and the legacy
//! APIVersions / APIGroupList / APIGroup / APIResourceList, all derived from the catalogue.

use capstan_api::catalogue::{self, ResourceInfo, Scope};
use serde_json::{json, Value};

/// Which aggregated discovery version the client asked for, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregated {
    V2,
    V2Beta1,
}

impl Aggregated {
    /// Reads the Accept header: the first aggregated discovery type offered, if any.
    pub fn from_accept(accept: Option<&str>) -> Option<Self> {
        let accept = accept?;
        for part in accept.split(',') {
            let p: Vec<&str> = part.split(';').map(str::trim).collect();
            if p.first() != Some(&"application/json") {
                continue;
            }
            let has = |kv: &str| p.contains(&kv);
            if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
                if has("v=v2") {
                    return Some(Self::V2);
                }
                if has("v=v2beta1") {
                    return Some(Self::V2Beta1);
                }
            }
            // A plain application/json ahead of the aggregated types means legacy.
            if p.len() == 1 {
                return None;
            }
        }
        None
    }

    pub fn version(self) -> &'static str {
        match self {
            Self::V2 => "v2",
            Self::V2Beta1 => "v2beta1",
        }
    }

    /// The exact Content-Type kubectl needs to recognise the aggregated document.
    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.version()
        )
    }
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Namespaced => "Namespaced",
        Scope::Cluster => "Cluster",
    }
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": scope_name(r.scope),
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = Value::Array(
            r.subresources
                .iter()
                .map(|s| {
                    let (g, ver) = if s.version.is_empty() {
                        (r.group, r.version)
                    } else {
                        (s.group, s.version)
                    };
                    json!({
                        "subresource": s.name,
                        "responseKind": {"group": g, "version": ver, "kind": s.kind},
                        "verbs": s.verbs,
                    })
                })
                .collect(),
        );
    }
    v
}

fn aggregated_group(name: &str, versions: &[&str]) -> Value {
    json!({
        "metadata": if name.is_empty() { json!({"creationTimestamp": null}) } else { json!({"name": name, "creationTimestamp": null}) },
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "resources": catalogue::in_group_version(name, v).map(aggregated_resource).collect::<Vec<_>>(),
            "freshness": "Current",
        })).collect::<Vec<_>>(),
    })
}

/// The aggregated document for `/api` (core only) or `/apis` (named groups).
pub fn aggregated(core: bool, which: Aggregated) -> Value {
    let items: Vec<Value> = catalogue::groups()
        .iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| aggregated_group(g.name, &g.versions))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", which.version()),
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(name: &str, versions: &[&str]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{name}/{v}"), "version": v});
    json!({
        "name": name,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions.first().copied().unwrap_or("v1")),
    })
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": catalogue::groups().iter().filter(|g| !g.name.is_empty()).map(|g| group_doc(g.name, &g.versions)).collect::<Vec<_>>(),
    })
}

/// Legacy `/apis/{group}`.
pub fn api_group(name: &str) -> Option<Value> {
    let g = catalogue::groups().iter().find(|g| g.name == name)?;
    let mut doc = group_doc(g.name, &g.versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// Legacy `/api/v1` or `/apis/{group}/{version}`.
pub fn api_resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in catalogue::in_group_version(group, version) {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        resources.push(v);
        for s in r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if !s.version.is_empty() {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            resources.push(sv);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_v2() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Aggregated::from_accept(Some(a)), Some(Aggregated::V2));
        assert_eq!(Aggregated::from_accept(Some("application/json")), None);
        assert_eq!(Aggregated::from_accept(None), None);
    }

    #[test]
    fn aggregated_core_lists_pods_with_subresources() {
        let doc = aggregated(true, Aggregated::V2);
        let res = &doc["items"][0]["versions"][0]["resources"];
        let pods = res
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["resource"] == "pods")
            .expect("pods");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert!(pods["subresources"]
            .as_array()
            .expect("subs")
            .iter()
            .any(|s| s["subresource"] == "status"));
    }

    #[test]
    fn legacy_resource_lists_include_subresources() {
        let doc = api_resource_list("apps", "v1");
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .expect("a")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        assert_eq!(doc["groupVersion"], "apps/v1");
    }

    #[test]
    fn group_list_prefers_autoscaling_v2() {
        let doc = api_group_list();
        let a = doc["groups"]
            .as_array()
            .expect("a")
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .expect("autoscaling");
        assert_eq!(a["preferredVersion"]["version"], "v2");
    }
}
