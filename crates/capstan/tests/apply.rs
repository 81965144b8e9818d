//! `kubectl apply` (client- and server-side), `diff`, `edit`, `patch`, `set image`, `scale`,
//! `label`/`annotate`, `rollout restart` and `explain` against a real server, with the stored
//! objects and their managedFields as upstream leaves them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capstan_testkit::{examples_dir, http, write_file, Server};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

const WEB_V1: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: nginx:1.25
        env:
        - name: MODE
          value: prod
        ports:
        - containerPort: 80
        - containerPort: 443
";

/// WEB_V1 with replicas 3 to 5, a new image, an env var added, a port and a label removed
/// and a second container added.
const WEB_V2: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 5
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - name: MODE
          value: prod
        - name: DEBUG
          value: \"false\"
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox
        command: [\"sleep\", \"3600\"]
";

/// WEB_V2 with the second container removed again.
const WEB_V3: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 5
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: nginx:1.27
        env:
        - name: MODE
          value: prod
        - name: DEBUG
          value: \"false\"
        ports:
        - containerPort: 80
";

fn file(s: &Server, name: &str, contents: &str) -> String {
    write_file(s.dir.path(), name, contents)
        .to_string_lossy()
        .into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// kubectl with extra environment (the testkit's own runner takes none).
fn kubectl_env(s: &Server, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new("kubectl");
    c.args(args)
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBECACHEDIR", s.dir.path().join("kubecache"))
        .env("HOME", s.dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running kubectl")
}

/// The object with its managedFields (which `kubectl get` hides by default).
fn with_managed_fields(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&s.ok(&a)).expect("json")
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The managedFields entry of `manager` (with `operation`).
fn entry(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn managers(obj: &Value) -> BTreeSet<String> {
    entries(obj)
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or_default(),
                e["operation"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The spec upstream stores for WEB_V3 (after applying V1, V2 and V3 in turn).
fn web_v3_spec() -> Value {
    json!({
        "progressDeadlineSeconds": 600, "replicas": 5, "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "env": [{"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "false"}],
                    // Defaulted when the container was created with a tagged image; a later
                    // image change keeps it, as upstream's patch does.
                    "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent", "name": "app",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30
            }
        }
    })
}

#[test]
fn client_side_apply_is_idempotent_and_reconciles_changes_as_upstream() {
    let s = Server::start(BIN);
    let ex = examples_dir();
    let ex = ex.to_str().expect("path");
    let first = s.ok(&["apply", "-f", ex]);
    for obj in [
        "deployment.apps/my-deployment",
        "ingress.networking.k8s.io/my-ingress",
        "pod/my-pod",
        "service/my-service",
    ] {
        assert!(first.contains(&format!("{obj} created")), "{first}");
    }
    let again = s.ok(&["apply", "-f", ex]);
    assert_eq!(again.matches(" unchanged").count(), 4, "{again}");

    let v1 = file(&s, "web-v1.yaml", WEB_V1);
    let v2 = file(&s, "web-v2.yaml", WEB_V2);
    let v3 = file(&s, "web-v3.yaml", WEB_V3);
    assert!(s
        .ok(&["apply", "-f", &v1])
        .contains("deployment.apps/web created"));
    let csa = entry(
        &with_managed_fields(&s, &["deployment", "web"]),
        "kubectl-client-side-apply",
        "Update",
    )
    .expect("entry");
    assert_eq!(csa["apiVersion"], "apps/v1");
    assert_eq!(
        csa["fieldsV1"]["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}, "f:tier": {}})
    );

    // A pending change: kubectl diff prints it and exits 1 (server-side dry run).
    let diff = s.kubectl(&["diff", "-f", &v2]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "{}{}",
        stdout(&diff),
        stderr(&diff)
    );
    let d = stdout(&diff);
    assert!(
        d.contains("-  replicas: 3") && d.contains("+  replicas: 5"),
        "{d}"
    );
    assert!(
        d.contains("-    tier: frontend") && d.contains("+        image: nginx:1.27"),
        "{d}"
    );
    assert_eq!(
        s.get_json(&["deployment", "web"])["spec"]["replicas"],
        3,
        "diff must not write"
    );

    assert!(s
        .ok(&["apply", "-f", &v2])
        .contains("deployment.apps/web configured"));
    let got = s.get_json(&["deployment", "web"]);
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));
    let mut want = web_v3_spec();
    want["template"]["spec"]["containers"].as_array_mut().expect("containers").push(json!({
        "command": ["sleep", "3600"], "image": "busybox", "imagePullPolicy": "Always", "name": "sidecar",
        "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
    }));
    assert_eq!(got["spec"], want);

    assert!(s
        .ok(&["apply", "-f", &v3])
        .contains("deployment.apps/web configured"));
    let got = s.get_json(&["deployment", "web"]);
    assert_eq!(got["spec"], web_v3_spec());
    let last: Value = serde_json::from_str(
        got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("annotation"),
    )
    .expect("json");
    assert_eq!(last["spec"]["replicas"], 5);

    let diff = s.kubectl(&["diff", "-f", &v3]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}{}",
        stdout(&diff),
        stderr(&diff)
    );
    assert!(s
        .ok(&["apply", "-f", &v3])
        .contains("deployment.apps/web unchanged"));
}

