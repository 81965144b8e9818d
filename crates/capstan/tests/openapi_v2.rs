//! `/openapi/v2` with the real kubectl: files whose top-level kind is `List` (what
//! `kubectl get -o yaml` writes) are validated on the client against its protobuf form, so
//! `create -f` and `apply -f` of them work under the default `--validate=strict`, report unknown
//! fields and wrong types as upstream does, and a backup made with `get -o yaml` restores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::path::Path;
use std::process::Command;

use capstan_testkit::{write_file, Server};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// A ConfigMap, a Deployment and a Service in one List; `{extra}` lands in the Deployment's spec.
fn list(data: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: settings
  data:
    mode: {data}
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: web
  spec:{extra}
    replicas: 2
    selector:
      matchLabels:
        app: web
    template:
      metadata:
        labels:
          app: web
      spec:
        containers:
        - name: web
          image: nginx:1.25
          ports:
          - containerPort: 80
            name: http
- apiVersion: v1
  kind: Service
  metadata:
    name: web
  spec:
    selector:
      app: web
    ports:
    - port: 80
      targetPort: http
"
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn create_and_apply_of_a_list_work_with_default_validation() {
    let s = Server::start(BIN);
    let dir = tempfile::tempdir().expect("tmp");
    let file = path(&write_file(dir.path(), "list.yaml", &list("fast", "")));

    let out = s.ok(&["create", "-f", &file]);
    assert_eq!(
        lines(&out),
        [
            "configmap/settings created",
            "deployment.apps/web created",
            "service/web created"
        ]
    );
    assert_eq!(
        s.get_json(&["configmap", "settings"])["data"]["mode"],
        "fast"
    );
    assert_eq!(s.get_json(&["deployment", "web"])["spec"]["replicas"], 2);
    s.ok(&["delete", "-f", &file]);

    let out = s.ok(&["apply", "-f", &file]);
    assert_eq!(
        lines(&out),
        [
            "configmap/settings created",
            "deployment.apps/web created",
            "service/web created"
        ]
    );
    let out = s.ok(&["apply", "-f", &file]);
    assert_eq!(
        lines(&out),
        [
            "configmap/settings unchanged",
            "deployment.apps/web unchanged",
            "service/web unchanged"
        ]
    );
    let file = path(&write_file(dir.path(), "list.yaml", &list("slow", "")));
    let out = s.ok(&["apply", "-f", &file]);
    assert_eq!(
        lines(&out),
        [
            "configmap/settings configured",
            "deployment.apps/web unchanged",
            "service/web unchanged"
        ]
    );
    assert_eq!(
        s.get_json(&["configmap", "settings"])["data"]["mode"],
        "slow"
    );
}

#[test]
fn an_unknown_field_in_a_list_item_fails_client_side_validation_unless_turned_off() {
    let s = Server::start(BIN);
    let dir = tempfile::tempdir().expect("tmp");
    let file = path(&write_file(
        dir.path(),
        "list.yaml",
        &list("fast", "\n    foo: bar"),
    ));

    for verb in ["create", "apply"] {
        let err = s.fails(&[verb, "-f", &file]);
        assert_eq!(
            err.trim_end(),
            format!(
                "error: error validating \"{file}\": error validating data: ValidationError(Deployment.spec): unknown field \"foo\" in io.k8s.api.apps.v1.DeploymentSpec; if you choose to ignore these errors, turn validation off with --validate=false"
            ),
            "{verb}"
        );
    }
    // Nothing was sent: validation runs before the first item is created.
    let missing = s.kubectl(&["get", "configmap", "settings"]);
    assert!(!missing.status.success());

    // Wrong types are reported too, every error at once, as upstream.
    let wrong = list("fast", "\n    paused: \"yes\"\n    minReadySeconds: fast").replace(
        "- name: web\n          image",
        "- name: web\n          bogus: 1\n          image",
    );
    let wrong = path(&write_file(dir.path(), "wrong.yaml", &wrong));
    let err = s.fails(&["create", "-f", &wrong]);
    for expected in [
        "ValidationError(Deployment.spec.paused): invalid type for io.k8s.api.apps.v1.DeploymentSpec.paused: got \"string\", expected \"boolean\"",
        "ValidationError(Deployment.spec.minReadySeconds): invalid type for io.k8s.api.apps.v1.DeploymentSpec.minReadySeconds: got \"string\", expected \"integer\"",
        "ValidationError(Deployment.spec.template.spec.containers[0]): unknown field \"bogus\" in io.k8s.api.core.v1.Container",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }

    let out = s.ok(&["create", "-f", &file, "--validate=false"]);
    assert_eq!(
        lines(&out),
        [
            "configmap/settings created",
            "deployment.apps/web created",
            "service/web created"
        ]
    );
    let got = s.get_json(&["deployment", "web"]);
    assert!(got["spec"].get("foo").is_none(), "{got}");
}

#[test]
fn a_backup_made_with_get_o_yaml_restores_with_create() {
    let s = Server::start(BIN);
    let dir = tempfile::tempdir().expect("tmp");
    s.ok(&["create", "namespace", "shop"]);
    let file = path(&write_file(dir.path(), "list.yaml", &list("fast", "")));
    s.ok(&["apply", "-n", "shop", "-f", &file]);

    let backup = s.ok(&["get", "cm,deploy", "-n", "shop", "-o", "yaml"]);
    assert!(backup.starts_with("apiVersion: v1\nitems:\n"), "{backup}");
    assert!(backup.contains("kind: List"), "{backup}");
    let backup_file = path(&write_file(dir.path(), "backup.yaml", &backup));
    s.ok(&["delete", "-n", "shop", "configmap", "settings"]);
    s.ok(&["delete", "-n", "shop", "deployment", "web"]);

    let out = s.ok(&["create", "-f", &backup_file]);
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let cm = s.get_json(&["-n", "shop", "configmap", "settings"]);
    assert_eq!(cm["data"]["mode"], "fast");
    let deploy = s.get_json(&["-n", "shop", "deployment", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
}

/// GET /openapi/v2 with curl and these headers: status, headers (lowercased names) and body.
fn get_v2(s: &Server, headers: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tmp");
    let body = dir.path().join("body");
    let head = dir.path().join("head");
    let mut c = Command::new("curl");
    c.args(["-s", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&head)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(s.ca_file())
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())]);
    for h in headers {
        c.args(["-H", h]);
    }
    c.arg(format!("{}/openapi/v2", s.url()));
    let out = c.output().expect("curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let head = std::fs::read_to_string(&head).unwrap_or_default();
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, std::fs::read(&body).unwrap_or_default())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn openapi_v2_negotiates_its_form_and_answers_304_for_a_current_etag() {
    let s = Server::start(BIN);
    let (code, headers, proto) = get_v2(
        &s,
        &["Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"],
    );
    assert_eq!(code, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    );
    assert_eq!(header(&headers, "vary"), Some("Accept"));
    let etag = header(&headers, "etag").expect("etag").to_string();
    assert!(proto.len() > 100_000, "{} bytes", proto.len());

    let (code, _, body) = get_v2(
        &s,
        &[
            "Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            &format!("If-None-Match: {etag}"),
        ],
    );
    assert_eq!((code, body.len()), (304, 0));

    let (code, headers, json) = get_v2(&s, &["Accept: application/json"]);
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "etag"), Some(etag.as_str()));
    let doc: Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(doc["swagger"], "2.0");
    let deployment = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    assert_eq!(
        deployment["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );

    let (code, _, _) = get_v2(&s, &["Accept: text/html"]);
    assert_eq!(code, 406);
}
