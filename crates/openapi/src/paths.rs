//! The `paths` of a group-version document: every operation the catalogue serves, described as
//! upstream describes it. Entry point: [`for_group_version`].
//!
//! Each operation carries `x-kubernetes-action` and `x-kubernetes-group-version-kind`: kubectl
//! finds a resource's kind through them (`explain`), checks the PATCH operation's parameters for
//! `fieldValidation` (`apply`, `create -f`, `edit`), and trusts the schemas' merge keys only when
//! the PATCH request body lists `application/strategic-merge-patch+json`. kubectl takes the first
//! matching PATCH operation in map order, so every PATCH (status and scale too) must carry both.
//!
//! Left out, as nothing reads them: watch paths (`/watch/...`, deprecated upstream) and connect
//! subresources (exec, attach, portforward, proxy).

use capstan_api::catalogue::{ResourceInfo, Subresource};
use serde_json::{json, Map, Value};

use crate::kinds;
use crate::params::{self, name_param, namespace_param};
use crate::schemas::{self, reference};

/// Media types a response can be encoded in.
const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
];
/// Media types a list response can be encoded in (watch streams included).
const LIST_RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
/// Media types of PATCH bodies: the four patch types capstan accepts.
pub(crate) const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// "/api/v1" or "/apis/apps/v1".
pub(crate) fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// "CoreV1", "AppsV1", "RbacAuthorizationV1": the group-version part of operation ids.
fn operation_group(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut out: String = group.split('.').map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// "core_v1", "apps_v1", "rbacAuthorization_v1": the operation tag.
fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut parts = group.split('.');
    let mut out = parts.next().unwrap_or_default().to_string();
    out.extend(parts.map(capitalize));
    format!("{out}_{version}")
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What an operation answers with.
enum Body {
    Schema(String),
    Text,
}

/// One operation, before it is written out.
struct Op<'a> {
    id: String,
    description: String,
    action: &'a str,
    params: &'a [&'a str],
    request: Option<Value>,
    response: Body,
    statuses: &'a [&'a str],
    list: bool,
    gvk: (&'a str, &'a str, &'a str),
}

impl Op<'_> {
    fn into_value(self, tag: &str) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), self.description.into());
        op.insert("operationId".into(), self.id.into());
        if !self.params.is_empty() {
            op.insert("parameters".into(), params::params(self.params).into());
        }
        if let Some(request) = self.request {
            op.insert("requestBody".into(), request);
        }
        let types = if self.list {
            LIST_RESPONSE_TYPES
        } else {
            RESPONSE_TYPES
        };
        let mut responses = Map::new();
        for status in self.statuses {
            let content: Map<String, Value> = match &self.response {
                Body::Schema(name) => types
                    .iter()
                    .map(|t| (t.to_string(), json!({ "schema": reference(name) })))
                    .collect(),
                Body::Text => RESPONSE_TYPES
                    .iter()
                    .chain(["text/plain"].iter())
                    .map(|t| (t.to_string(), json!({ "schema": { "type": "string" } })))
                    .collect(),
            };
            let description = match *status {
                "201" => "Created",
                "202" => "Accepted",
                _ => "OK",
            };
            responses.insert(
                status.to_string(),
                json!({ "content": content, "description": description }),
            );
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        op.insert("responses".into(), responses.into());
        op.insert("tags".into(), json!([tag]));
        op.insert("x-kubernetes-action".into(), self.action.into());
        let (group, version, kind) = self.gvk;
        op.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({ "group": group, "kind": kind, "version": version }),
        );
        Value::Object(op)
    }
}

fn body(name: &str) -> Value {
    json!({ "content": { "*/*": { "schema": reference(name) } }, "required": true })
}

fn patch_body() -> Value {
    let content: Map<String, Value> = PATCH_TYPES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({ "schema": reference(schemas::PATCH) }),
            )
        })
        .collect();
    json!({ "content": content, "required": true })
}

fn delete_body() -> Value {
    json!({ "content": { "*/*": { "schema": reference(schemas::DELETE_OPTIONS) } } })
}