#[test]
fn server_side_apply_creates_shares_conflicts_forces_and_prunes() {
    let s = Server::start(BIN);
    let cm = |name: &str, data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    a: \"1\"\ndata:\n{data}")
    };
    let mine = file(&s, "mine.yaml", &cm("ssa", "  k1: v1\n  k2: v2\n"));
    assert_eq!(
        s.ok(&["apply", "--server-side", "-f", &mine]).trim(),
        "configmap/ssa serverside-applied"
    );
    let obj = with_managed_fields(&s, &["configmap", "ssa"]);
    assert_eq!(entries(&obj).len(), 1, "{obj}");
    let e = entry(&obj, "kubectl", "Apply").expect("kubectl applies");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {"f:k1": {}, "f:k2": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
    );
    let rv = obj["metadata"]["resourceVersion"].clone();
    // Applying the same configuration again writes nothing.
    s.ok(&["apply", "--server-side", "-f", &mine]);
    assert_eq!(
        s.get_json(&["configmap", "ssa"])["metadata"]["resourceVersion"],
        rv
    );

    // Another manager changing k1 conflicts; kubectl prints the conflict and its help.
    let theirs = file(&s, "theirs.yaml", &cm("ssa", "  k1: changed\n  k2: v2\n"));
    let err = s.fails(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &theirs,
    ]);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .data.k1"),
        "{err}"
    );
    assert!(
        err.contains("Please review the fields above--they currently have other managers."),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");

    // The Status itself, as a raw client sees it.
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"k1": "raw"}})).expect("json");
    let (code, status) = http(
        &s,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=raw",
        Some(&body),
        "application/apply-patch+yaml",
        true,
    );
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\": .data.k1"
    );
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".data.k1"}])
    );
    let (code, status) = http(
        &s,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/ssa",
        Some(&body),
        "application/apply-patch+yaml",
        true,
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["message"], "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");

    // Dry run: the answer shows the change, the store keeps the old value.
    let dry = s.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        &theirs,
        "-o",
        "json",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&dry).expect("json")["data"]["k1"],
        "changed"
    );
    assert_eq!(s.get_json(&["configmap", "ssa"])["data"]["k1"], "v1");

    // Forced: the field moves to the other manager; both keep k2, which they agree on.
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &theirs,
    ]);
    let obj = with_managed_fields(&s, &["configmap", "ssa"]);
    assert_eq!(obj["data"], json!({"k1": "changed", "k2": "v2"}));
    assert_eq!(
        entry(&obj, "kubectl", "Apply").expect("kubectl")["fieldsV1"]["f:data"],
        json!({"f:k2": {}})
    );
    assert_eq!(
        entry(&obj, "other", "Apply").expect("other")["fieldsV1"]["f:data"],
        json!({"f:k1": {}, "f:k2": {}})
    );

    // kubectl stops applying k2: the other manager still owns it, so it stays. Once that
    // manager drops it too, nobody owns it and it is pruned.
    let mine = file(&s, "mine.yaml", &cm("ssa", "  k3: v3\n"));
    s.ok(&["apply", "--server-side", "-f", &mine]);
    assert_eq!(
        s.get_json(&["configmap", "ssa"])["data"],
        json!({"k1": "changed", "k2": "v2", "k3": "v3"})
    );
    let theirs = file(&s, "theirs.yaml", &cm("ssa", "  k1: changed\n"));
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &theirs,
    ]);
    assert_eq!(
        s.get_json(&["configmap", "ssa"])["data"],
        json!({"k1": "changed", "k3": "v3"})
    );
}

