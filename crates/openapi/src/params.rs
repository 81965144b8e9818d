//! The query and path parameters of operations, with upstream's names, types and descriptions.
//! Entry point: [`param`].
//!
//! kubectl reads one of these for real: before `apply`, `create -f` and `edit` it checks that the
//! PATCH operation of the kind lists a `fieldValidation` query parameter, and otherwise falls back
//! to client-side validation against OpenAPI v2 (see [`crate::v2`]).

use serde_json::{json, Value};

/// The name, type and description of one parameter.
struct Param {
    name: &'static str,
    ty: &'static str,
    description: &'static str,
}

const PARAMS: &[Param] = &[
    Param { name: "allowWatchBookmarks", ty: "boolean", description: "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored." },
    Param { name: "container", ty: "string", description: "The container for which to stream logs. Defaults to only container if there is one container in the pod." },
    Param { name: "continue", ty: "string", description: "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize." },
    Param { name: "dryRun", ty: "string", description: "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed" },
    Param { name: "fieldManager", ty: "string", description: "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint." },
    Param { name: "fieldSelector", ty: "string", description: "A selector to restrict the list of returned objects by their fields. Defaults to everything." },
    Param { name: "fieldValidation", ty: "string", description: "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered." },
    Param { name: "follow", ty: "boolean", description: "Follow the log stream of the pod. Defaults to false." },
    Param { name: "force", ty: "boolean", description: "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests." },
    Param { name: "gracePeriodSeconds", ty: "integer", description: "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately." },
    Param { name: "labelSelector", ty: "string", description: "A selector to restrict the list of returned objects by their labels. Defaults to everything." },
    Param { name: "limit", ty: "integer", description: "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results." },
    Param { name: "limitBytes", ty: "integer", description: "If set, the number of bytes to read from the server before terminating the log output. This may not display a complete final line of logging, and may return slightly more or slightly less than the specified limit." },
    Param { name: "orphanDependents", ty: "boolean", description: "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both." },
    Param { name: "pretty", ty: "string", description: "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget)." },
    Param { name: "previous", ty: "boolean", description: "Return previous terminated container logs. Defaults to false." },
    Param { name: "propagationPolicy", ty: "string", description: "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground." },
    Param { name: "resourceVersion", ty: "string", description: "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset" },
    Param { name: "resourceVersionMatch", ty: "string", description: "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset" },
    Param { name: "sendInitialEvents", ty: "boolean", description: "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection, followed by a bookmark annotated `\"k8s.io/initial-events-end\": \"true\"`." },
    Param { name: "sinceSeconds", ty: "integer", description: "A relative time in seconds before the current time from which to show logs. If this value precedes the time a pod was started, only logs since the pod start will be returned. If this value is in the future, no logs will be returned. Only one of sinceSeconds or sinceTime may be specified." },
    Param { name: "tailLines", ty: "integer", description: "If set, the number of lines from the end of the logs to show. If not specified, logs are shown from the creation of the container or sinceSeconds or sinceTime." },
    Param { name: "timeoutSeconds", ty: "integer", description: "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity." },
    Param { name: "timestamps", ty: "boolean", description: "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false." },
    Param { name: "watch", ty: "boolean", description: "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion." },
];

/// A query parameter by name, as an OpenAPI parameter object.
pub(crate) fn param(name: &str) -> Value {
    let (ty, description) = PARAMS
        .iter()
        .find(|p| p.name == name)
        .map(|p| (p.ty, p.description))
        .unwrap_or(("string", ""));
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

/// Several query parameters, in the order given.
pub(crate) fn params(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| param(n)).collect()
}

/// The `{name}` path parameter of an object of `kind`.
pub(crate) fn name_param(kind: &str) -> Value {
    json!({
        "description": format!("name of the {kind}"),
        "in": "path",
        "name": "name",
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// The `{namespace}` path parameter.
pub(crate) fn namespace_param() -> Value {
    json!({
        "description": "object name and auth scope, such as for teams and projects",
        "in": "path",
        "name": "namespace",
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

/// Parameters of list (and watch) operations.
pub(crate) const LIST: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];

/// Parameters of create and replace.
pub(crate) const WRITE: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];

/// Parameters of patch: kubectl requires `fieldValidation` here.
pub(crate) const PATCH: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];

/// Parameters of delete.
pub(crate) const DELETE: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];

/// Parameters of deletecollection: delete's plus list's selectors.
pub(crate) const DELETE_COLLECTION: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

/// Parameters of a pod's log.
pub(crate) const LOG: &[&str] = &[
    "container",
    "follow",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "tailLines",
    "timestamps",
];
