//! The bytes served at `/openapi/v3` and `/openapi/v3/<path>`, built on first request and kept.
//! Entry points: [`index`], [`document`].
//!
//! Upstream (kube-openapi's handler3) serves an index naming each document with a
//! `serverRelativeURL` that carries `?hash=<SHA-512 of the document, uppercase hex>`; clients
//! cache documents by that URL, and a request whose hash is stale is redirected (301) to the
//! current one. Documents are JSON objects with keys in upstream's (sorted) order.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::paths;
use crate::schemas::{self, reference};

/// The Content-Type of the index and of every document.
pub const CONTENT_TYPE: &str = "application/json";

/// The version reported in every document's `info`.
const INFO_VERSION: &str = "v1.32.0";

/// One built document.
struct Doc {
    hash: String,
    json: Vec<u8>,
}

/// Every document path ("api", "api/v1", "apis", "apis/apps", "apis/apps/v1", ...), each with
/// its lazily built document.
fn docs() -> &'static [(String, OnceLock<Doc>)] {
    static DOCS: OnceLock<Vec<(String, OnceLock<Doc>)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut out = vec!["api".to_string(), "apis".to_string()];
        for g in capstan_api::catalogue::groups() {
            if g.name.is_empty() {
                out.extend(g.versions.iter().map(|v| format!("api/{v}")));
            } else {
                out.push(format!("apis/{}", g.name));
                out.extend(g.versions.iter().map(|v| format!("apis/{}/{v}", g.name)));
            }
        }
        out.sort();
        out.into_iter().map(|p| (p, OnceLock::new())).collect()
    })
}

/// The paths of every document, as they appear in the index (without the `/openapi/v3/` prefix).
pub fn document_paths() -> impl Iterator<Item = &'static str> {
    docs().iter().map(|(p, _)| p.as_str())
}

/// The document at `path` ("api/v1", "apis/apps/v1"; no leading slash): its hash (what the
/// index's `?hash=` carries, also fit for an ETag) and its JSON bytes. None for unknown paths.
///
/// The first call for a path builds it (tens of milliseconds for the biggest, api/v1); later
/// calls are free. A request whose `hash` query differs from the returned hash should be
/// redirected with 301 to [`server_relative_url`], as upstream does.
pub fn document(path: &str) -> Option<(&'static str, &'static [u8])> {
    let (_, cell) = docs().iter().find(|(p, _)| p == path)?;
    let doc = cell.get_or_init(|| build(path));
    Some((doc.hash.as_str(), doc.json.as_slice()))
}

/// The index served at `/openapi/v3`: `{"paths":{"api/v1":{"serverRelativeURL":...},...}}`.
/// Building it builds every document, since it carries their hashes.
pub fn index() -> &'static [u8] {
    static INDEX: OnceLock<Vec<u8>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut paths = Map::new();
        for path in document_paths() {
            if let Some((hash, _)) = document(path) {
                paths.insert(
                    path.to_string(),
                    json!({ "serverRelativeURL": server_relative_url(path, hash) }),
                );
            }
        }
        serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default()
    })
}

/// Builds every document now (e.g. on a background thread after start-up), so that the first
/// `kubectl apply` does not pay for it.
pub fn warm() {
    index();
}

/// "/openapi/v3/apis/apps/v1?hash=ABC...": where the index points for a document.
pub fn server_relative_url(path: &str, hash: &str) -> String {
    format!("/openapi/v3/{path}?hash={hash}")
}

/// SHA-512 of the bytes in uppercase hex, as upstream's `computeETag`.
fn hash(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(128), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
}

fn build(path: &str) -> Doc {
    let value = document_value(path);
    let json = serde_json::to_vec(&value).unwrap_or_default();
    Doc {
        hash: hash(&json),
        json,
    }
}

/// The document for `path` as a JSON value.
pub(crate) fn document_value(path: &str) -> Value {
    let paths = match path.split('/').collect::<Vec<_>>().as_slice() {
        ["api"] => discovery_path(
            "/api/",
            "getCoreAPIVersions",
            "core",
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions",
        ),
        ["apis"] => discovery_path(
            "/apis/",
            "getAPIVersions",
            "apis",
            "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList",
        ),
        ["api", version] => paths::for_group_version("", version),
        ["apis", group] => {
            let id = format!("get{}APIGroup", group_id(group));
            discovery_path(
                &format!("/apis/{group}/"),
                &id,
                &group_tag(group),
                "io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup",
            )
        }
        ["apis", group, version] => paths::for_group_version(group, version),
        _ => Map::new(),
    };
    let paths = Value::Object(paths);
    let components = schemas::closure(&paths);
    json!({
        "components": { "schemas": components },
        "info": { "title": "Kubernetes", "version": INFO_VERSION },
        "openapi": "3.0.0",
        "paths": paths,
    })
}

/// A document with the single GET of a discovery endpoint.
fn discovery_path(path: &str, id: &str, tag: &str, schema: &str) -> Map<String, Value> {
    let content: Map<String, Value> = [
        "application/json",
        "application/vnd.kubernetes.protobuf",
        "application/yaml",
    ]
    .iter()
    .map(|t| (t.to_string(), json!({ "schema": reference(schema) })))
    .collect();
    let mut paths = Map::new();
    paths.insert(
        path.to_string(),
        json!({ "get": {
            "description": "get information of a group",
            "operationId": id,
            "responses": {
                "200": { "content": content, "description": "OK" },
                "401": { "description": "Unauthorized" },
            },
            "tags": [tag],
        } }),
    );
    paths
}

