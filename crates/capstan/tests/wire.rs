//! What clients see on the wire, byte for byte where upstream's encoder fixes it: key order
//! (kind, apiVersion, metadata), the trailing newline of every JSON response, Status bodies,
//! what DELETE answers per kind, and the deprecated componentstatuses.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::process::Command;
use std::time::Duration;

use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// A raw HTTPS request with the admin token: status code, body bytes and response headers.
fn raw(s: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, Vec<u8>, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let out_file = dir.path().join("out");
    let headers_file = dir.path().join("headers");
    let mut c = Command::new("curl");
    c.args(["-s", "-o"])
        .arg(&out_file)
        .arg("-D")
        .arg(&headers_file)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(s.ca_file())
        .args(["-X", method, "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())]);
    if let Some(b) = body {
        c.args(["--data-binary", b]);
    }
    c.arg(format!("{}{path}", s.url()));
    let out = c.output().expect("curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        code,
        std::fs::read(&out_file).unwrap_or_default(),
        std::fs::read_to_string(&headers_file).unwrap_or_default(),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(b)))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

/// The 409 of a second create is upstream's Status, byte for byte (metav1.Status field order,
/// json.Encoder's newline).
#[test]
fn a_conflicting_create_answers_upstreams_bytes() {
    let s = Server::start(BIN);
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let (code, body, _) = raw(&s, "POST", CMS, Some(cm));
    assert_eq!(code, 201, "{}", text(&body));
    let (code, body, _) = raw(&s, "POST", CMS, Some(cm));
    assert_eq!(code, 409);
    assert_eq!(
        text(&body),
        concat!(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"x\" already exists","reason":"AlreadyExists","details":{"name":"x","kind":"configmaps"},"code":409}"#,
            "\n"
        )
    );
}

/// An object, a list, a Table and a watch event each begin with kind, then apiVersion, then
/// metadata, and every JSON response ends with one newline.
#[test]
fn objects_lists_tables_and_events_begin_with_kind() {
    let s = Server::start(BIN);
    let cm =
        r#"{"metadata":{"name":"ordered"},"data":{"k":"v"},"apiVersion":"v1","kind":"ConfigMap"}"#;
    let (code, created, _) = raw(&s, "POST", CMS, Some(cm));
    assert_eq!(code, 201, "{}", text(&created));
    let begins = |b: &[u8], kind: &str, api_version: &str| {
        let t = text(b);
        let start = format!(r#"{{"kind":"{kind}","apiVersion":"{api_version}","metadata":{{"#);
        assert!(t.starts_with(&start), "expected {start}...: {t}");
        assert!(
            t.ends_with("}\n") && !t.ends_with("\n\n"),
            "one newline: {t:?}"
        );
    };
    begins(&created, "ConfigMap", "v1");
    let (_, object, _) = raw(&s, "GET", &format!("{CMS}/ordered"), None);
    begins(&object, "ConfigMap", "v1");
    let (_, list, _) = raw(&s, "GET", CMS, None);
    begins(&list, "ConfigMapList", "v1");
    assert!(
        text(&list).contains(r#""items":[{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#),
        "{}",
        text(&list)
    );
    // Discovery documents come from the same encoder upstream.
    let (_, doc, _) = raw(&s, "GET", "/api/v1", None);
    let doc = text(&doc);
    assert!(
        doc.starts_with(r#"{"kind":"APIResourceList","apiVersion":"v1","#) && doc.ends_with("}\n"),
        "{doc}"
    );
    // Values built from typed structs (a Deployment's defaults) are reordered too.
    let dep = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}"#;
    let (code, d, _) = raw(
        &s,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments?dryRun=All",
        Some(dep),
    );
    assert_eq!(code, 201, "{}", text(&d));
    begins(&d, "Deployment", "apps/v1");

    // The Table kubectl asks for, with its row objects.
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(s.ca_file())
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())])
        .args([
            "-H",
            "Accept: application/json;as=Table;v=v1;g=meta.k8s.io",
            &format!("{}{CMS}?includeObject=Object", s.url()),
        ])
        .output()
        .expect("curl");
    begins(&out.stdout, "Table", "meta.k8s.io/v1");
    assert!(
        text(&out.stdout)
            .contains(r#""object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#),
        "{}",
        text(&out.stdout)
    );

    // A watch from a list's revision streams later writes from the store's event stream (the
    // raw, unparsed path when there are no selectors).
    let (_, list, _) = raw(&s, "GET", CMS, None);
    let rv = json(&list)["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let later = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"later"}}"#;
    assert_eq!(raw(&s, "POST", CMS, Some(later)).0, 201);
    let out = Command::new("curl")
        .args(["-s", "-N", "--max-time", "2", "--cacert"])
        .arg(s.ca_file())
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())])
        .arg(format!("{}{CMS}?watch=true&resourceVersion={rv}", s.url()))
        .output()
        .expect("curl");
    let stream = text(&out.stdout);
    assert!(
        stream.starts_with(
            r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#
        ) && stream.contains(r#""name":"later""#),
        "{stream}"
    );

    // A watch from the beginning replays the object as an ADDED event.
    let out = Command::new("curl")
        .args(["-s", "-N", "--max-time", "2", "--cacert"])
        .arg(s.ca_file())
        .args(["-H", &format!("Authorization: Bearer {}", s.admin_token())])
        .arg(format!(
            "{}{CMS}?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dordered",
            s.url()
        ))
        .output()
        .expect("curl");
    let stream = text(&out.stdout);
    let first = stream.lines().next().unwrap_or("");
    assert!(
        first.starts_with(
            r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"#
        ),
        "{stream}"
    );
}