#[test]
fn server_side_apply_takes_over_from_client_side_apply() {
    let s = Server::start(BIN);
    let v1 = file(&s, "web-v1.yaml", WEB_V1);
    let v2 = file(&s, "web-v2.yaml", WEB_V2);
    s.ok(&["apply", "-f", &v1]);

    // A different manager conflicts with what client-side apply set.
    let err = s.fails(&["apply", "--server-side", "--field-manager=other", "-f", &v2]);
    assert!(err.contains("Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:"), "{err}");
    assert!(
        err.contains("- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image\n"),
        "{err}"
    );

    // kubectl's own server-side apply may take them over (the live values still match the
    // last-applied annotation), then migrates the client-side entry into its own and
    // applies again, which removes what V2 no longer lists.
    let out = s.ok(&["apply", "--server-side", "-f", &v2]);
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    let obj = with_managed_fields(&s, &["deployment", "web"]);
    let ms = managers(&obj);
    assert!(
        ms.contains("kubectl/Apply") && ms.contains("kubectl-last-applied/Apply"),
        "{ms:?}"
    );
    assert!(!ms.contains("kubectl-client-side-apply/Update"), "{ms:?}");
    assert_eq!(obj["spec"]["replicas"], 5);
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    let containers = &obj["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(containers[1]["name"], "sidecar");
    let last = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("kept");
    assert!(
        last.contains("nginx:1.27") && last.ends_with('\n'),
        "{last}"
    );
    let e = entry(&obj, "kubectl-last-applied", "Apply").expect("entry");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}})
    );

    // Client-side apply keeps working on the same object.
    let v3 = file(&s, "web-v3.yaml", WEB_V3);
    assert!(s
        .ok(&["apply", "-f", &v3])
        .contains("deployment.apps/web configured"));
    assert_eq!(
        s.get_json(&["deployment", "web"])["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn apply_prune_deletes_labelled_objects_no_longer_in_the_set() {
    let s = Server::start(BIN);
    let dir = s.dir.path().join("set");
    std::fs::create_dir_all(&dir).expect("dir");
    let cm = |name: &str, label: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: {label}\ndata:\n  k: v\n")
    };
    write_file(&dir, "a.yaml", &cm("cm-a", "pruned"));
    write_file(&dir, "b.yaml", &cm("cm-b", "pruned"));
    s.ok_stdin(&["apply", "-f", "-"], &cm("bystander", "other"));
    let dir_s = dir.to_str().expect("path");
    s.ok(&["apply", "--prune", "-l", "app=pruned", "-f", dir_s]);
    std::fs::remove_file(dir.join("b.yaml")).expect("remove");
    let out = s.ok(&["apply", "--prune", "-l", "app=pruned", "-f", dir_s]);
    assert!(out.contains("configmap/cm-a unchanged"), "{out}");
    assert!(out.contains("configmap/cm-b pruned"), "{out}");
    let names: Vec<String> = s.get_json(&["configmaps"])["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        names.contains(&"cm-a".to_string()) && names.contains(&"bystander".to_string()),
        "{names:?}"
    );
    assert!(!names.contains(&"cm-b".to_string()), "{names:?}");
}