/// The operations and path parameters under one path, in upstream's key order.
#[derive(Default)]
struct PathItem {
    ops: Vec<(&'static str, Value)>,
    params: Vec<Value>,
}

impl PathItem {
    fn into_value(mut self) -> Value {
        self.ops.sort_by(|a, b| a.0.cmp(b.0));
        let mut item = Map::new();
        for (method, op) in self.ops {
            if method > "parameters" && !item.contains_key("parameters") {
                item.insert("parameters".into(), std::mem::take(&mut self.params).into());
            }
            item.insert(method.into(), op);
        }
        if !item.contains_key("parameters") {
            item.insert("parameters".into(), self.params.into());
        }
        Value::Object(item)
    }
}

/// The `paths` object of the document for one group-version.
pub(crate) fn for_group_version(group: &str, version: &str) -> Map<String, Value> {
    let prefix = prefix(group, version);
    let tag = tag(group, version);
    let mut paths = Map::new();
    paths.insert(
        format!("{prefix}/"),
        json!({ "get": {
            "description": "get available resources",
            "operationId": format!("get{}APIResources", operation_group(group, version)),
            "responses": {
                "200": {
                    "content": RESPONSE_TYPES.iter().map(|t| (t.to_string(), json!({ "schema": reference(schemas::API_RESOURCE_LIST) }))).collect::<Map<String, Value>>(),
                    "description": "OK",
                },
                "401": { "description": "Unauthorized" },
            },
            "tags": [tag],
        } }),
    );
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for r in capstan_api::catalogue::in_group_version(group, version) {
        resource_paths(r, &prefix, &mut items);
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, item) in items {
        paths.insert(path, item.into_value());
    }
    paths
}

impl PathItem {
    fn push(&mut self, method: &'static str, op: Op<'_>, tag: &str) {
        self.ops.push((method, op.into_value(tag)));
    }
}

/// Adds the collection, object and subresource paths of one resource.
fn resource_paths(r: &ResourceInfo, prefix: &str, items: &mut Vec<(String, PathItem)>) {
    let Some(kind) = kinds::find(r.group, r.version, r.kind) else {
        return;
    };
    let schema = (kind.schema_name)();
    let list = schemas::list_name(kind);
    let gv = operation_group(r.group, r.version);
    let tag = tag(r.group, r.version);
    let ns = if r.namespaced() { "Namespaced" } else { "" };
    let k = r.kind;
    let gvk = (r.group, r.version, r.kind);
    let has = |verb: &str| r.verbs.contains(&verb);
    let (collection_path, object_path) = if r.namespaced() {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{prefix}/{}", r.plural),
            format!("{prefix}/{}/{{name}}", r.plural),
        )
    };
    let scope_params = |with_name: bool| {
        let mut p = Vec::new();
        if with_name {
            p.push(name_param(k));
        }
        if r.namespaced() {
            p.push(namespace_param());
        }
        p.push(params::param("pretty"));
        p
    };

    let mut collection = PathItem {
        params: scope_params(false),
        ..Default::default()
    };
    if has("list") {
        let op = Op {
            id: format!("list{gv}{ns}{k}"),
            description: format!("list or watch objects of kind {k}"),
            action: "list",
            params: params::LIST,
            request: None,
            response: Body::Schema(list.clone()),
            statuses: &["200"],
            list: true,
            gvk,
        };
        collection.push("get", op, &tag);
    }
    if has("create") {
        let op = Op {
            id: format!("create{gv}{ns}{k}"),
            description: format!("create {}", article(k)),
            action: "post",
            params: params::WRITE,
            request: Some(body(&schema)),
            response: Body::Schema(schema.clone()),
            statuses: &["200", "201", "202"],
            list: false,
            gvk,
        };
        collection.push("post", op, &tag);
    }
    if has("deletecollection") {
        let op = Op {
            id: format!("delete{gv}Collection{ns}{k}"),
            description: format!("delete collection of {k}"),
            action: "deletecollection",
            params: params::DELETE_COLLECTION,
            request: Some(delete_body()),
            response: Body::Schema(schemas::STATUS.into()),
            statuses: &["200"],
            list: false,
            gvk,
        };
        collection.push("delete", op, &tag);
    }
    items.push((collection_path, collection));

    let mut object = PathItem {
        params: scope_params(true),
        ..Default::default()
    };
    object_ops(
        &mut object,
        &ObjectOps {
            id: format!("{gv}{ns}{k}"),
            what: format!("the specified {k}"),
            schema: schema.clone(),
            gvk,
            verbs: r.verbs,
        },
        &tag,
    );
    if has("delete") {
        let deleted = if r.delete_returns_object {
            schema.clone()
        } else {
            schemas::STATUS.to_string()
        };
        let op = Op {
            id: format!("delete{gv}{ns}{k}"),
            description: format!("delete {}", article(k)),
            action: "delete",
            params: params::DELETE,
            request: Some(delete_body()),
            response: Body::Schema(deleted),
            statuses: &["200", "202"],
            list: false,
            gvk,
        };
        object.push("delete", op, &tag);
    }
    items.push((object_path.clone(), object));

    if r.namespaced() && has("list") {
        let mut all = PathItem {
            params: Vec::new(),
            ..Default::default()
        };
        all.params.extend(params::params(params::LIST));
        all.params.push(params::param("pretty"));
        all.params
            .sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let op = Op {
            id: format!("list{gv}{k}ForAllNamespaces"),
            description: format!("list or watch objects of kind {k}"),
            action: "list",
            params: &[],
            request: None,
            response: Body::Schema(list.clone()),
            statuses: &["200"],
            list: true,
            gvk,
        };
        all.push("get", op, &tag);
        items.push((format!("{prefix}/{}", r.plural), all));
    }