/// DELETE answers as upstream per kind: the object for kinds whose registry returns deleted
/// objects, a success Status otherwise, the object (202 with orphanDependents=false) while
/// finalizers hold it, and deletecollection the list of what it deleted.
#[test]
fn deletes_answer_per_kind_as_upstream() {
    let s = Server::start(BIN);
    let svc = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#;
    let (code, _, _) = raw(&s, "POST", "/api/v1/namespaces/default/services", Some(svc));
    assert_eq!(code, 201);
    let (code, body, _) = raw(
        &s,
        "DELETE",
        "/api/v1/namespaces/default/services/web",
        None,
    );
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["kind"], "Service", "{v}");
    assert_eq!(v["metadata"]["name"], "web");
    assert_eq!(v["spec"]["ports"][0]["port"], 80);

    let (_, created, _) = raw(
        &s,
        "POST",
        CMS,
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"gone"}}"#),
    );
    let uid = json(&created)["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let (code, body, _) = raw(&s, "DELETE", &format!("{CMS}/gone"), None);
    assert_eq!(code, 200);
    assert_eq!(
        text(&body),
        format!(
            "{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Success\",\"details\":{{\"name\":\"gone\",\"kind\":\"configmaps\",\"uid\":\"{uid}\"}}}}\n"
        )
    );
    // A group's resource names its group between name and kind.
    let (code, _, _) = raw(
        &s,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        Some(
            r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"r"}}"#,
        ),
    );
    assert_eq!(code, 201);
    let (_, body, _) = raw(
        &s,
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles/r",
        None,
    );
    assert!(
        text(&body).contains(
            r#""details":{"name":"r","group":"rbac.authorization.k8s.io","kind":"roles","uid":"#
        ),
        "{}",
        text(&body)
    );

    // Held by a finalizer: the object comes back, marked; 202 when orphanDependents=false.
    let held = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#;
    raw(&s, "POST", CMS, Some(held));
    let (code, body, _) = raw(
        &s,
        "DELETE",
        &format!("{CMS}/held"),
        Some(r#"{"orphanDependents":false}"#),
    );
    assert_eq!(code, 202, "{}", text(&body));
    let v = json(&body);
    assert_eq!(v["kind"], "ConfigMap");
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    let (code, _, _) = raw(&s, "DELETE", &format!("{CMS}/held"), None);
    assert_eq!(code, 200);

    // deletecollection: the list of the objects it set out to delete.
    for n in ["c1", "c2"] {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{n}","labels":{{"batch":"yes"}}}}}}"#
        );
        raw(&s, "POST", CMS, Some(&body));
    }
    let (code, body, _) = raw(
        &s,
        "DELETE",
        &format!("{CMS}?labelSelector=batch%3Dyes"),
        None,
    );
    assert_eq!(code, 200);
    let v = json(&body);
    assert_eq!(v["kind"], "ConfigMapList");
    let names: Vec<&str> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    assert!(text(&body).starts_with(r#"{"kind":"ConfigMapList","apiVersion":"v1""#));
}

/// `kubectl get cs` prints upstream's columns and the deprecation warning; every component
/// reports Healthy from a real check; discovery lists the resource with get and list only.
#[test]
fn kubectl_get_componentstatuses() {
    let s = Server::start(BIN);
    let out = eventually(Duration::from_secs(20), "every component healthy", || {
        let out = s.kubectl(&["get", "cs"]);
        let stdout = text(&out.stdout);
        let healthy = stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Healthy"))
            .count();
        (out.status.success() && healthy == 3).then_some(out)
    });
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"]);
    let mut names: Vec<&str> = lines.filter_map(|l| l.split_whitespace().next()).collect();
    names.sort();
    assert_eq!(names, ["controller-manager", "etcd-0", "scheduler"]);
    assert!(
        text(&out.stderr).contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{}",
        text(&out.stderr)
    );

    let one = s.get_json(&["componentstatuses", "etcd-0"]);
    assert_eq!(one["conditions"][0]["type"], "Healthy");
    assert_eq!(one["conditions"][0]["status"], "True");
    let err = s.fails(&["get", "cs", "nope"]);
    assert!(err.contains("Component not found: nope"), "{err}");
    let err = s.fails(&["delete", "cs", "scheduler"]);
    assert!(err.contains("MethodNotAllowed"), "{err}");

    let api = s.raw("/api/v1");
    let cs = api["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "componentstatuses")
        .expect("componentstatuses in /api/v1");
    assert_eq!(cs["verbs"], serde_json::json!(["get", "list"]));
    assert_eq!(cs["namespaced"], false);
    assert_eq!(cs["shortNames"], serde_json::json!(["cs"]));
    // Aggregated discovery (what kubectl reads) says the same.
    let resources = s.ok(&["api-resources", "-o", "wide"]);
    let line = resources
        .lines()
        .find(|l| l.starts_with("componentstatuses "))
        .unwrap_or_else(|| panic!("no componentstatuses in {resources}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "componentstatuses",
            "cs",
            "v1",
            "false",
            "ComponentStatus",
            "get,list"
        ],
        "{line}"
    );
}

/// Without an in-process scheduler, its entry says so instead of claiming health.
#[test]
fn a_disabled_scheduler_is_not_reported_healthy() {
    let s = Server::start_with(BIN, &["--disable-scheduler"]);
    let one = s.get_json(&["componentstatuses", "scheduler"]);
    assert_eq!(one["conditions"][0]["status"], "Unknown", "{one}");
    assert!(one["conditions"][0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("does not run")));
    let out = s.ok(&["get", "cs", "scheduler"]);
    assert!(out.contains("Unhealthy"), "{out}");
}