#[test]
fn edit_patch_set_scale_label_annotate_and_restart_change_the_object_and_record_managers() {
    let s = Server::start(BIN);
    let v2 = file(&s, "web-v2.yaml", WEB_V2);
    s.ok(&["apply", "-f", &v2]);

    let editor: PathBuf = write_file(
        s.dir.path(),
        "editor.sh",
        "#!/bin/sh\nsed -i 's/image: busybox$/image: busybox:1.36/' \"$1\"\n",
    );
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");
    assert!(chmod.success());
    let edit = kubectl_env(
        &s,
        &["edit", "deployment/web"],
        &[("EDITOR", &editor), ("KUBE_EDITOR", &editor)],
    );
    assert!(edit.status.success(), "{}", stderr(&edit));
    assert!(
        stdout(&edit).contains("deployment.apps/web edited"),
        "{}",
        stdout(&edit)
    );

    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"minReadySeconds":5}}"#,
    ]);
    s.ok(&["patch", "deployment", "web", "--type", "strategic", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#]);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"annotations":{"team":"a"}}}"#,
    ]);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]"#,
    ]);
    s.ok(&["set", "image", "deployment/web", "app=nginx:1.28"]);

    // scale: a merge patch on the scale subresource, then (with a precondition) a PUT of the
    // Scale without a Content-Type.
    s.ok(&["scale", "deployment/web", "--replicas=4"]);
    assert_eq!(s.get_json(&["deployment", "web"])["spec"]["replicas"], 4);
    let put = s.kubectl(&[
        "scale",
        "deployment/web",
        "--current-replicas=4",
        "--replicas=2",
        "-v=6",
    ]);
    assert!(put.status.success(), "{}", stderr(&put));
    assert!(
        stderr(&put).contains("PUT https://")
            && stderr(&put).contains("/deployments/web/scale 200"),
        "{}",
        stderr(&put)
    );
    let stale = s.fails(&[
        "scale",
        "deployment/web",
        "--current-replicas=4",
        "--replicas=3",
    ]);
    assert!(
        stale.contains("Expected replicas to be 4, was 2"),
        "{stale}"
    );

    s.ok(&["label", "deployment", "web", "env=prod"]);
    assert!(
        managers(&with_managed_fields(&s, &["deployment", "web"])).contains("kubectl-label/Update")
    );
    s.ok(&["label", "deployment", "web", "env-"]);
    s.ok(&["annotate", "deployment", "web", "note=x"]);
    s.ok(&["annotate", "deployment", "web", "note-"]);
    s.ok(&["rollout", "restart", "deployment/web"]);

    let obj = with_managed_fields(&s, &["deployment", "web"]);
    let spec = &obj["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["minReadySeconds"], 5);
    assert_eq!(spec["revisionHistoryLimit"], 3);
    let containers = &spec["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "nginx:1.28");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "EXTRA", "value": "1"}, {"name": "MODE", "value": "prod"}, {"name": "DEBUG", "value": "false"}])
    );
    assert_eq!(containers[1]["image"], "busybox:1.36");
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    let annotations = obj["metadata"]["annotations"]
        .as_object()
        .expect("annotations");
    assert!(
        annotations.contains_key("team") && !annotations.contains_key("note"),
        "{annotations:?}"
    );
    assert!(
        spec["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );

    let ms = managers(&obj);
    for m in [
        "kubectl-client-side-apply/Update",
        "kubectl-edit/Update",
        "kubectl-patch/Update",
        "kubectl-set/Update",
        "kubectl-rollout/Update",
    ] {
        assert!(ms.contains(m), "{m} missing from {ms:?}");
    }
    // The label manager owned nothing once its label was removed.
    assert!(!ms.contains("kubectl-label/Update"), "{ms:?}");
    let scale = entries(&obj)
        .into_iter()
        .find(|e| e["subresource"] == "scale")
        .expect("scale entry");
    assert_eq!(scale["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(scale["operation"], "Update");
    let edit = entry(&obj, "kubectl-edit", "Update").expect("edit");
    assert_eq!(
        edit["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"sidecar\"}": {"f:image": {}}}}}}})
    );
    // Nobody owns replicas twice: the scale manager took it from client-side apply.
    let csa = entry(&obj, "kubectl-client-side-apply", "Update").expect("csa");
    assert!(
        csa["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{csa}"
    );
}

