//! Every user mistake gets a Status with upstream's code, reason and an actionable message,
//! and nothing a client sends takes the server down.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use capstan_testkit::{assert_status, http, Server};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn requests_without_credentials_are_401_except_health_and_version() {
    let s = Server::start(BIN);
    let (code, body) = http(&s, "GET", "/api/v1/pods", None, "application/json", false);
    assert_status(code, &body, 401, "Unauthorized", "Unauthorized");
    for path in ["/version", "/healthz", "/livez", "/readyz"] {
        let (code, _) = http(&s, "GET", path, None, "application/json", false);
        assert_eq!(code, 200, "{path}");
    }
    let out = s.kubectl(&["--token=wrong", "get", "pods"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("You must be logged in to the server"),
        "{stderr}"
    );
}

#[test]
fn malformed_bodies_are_400() {
    let s = Server::start(BIN);
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(b"{\"metadata\": "),
        "application/json",
        true,
    );
    assert_status(code, &body, 400, "BadRequest", "json parse error");
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(b"metadata: [\n"),
        "application/yaml",
        true,
    );
    assert_status(code, &body, 400, "BadRequest", "YAML");
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(br#"{"metadata":{"name":"x"},"data":{"k":7}}"#),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap",
    );
    let (code, body) = http(&s, "POST", CMS, Some(b"{}"), "text/plain", true);
    assert_eq!(code, 415, "{body}");
    // The server is still answering.
    s.ok(&["get", "ns"]);
}

#[test]
fn unknown_resources_are_404_and_oversized_bodies_413() {
    let s = Server::start(BIN);
    let (code, body) = http(&s, "GET", "/api/v1/widgets", None, "application/json", true);
    assert_status(
        code,
        &body,
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    let err = s.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    let big = json!({"metadata":{"name":"big"},"data":{"k":"x".repeat(3 * 1024 * 1024 + 10)}})
        .to_string();
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(big.as_bytes()),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        413,
        "RequestEntityTooLarge",
        "limit is 3145728",
    );
    let (code, body) = http(
        &s,
        "GET",
        "/api/v1/namespaces/default/configmaps/nope",
        None,
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        404,
        "NotFound",
        "configmaps \"nope\" not found",
    );
    assert_eq!(
        body["details"],
        json!({"name": "nope", "kind": "configmaps"})
    );
}

#[test]
fn kind_version_name_and_namespace_must_match_the_url() {
    let s = Server::start(BIN);
    let cm = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let (code, body) = http(
        &s,
        "POST",
        "/api/v1/namespaces",
        Some(cm),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        400,
        "BadRequest",
        "the object provided is unrecognized (must be of type Namespace)",
    );
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(br#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        400,
        "BadRequest",
        "the API version in the data (apps/v1) does not match the expected API version (v1)",
    );
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(br#"{"metadata":{"name":"x","namespace":"kube-system"}}"#),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    );
    s.ok(&["create", "cm", "real"]);
    let (code, body) = http(
        &s,
        "PUT",
        &format!("{CMS}/real"),
        Some(br#"{"metadata":{"name":"other"}}"#),
        "application/json",
        true,
    );
    assert_status(
        code,
        &body,
        400,
        "BadRequest",
        "the name of the object (other) does not match the name on the URL (real)",
    );
}

#[test]
fn invalid_objects_are_422_with_field_causes() {
    let s = Server::start(BIN);
    let (code, body) = http(
        &s,
        "POST",
        CMS,
        Some(br#"{"metadata":{"name":"Bad_Name"}}"#),
        "application/json",
        true,
    );
    assert_status(code, &body, 422, "Invalid", "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueInvalid");
    let deployment = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
        "spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}});
    let out = s.kubectl_stdin(&["create", "-f", "-"], &deployment.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The Deployment \"d\" is invalid")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}});
    let out = s.kubectl_stdin(&["create", "-f", "-"], &pod.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
}

#[test]
fn missing_and_terminating_namespaces_refuse_new_objects() {
    let s = Server::start(BIN);
    let err = s.fails(&["create", "cm", "x", "-n", "nowhere"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
    s.ok(&["create", "ns", "leaving"]);
    s.ok(&["delete", "ns", "leaving", "--wait=false"]);
    let err = s.fails(&["create", "cm", "x", "-n", "leaving"]);
    assert!(
        err.contains(
            "unable to create new content in namespace leaving because it is being terminated"
        ),
        "{err}"
    );
    let err = s.fails(&["delete", "ns", "default"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}

#[test]
fn duplicates_and_stale_watches_get_their_codes() {
    let s = Server::start(BIN);
    s.ok(&["create", "cm", "once"]);
    let err = s.fails(&["create", "cm", "once"]);
    // Imperative create words it "failed to create configmap: ..."; create -f as "Error from server (AlreadyExists)".
    assert!(err.contains("configmaps \"once\" already exists"), "{err}");
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"once"}}"#;
    let out = s.kubectl_stdin(&["create", "-f", "-"], dup);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Error from server (AlreadyExists)")
            && err.contains("configmaps \"once\" already exists"),
        "{err}"
    );
    // A server-side dry run answers as the real create would.
    let out = s.kubectl_stdin(&["create", "-f", "-", "--dry-run=server"], dup);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AlreadyExists"),
        "dry run of an existing object: {err}"
    );
    let fresh = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"not-yet"}}"#;
    let out = s.ok_stdin(&["create", "-f", "-", "--dry-run=server"], fresh);
    assert!(out.contains("created (server dry run)"), "{out}");
    s.fails(&["get", "cm", "not-yet"]);
    let (code, body) = http(
        &s,
        "GET",
        &format!("{CMS}?resourceVersion=999999&resourceVersionMatch=NotOlderThan"),
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 504, "{body}");
    let (code, body) = http(
        &s,
        "GET",
        &format!("{CMS}?limit=1&continue=garbage"),
        None,
        "application/json",
        true,
    );
    assert_status(code, &body, 400, "BadRequest", "continue");
    let (code, body) = http(
        &s,
        "GET",
        &format!("{CMS}?fieldValidation=Bogus&dryRun=Nope"),
        None,
        "application/json",
        true,
    );
    assert_eq!(code, 200, "reads ignore write options: {body}");
    let (code, body) = http(
        &s,
        "POST",
        &format!("{CMS}?dryRun=Nope"),
        Some(b"{\"metadata\":{\"name\":\"z\"}}"),
        "application/json",
        true,
    );
    assert_eq!(code, 400, "{body}");
}