    for sub in r.subresources {
        if let Some(item) = subresource_item(r, sub, &gv, ns, &tag, scope_params(true)) {
            items.push((format!("{object_path}/{}", sub.name), item));
        }
    }
}

/// get/put/patch on an object or an object-shaped subresource.
struct ObjectOps<'a> {
    /// The operation id after the verb, e.g. "AppsV1NamespacedDeploymentStatus".
    id: String,
    /// "the specified Deployment" or "status of the specified Deployment".
    what: String,
    schema: String,
    gvk: (&'a str, &'a str, &'a str),
    verbs: &'a [&'a str],
}

fn object_ops(item: &mut PathItem, o: &ObjectOps<'_>, tag: &str) {
    if o.verbs.contains(&"get") {
        let op = Op {
            id: format!("read{}", o.id),
            description: format!("read {}", o.what),
            action: "get",
            params: &[],
            request: None,
            response: Body::Schema(o.schema.clone()),
            statuses: &["200"],
            list: false,
            gvk: o.gvk,
        };
        item.push("get", op, tag);
    }
    if o.verbs.contains(&"update") {
        let op = Op {
            id: format!("replace{}", o.id),
            description: format!("replace {}", o.what),
            action: "put",
            params: params::WRITE,
            request: Some(body(&o.schema)),
            response: Body::Schema(o.schema.clone()),
            statuses: &["200", "201"],
            list: false,
            gvk: o.gvk,
        };
        item.push("put", op, tag);
    }
    if o.verbs.contains(&"patch") {
        let op = Op {
            id: format!("patch{}", o.id),
            description: format!("partially update {}", o.what),
            action: "patch",
            params: params::PATCH,
            request: Some(patch_body()),
            response: Body::Schema(o.schema.clone()),
            statuses: &["200", "201"],
            list: false,
            gvk: o.gvk,
        };
        item.push("patch", op, tag);
    }
}

/// The path item of one subresource, or None for connect subresources (not described).
fn subresource_item(
    r: &ResourceInfo,
    sub: &Subresource,
    gv: &str,
    ns: &str,
    tag: &str,
    params: Vec<Value>,
) -> Option<PathItem> {
    let (group, version) = if sub.version.is_empty() {
        (r.group, r.version)
    } else {
        (sub.group, sub.version)
    };
    let k = r.kind;
    let sub_id = capitalize(sub.name);
    let mut item = PathItem {
        params,
        ..Default::default()
    };
    if sub.name == "log" {
        let mut log_params = params::params(params::LOG);
        item.params.append(&mut log_params);
        item.params
            .sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let op = Op {
            id: format!("read{gv}{ns}{k}Log"),
            description: format!("read log of the specified {k}"),
            action: "get",
            params: &[],
            request: None,
            response: Body::Text,
            statuses: &["200"],
            list: false,
            gvk: (r.group, r.version, r.kind),
        };
        item.push("get", op, tag);
        return Some(item);
    }
    let body_kind = kinds::find(group, version, sub.kind)?;
    let schema = (body_kind.schema_name)();
    let gvk = (body_kind.group, body_kind.version, body_kind.kind);
    if sub.verbs.contains(&"create") {
        let op = Op {
            id: format!("create{gv}{ns}{k}{sub_id}"),
            description: format!("create {} of {}", sub.name, article(k)),
            action: "post",
            params: params::WRITE,
            request: Some(body(&schema)),
            response: Body::Schema(schema.clone()),
            statuses: &["200", "201", "202"],
            list: false,
            gvk,
        };
        item.push("post", op, tag);
    }
    let o = ObjectOps {
        id: format!("{gv}{ns}{k}{sub_id}"),
        what: format!("{} of the specified {k}", sub.name),
        schema,
        gvk,
        verbs: sub.verbs,
    };
    object_ops(&mut item, &o, tag);
    Some(item)
}

/// "a Deployment", "an Ingress".
fn article(kind: &str) -> String {
    match kind.chars().next() {
        Some('A' | 'E' | 'I' | 'O' | 'U') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_and_tags_follow_upstream_naming() {
        assert_eq!(operation_group("", "v1"), "CoreV1");
        assert_eq!(
            operation_group("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
        let paths = for_group_version("apps", "v1");
        let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            item["patch"]["operationId"],
            "patchAppsV1NamespacedDeployment"
        );
        assert_eq!(
            paths["/apis/apps/v1/deployments"]["get"]["operationId"],
            "listAppsV1DeploymentForAllNamespaces"
        );
        assert_eq!(
            paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
                ["x-kubernetes-group-version-kind"]["kind"],
            "Scale"
        );
    }

    #[test]
    fn cluster_scoped_resources_have_no_namespace_segment() {
        let paths = for_group_version("", "v1");
        assert!(paths.contains_key("/api/v1/namespaces/{name}"));
        assert!(paths.contains_key("/api/v1/nodes/{name}/status"));
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/log"));
        // Namespaces cannot be deleted as a collection.
        assert!(paths["/api/v1/namespaces"].get("delete").is_none());
    }
}