#[test]
fn explain_reads_fields_from_the_served_openapi() {
    let s = Server::start(BIN);
    let out = s.ok(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    assert!(
        out.contains("KIND:       Deployment") && out.contains("VERSION:    v1"),
        "{out}"
    );
    assert!(
        out.contains("FIELD: rollingUpdate <RollingUpdateDeployment>"),
        "{out}"
    );
    assert!(
        out.contains("maxSurge\t<IntOrString>") && out.contains("maxUnavailable\t<IntOrString>"),
        "{out}"
    );
    let out = s.ok(&["explain", "pod.spec.containers"]);
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    for f in [
        "image\t<string>",
        "name\t<string> -required-",
        "ports\t<[]ContainerPort>",
    ] {
        assert!(out.contains(f), "{f} missing:\n{out}");
    }
}

#[test]
fn unknown_fields_fail_strictly_warn_or_are_dropped_as_validate_asks() {
    let s = Server::start(BIN);
    let bad = file(
        &s,
        "bad.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: strict
spec:
  foo: bar
  selector:
    matchLabels: {app: strict}
  template:
    metadata:
      labels: {app: strict}
    spec:
      containers:
      - name: c
        image: nginx
",
    );
    let err = s.fails(&["apply", "-f", &bad]);
    assert!(
        err.contains(&format!("Error from server (BadRequest): error when creating \"{bad}\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\"")),
        "{err}"
    );
    // The Status itself, as a raw client sees it.
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"foo":1,"bar":2}"#;
    let (code, status) = http(
        &s,
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        Some(body),
        "application/json",
        true,
    );
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"foo\", unknown field \"bar\""
    );
    // An unknown field in the patch of an existing object is an invalid patch (422), as
    // upstream words it.
    let good = file(
        &s,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: patched\ndata:\n  a: b\n",
    );
    s.ok(&["apply", "-f", &good]);
    let unknown = file(
        &s,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: patched\nfoo: 1\ndata:\n  a: b\n",
    );
    let err = s.fails(&["apply", "-f", &unknown]);
    assert!(
        err.contains("The request is invalid: patch: Invalid value: \"map[foo:1 metadata:map[annotations:map[kubectl.kubernetes.io/last-applied-configuration:")
            && err.trim_end().ends_with("strict decoding error: unknown field \"foo\""),
        "{err}"
    );
    let warn = s.kubectl(&["apply", "-f", &bad, "--validate=warn"]);
    assert!(warn.status.success(), "{}", stderr(&warn));
    assert!(
        stderr(&warn).contains("Warning: unknown field \"spec.foo\""),
        "{}",
        stderr(&warn)
    );
    s.ok(&["delete", "deployment", "strict"]);
    s.ok(&["apply", "-f", &bad, "--validate=false"]);
    let got = s.get_json(&["deployment", "strict"]);
    assert!(got["spec"].get("foo").is_none(), "{got}");

    // Server-side apply checks the configuration against the schema itself, as upstream
    // (which answers with a reasonless 500).
    let err = s.fails(&["apply", "--server-side", "-f", &bad]);
    assert!(
        err.contains("Error from server: failed to create typed patch object (default/strict; apps/v1, Kind=Deployment): .spec.foo: field not declared in schema"),
        "{err}"
    );
}