/// "RbacAuthorization" for "rbac.authorization.k8s.io".
fn group_id(group: &str) -> String {
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// "rbacAuthorization" for "rbac.authorization.k8s.io".
fn group_tag(group: &str) -> String {
    let id = group_id(group);
    let mut c = id.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn parsed(path: &str) -> Value {
        let (_, bytes) = document(path).unwrap_or_else(|| panic!("no document {path}"));
        serde_json::from_slice(bytes).expect("document is valid JSON")
    }

    fn group_version_paths() -> Vec<&'static str> {
        document_paths()
            .filter(|p| p.matches('/').count() == 2 || p.starts_with("api/"))
            .collect()
    }

    #[test]
    fn the_index_lists_every_document_with_its_hash() {
        let index: Value = serde_json::from_slice(index()).expect("index is JSON");
        let paths = index["paths"].as_object().expect("paths");
        for p in [
            "api",
            "apis",
            "api/v1",
            "apis/apps",
            "apis/apps/v1",
            "apis/autoscaling/v2",
            "apis/autoscaling/v1",
        ] {
            assert!(paths.contains_key(p), "index lacks {p}");
        }
        let url = paths["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .expect("url");
        let (hash, _) = document("apis/apps/v1").expect("apps");
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        assert_eq!(hash.len(), 128);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    }

    #[test]
    fn every_patch_operation_has_field_validation_and_the_strategic_merge_type() {
        for path in group_version_paths() {
            let doc = parsed(path);
            for (url, item) in doc["paths"].as_object().expect("paths") {
                let Some(patch) = item.get("patch") else {
                    continue;
                };
                let names: Vec<&str> = patch["parameters"]
                    .as_array()
                    .expect("parameters")
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert!(
                    names.contains(&"fieldValidation"),
                    "{url}: PATCH lacks fieldValidation"
                );
                let content = patch["requestBody"]["content"]
                    .as_object()
                    .expect("content");
                assert!(
                    content.contains_key("application/strategic-merge-patch+json"),
                    "{url}"
                );
                assert!(
                    content.contains_key("application/apply-patch+yaml"),
                    "{url}"
                );
                assert!(
                    patch["x-kubernetes-group-version-kind"].is_object(),
                    "{url}"
                );
            }
        }
    }

    #[test]
    fn every_served_kind_has_a_patch_operation_and_a_schema_with_its_gvk() {
        for r in capstan_api::catalogue::all() {
            let path = if r.group.is_empty() {
                format!("api/{}", r.version)
            } else {
                format!("apis/{}/{}", r.group, r.version)
            };
            let doc = parsed(&path);
            let gvk = json!({ "group": r.group, "kind": r.kind, "version": r.version });
            let has_patch = doc["paths"]
                .as_object()
                .expect("paths")
                .values()
                .any(|item| {
                    item.get("patch")
                        .is_some_and(|p| p["x-kubernetes-group-version-kind"] == gvk)
                });
            assert_eq!(
                has_patch,
                r.verbs.contains(&"patch"),
                "{path}: PATCH for {}",
                r.kind
            );
            let has_schema = doc["components"]["schemas"]
                .as_object()
                .expect("schemas")
                .values()
                .any(|s| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|l| l.contains(&gvk))
                });
            assert!(has_schema, "{path}: no schema for {}", r.kind);
        }
    }

    #[test]
    fn every_reference_resolves_within_its_document() {
        for path in document_paths() {
            let doc = parsed(path);
            let names: BTreeSet<&str> = doc["components"]["schemas"]
                .as_object()
                .expect("schemas")
                .keys()
                .map(String::as_str)
                .collect();
            let mut stack = vec![&doc];
            while let Some(v) = stack.pop() {
                match v {
                    Value::Object(m) => {
                        for (k, child) in m {
                            if k == "$ref" {
                                if let Some(r) = child.as_str() {
                                    let name = schemas::ref_name(r)
                                        .unwrap_or_else(|| panic!("{path}: odd ref {r}"));
                                    assert!(names.contains(name), "{path}: dangling ref {r}");
                                }
                            } else {
                                stack.push(child);
                            }
                        }
                    }
                    Value::Array(a) => stack.extend(a.iter()),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn documents_look_like_openapi_3() {
        let doc = parsed("apis/apps/v1");
        assert_eq!(doc["openapi"], "3.0.0");
        assert_eq!(doc["info"]["title"], "Kubernetes");
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert!(document("apis/nope/v1").is_none());
        let api = parsed("api");
        assert!(api["paths"]["/api/"]["get"].is_object());
    }
}

#[cfg(test)]
mod dump {
    #[test]
    #[ignore = "writes every document under $CAPSTAN_OPENAPI_DUMP_DIR, to serve from a mock server"]
    fn dump_documents() {
        let Ok(dir) = std::env::var("CAPSTAN_OPENAPI_DUMP_DIR") else {
            return;
        };
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("index.json"), super::index()).expect("write index");
        for path in super::document_paths() {
            let (_, bytes) = super::document(path).expect("document");
            let file = dir.join(format!("{}.json", path.replace('/', "__")));
            std::fs::write(file, bytes).expect("write document");
        }
    }
}