#[test]
fn creates_record_their_manager_from_the_field_manager_or_the_user_agent() {
    let s = Server::start(BIN);
    s.ok(&["create", "deployment", "made", "--image=nginx"]);
    s.ok(&[
        "autoscale",
        "deployment",
        "made",
        "--min=2",
        "--max=5",
        "--cpu-percent=80",
    ]);
    let d = with_managed_fields(&s, &["deployment", "made"]);
    let e = entry(&d, "kubectl-create", "Update").expect("kubectl-create");
    let f = &e["fieldsV1"];
    assert_eq!(f["f:metadata"], json!({"f:labels": {".": {}, "f:app": {}}}));
    assert_eq!(
        f["f:spec"]["f:strategy"],
        json!({"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}})
    );
    let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert!(c.get(".").is_none(), "{c}");
    assert_eq!(
        c["k:{\"name\":\"nginx\"}"].get("."),
        Some(&json!({})),
        "{c}"
    );
    let hpa = with_managed_fields(&s, &["hpa", "made"]);
    let e = entry(&hpa, "kubectl-autoscale", "Update").expect("kubectl-autoscale");
    assert_eq!(e["apiVersion"], "autoscaling/v1");
    // What upstream's field manager sees is the defaulted object before admission and the
    // kind's preparation: no priority, service account or tolerations for a pod, no IP
    // families for a service.
    s.ok(&["run", "p1", "--image=nginx"]);
    let e = entry(
        &with_managed_fields(&s, &["pod", "p1"]),
        "kubectl-run",
        "Update",
    )
    .expect("kubectl-run");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {".": {}, "f:run": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"p1\"}": {
                    ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                    "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}
                }},
                "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}
            }
        })
    );
    let svc = examples_dir().join("service.yaml");
    s.ok(&["apply", "-f", svc.to_str().expect("path")]);
    let e = entry(
        &with_managed_fields(&s, &["service", "my-service"]),
        "kubectl-client-side-apply",
        "Update",
    )
    .expect("csa");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
            "f:spec": {
                "f:internalTrafficPolicy": {},
                "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}
            }
        })
    );
    // A client that names no manager is recorded under its User-Agent's product.
    let body = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "curl-made"}, "data": {"a": "b"}})).expect("json");
    let (code, created) = http(
        &s,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&body),
        "application/json",
        true,
    );
    assert_eq!(code, 201, "{created}");
    let e = entry(
        &with_managed_fields(&s, &["configmap", "curl-made"]),
        "curl",
        "Update",
    )
    .expect("curl");
    assert_eq!(e["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
}

#[test]
fn python_create_from_yaml_creates_every_document() {
    let s = Server::start(BIN);
    // Tests run in the package folder (cargo and nextest); see capstan_testkit::examples_dir.
    let dir = Path::new("tests/python").to_path_buf();
    let out = Command::new("python3")
        .arg(dir.join("create_from_yaml.py"))
        .arg(s.kubeconfig())
        .arg(dir.join("multi.yaml"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "create_from_yaml failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
        stdout(&out),
        stderr(&out),
        s.log()
    );
    let d = with_managed_fields(&s, &["deployment", "py-web", "-n", "pyns"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(
        entry(&d, "OpenAPI-Generator", "Update").is_some(),
        "{:?}",
        managers(&d)
    );
    assert_eq!(
        s.get_json(&["configmap", "py-config", "-n", "pyns"])["data"],
        json!({"greeting": "hello"})
    );
    assert_eq!(
        s.get_json(&["service", "py-web", "-n", "pyns"])["spec"]["ports"][0]["port"],
        80
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply_creates_conflicts_and_forces() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};

    let s = Server::start(BIN);
    let cms: Api<ConfigMap> = Api::namespaced(
        capstan_testkit::kube_client(s.kubeconfig()).await,
        "default",
    );
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-kube-rs"}, "data": {"k": v}});

    let created = cms
        .patch(
            "from-kube-rs",
            &PatchParams::apply("controller-a"),
            &Patch::Apply(cm("a")),
        )
        .await
        .expect("apply creates");
    let mf = created.metadata.managed_fields.expect("managedFields");
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("controller-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    match cms
        .patch(
            "from-kube-rs",
            &PatchParams::apply("controller-b"),
            &Patch::Apply(cm("b")),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "Conflict");
            assert_eq!(
                e.message,
                "Apply failed with 1 conflict: conflict with \"controller-a\": .data.k"
            );
        }
        other => panic!("expected a 409 conflict, got {other:?}"),
    }
    let forced = cms
        .patch(
            "from-kube-rs",
            &PatchParams::apply("controller-b").force(),
            &Patch::Apply(cm("b")),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.expect("data")["k"], "b");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .expect("managedFields")
        .into_iter()
        .filter_map(|e| e.manager)
        .collect();
    assert_eq!(
        managers,
        ["controller-b"],
        "controller-a owned nothing left"
    );
}

#[test]
fn scale_patches_and_puts_the_scale_of_every_scalable_kind() {
    let s = Server::start(BIN);
    let manifests = "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs1}
spec:
  replicas: 1
  selector: {matchLabels: {app: rs1}}
  template:
    metadata: {labels: {app: rs1}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts1}
spec:
  replicas: 1
  serviceName: sts1
  selector: {matchLabels: {app: sts1}}
  template:
    metadata: {labels: {app: sts1}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: rc1}
spec:
  replicas: 1
  selector: {app: rc1}
  template:
    metadata: {labels: {app: rc1}}
    spec: {containers: [{name: c, image: nginx}]}
";
    s.ok_stdin(&["apply", "-f", "-"], manifests);
    for (r, path) in [
        (
            "replicaset/rs1",
            "/apis/apps/v1/namespaces/default/replicasets/rs1/scale",
        ),
        (
            "statefulset/sts1",
            "/apis/apps/v1/namespaces/default/statefulsets/sts1/scale",
        ),
        (
            "replicationcontroller/rc1",
            "/api/v1/namespaces/default/replicationcontrollers/rc1/scale",
        ),
    ] {
        s.ok(&["scale", r, "--replicas=3"]);
        s.ok(&["scale", r, "--current-replicas=3", "--replicas=2"]);
        let scale = s.raw(path);
        assert_eq!(scale["kind"], "Scale", "{scale}");
        assert_eq!(scale["apiVersion"], "autoscaling/v1", "{scale}");
        assert_eq!(scale["spec"]["replicas"], 2, "{r}: {scale}");
    }
}
