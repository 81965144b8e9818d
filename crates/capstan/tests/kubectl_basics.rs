//! The everyday kubectl commands against a real server: version, discovery, create, get in
//! every output form, label, annotate, replace, delete, and the user's example manifests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::time::Duration;

use capstan_testkit::{eventually, examples_dir, write_file, Server};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

#[test]
fn version_reports_kubernetes_1_32() {
    let s = Server::start(BIN);
    let v = s.raw("/version");
    assert_eq!(v["major"], "1");
    assert_eq!(v["minor"], "32");
    let out = s.ok(&["version"]);
    assert!(out.contains("Server Version: v1.32"), "{out}");
}

#[test]
fn api_resources_lists_every_kind_with_short_names() {
    let s = Server::start(BIN);
    let out = s.ok(&["api-resources", "--no-headers"]);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let find = |name: &str, version: &str| {
        rows.iter()
            .find(|r| r[0] == name && r.contains(&version))
            .unwrap_or_else(|| panic!("{name} {version} missing from api-resources:\n{out}"))
    };
    for (name, short, version) in [
        ("pods", "po", "v1"),
        ("services", "svc", "v1"),
        ("configmaps", "cm", "v1"),
        ("namespaces", "ns", "v1"),
        ("nodes", "no", "v1"),
        ("events", "ev", "v1"),
        ("serviceaccounts", "sa", "v1"),
        ("persistentvolumes", "pv", "v1"),
        ("persistentvolumeclaims", "pvc", "v1"),
        ("limitranges", "limits", "v1"),
        ("resourcequotas", "quota", "v1"),
        ("replicationcontrollers", "rc", "v1"),
        ("endpoints", "ep", "v1"),
        ("deployments", "deploy", "apps/v1"),
        ("replicasets", "rs", "apps/v1"),
        ("statefulsets", "sts", "apps/v1"),
        ("daemonsets", "ds", "apps/v1"),
        ("cronjobs", "cj", "batch/v1"),
        ("horizontalpodautoscalers", "hpa", "autoscaling/v2"),
        ("ingresses", "ing", "networking.k8s.io/v1"),
        ("networkpolicies", "netpol", "networking.k8s.io/v1"),
        ("poddisruptionbudgets", "pdb", "policy/v1"),
        ("storageclasses", "sc", "storage.k8s.io/v1"),
        (
            "customresourcedefinitions",
            "crd,crds",
            "apiextensions.k8s.io/v1",
        ),
    ] {
        let r = find(name, version);
        assert_eq!(r[1], short, "short names of {name}");
    }
    for (name, version) in [
        ("secrets", "v1"),
        ("controllerrevisions", "apps/v1"),
        ("jobs", "batch/v1"),
        ("leases", "coordination.k8s.io/v1"),
        ("endpointslices", "discovery.k8s.io/v1"),
        ("ingressclasses", "networking.k8s.io/v1"),
        ("roles", "rbac.authorization.k8s.io/v1"),
        ("rolebindings", "rbac.authorization.k8s.io/v1"),
        ("clusterroles", "rbac.authorization.k8s.io/v1"),
        ("clusterrolebindings", "rbac.authorization.k8s.io/v1"),
        ("podtemplates", "v1"),
    ] {
        find(name, version);
    }
    let versions = s.ok(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "autoscaling/v1",
        "autoscaling/v2",
        "batch/v1",
        "events.k8s.io/v1",
        "policy/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing from api-versions:\n{versions}"
        );
    }
    // The `all` category is what `kubectl get all` expands.
    let all = s.ok(&["get", "all", "-A"]);
    assert!(all.contains("service/kubernetes"), "{all}");
}

#[test]
fn default_namespaces_exist_from_the_start() {
    let s = Server::start(BIN);
    let out = s.ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(&format!("namespace/{ns}")), "{out}");
    }
    let svc = s.get_json(&["service", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
}

fn strip_server_fields(mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(
                f == "managedFields" || m.contains_key(f),
                "server must set metadata.{f}: {m:?}"
            );
            m.remove(f);
        }
    }
    v
}

#[test]
fn example_manifests_read_back_with_upstream_defaults() {
    // What the API server stores, before any controller acts on it.
    let s = Server::start_with(
        BIN,
        &["--disable-controllers", "all", "--disable-scheduler"],
    );
    let ex = examples_dir();
    for f in [
        "deployment.yaml",
        "service.yaml",
        "pod.yaml",
        "ingress.yaml",
    ] {
        s.ok(&["create", "-f", ex.join(f).to_str().expect("path")]);
    }
    let d = strip_server_fields(s.get_json(&["deployment", "my-deployment"]));
    assert_eq!(
        d,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"generation": 1, "name": "my-deployment", "namespace": "default"},
            "spec": {
                "progressDeadlineSeconds": 600, "replicas": 3, "revisionHistoryLimit": 10,
                "selector": {"matchLabels": {"app": "my-app"}},
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": "my-app"}},
                    "spec": {
                        "containers": [{"image": "nginx", "imagePullPolicy": "Always", "name": "my-container", "resources": {},
                                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                        "securityContext": {}, "terminationGracePeriodSeconds": 30
                    }
                }
            },
            "status": {}
        })
    );
    let svc = strip_server_fields(s.get_json(&["service", "my-service"]));
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_eq!(
        svc,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "my-service", "namespace": "default"},
            "spec": {
                "clusterIP": ip, "clusterIPs": [ip], "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "selector": {"app": "my-app"}, "sessionAffinity": "None", "type": "ClusterIP"
            },
            "status": {"loadBalancer": {}}
        })
    );
    let pod = strip_server_fields(s.get_json(&["pod", "my-pod"]));
    assert_eq!(
        pod["spec"]["containers"][0],
        json!({"image": "nginx", "imagePullPolicy": "Always", "name": "my-container", "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"})
    );
    for (k, v) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("enableServiceLinks", json!(true)),
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("serviceAccountName", json!("default")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("priority", json!(0)),
    ] {
        assert_eq!(pod["spec"][k], v, "pod spec.{k}");
    }
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let ing = strip_server_fields(s.get_json(&["ingress", "my-ingress"]));
    assert_eq!(ing["spec"]["rules"][0]["host"], "myapp.example.com");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"],
        "Prefix"
    );
    assert_eq!(ing["status"], json!({"loadBalancer": {}}));
    assert_eq!(ing["metadata"]["generation"], 1);
}

#[test]
fn get_prints_upstream_columns_in_every_output_form() {
    let s = Server::start(BIN);
    let ex = examples_dir();
    s.ok(&[
        "create",
        "-f",
        ex.join("deployment.yaml").to_str().expect("p"),
    ]);
    s.ok(&["create", "-f", ex.join("service.yaml").to_str().expect("p")]);
    s.ok(&["create", "-f", ex.join("pod.yaml").to_str().expect("p")]);

    let out = s.ok(&["get", "pods"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert!(
        out.contains("my-pod") && out.contains("0/1") && out.contains("Pending"),
        "{out}"
    );

    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().expect("header");
    for col in ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] {
        assert!(header.contains(col), "{wide}");
    }

    let out = s.ok(&["get", "deployments"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .expect("header")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(out.contains("0/3"), "{out}");

    let out = s.ok(&["get", "svc", "my-service"]);
    assert!(
        out.lines()
            .next()
            .expect("h")
            .split_whitespace()
            .collect::<Vec<_>>()
            == [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ],
        "{out}"
    );
    assert!(
        out.contains("80/TCP") && out.contains("ClusterIP") && out.contains("<none>"),
        "{out}"
    );

    let out = s.ok(&["get", "ns", "default"]);
    assert!(out.contains("STATUS") && out.contains("Active"), "{out}");

    let name = s.ok(&["get", "deploy", "-o", "name"]);
    assert_eq!(name.trim(), "deployment.apps/my-deployment");
    let jp = s.ok(&[
        "get",
        "deploy",
        "my-deployment",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(jp, "3");
    let yaml = s.ok(&["get", "deploy", "my-deployment", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("maxSurge: 25%"),
        "{yaml}"
    );

    // -A shows the NAMESPACE column, filled from each row's object metadata.
    let all = s.ok(&["get", "svc", "-A"]);
    assert!(
        all.lines().next().expect("h").starts_with("NAMESPACE"),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("default") && l.contains("kubernetes")),
        "{all}"
    );
}

#[test]
fn selectors_and_sorting_filter_lists() {
    let s = Server::start(BIN);
    for (name, tier, size) in [("a", "web", "3"), ("b", "db", "1"), ("c", "web", "2")] {
        s.ok(&[
            "create",
            "configmap",
            name,
            &format!("--from-literal=size={size}"),
        ]);
        s.ok(&["label", "configmap", name, &format!("tier={tier}")]);
    }
    let web = s.ok(&["get", "cm", "-l", "tier=web", "-o", "name"]);
    assert_eq!(
        web.lines().collect::<Vec<_>>(),
        ["configmap/a", "configmap/c"]
    );
    let notweb = s.ok(&["get", "cm", "-l", "tier notin (web),tier", "-o", "name"]);
    assert_eq!(notweb.trim(), "configmap/b");
    let byname = s.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=c",
        "-o",
        "name",
    ]);
    assert_eq!(byname.trim(), "configmap/c");
    let neg = s.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name!=c,metadata.namespace=default",
        "-l",
        "tier",
        "-o",
        "name",
    ]);
    assert_eq!(neg.lines().count(), 2, "{neg}");
    let sorted = s.ok(&[
        "get",
        "cm",
        "-l",
        "tier",
        "--sort-by",
        ".data.size",
        "-o",
        "name",
    ]);
    assert_eq!(
        sorted.lines().collect::<Vec<_>>(),
        ["configmap/b", "configmap/c", "configmap/a"]
    );
    let err = s.fails(&["get", "cm", "--field-selector", "spec.nothing=1"]);
    assert!(
        err.contains("field label not supported: spec.nothing"),
        "{err}"
    );
    let err = s.fails(&["get", "cm", "-l", "a in b"]);
    assert!(
        err.contains("BadRequest") || err.contains("unable to parse"),
        "{err}"
    );
}

#[test]
fn pod_field_selectors_follow_upstream_fields() {
    let s = Server::start(BIN);
    let manifest = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"placed"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]}}"#;
    s.ok_stdin(&["create", "-f", "-"], manifest);
    s.ok(&["run", "floating", "--image=busybox"]);
    let on_n1 = s.ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=n1",
        "-o",
        "name",
    ]);
    assert_eq!(on_n1.trim(), "pod/placed");
    let pending = s.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending,spec.nodeName!=n1",
        "-o",
        "name",
    ]);
    assert_eq!(pending.trim(), "pod/floating");
}

#[test]
fn label_annotate_replace_and_delete_work() {
    let s = Server::start(BIN);
    s.ok(&["create", "configmap", "cfg", "--from-literal=k=v"]);
    s.ok(&["label", "cm", "cfg", "env=prod", "team=a"]);
    s.ok(&["annotate", "cm", "cfg", "note=hello"]);
    let cm = s.get_json(&["cm", "cfg"]);
    assert_eq!(
        cm["metadata"]["labels"],
        json!({"env": "prod", "team": "a"})
    );
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello");
    s.ok(&["label", "cm", "cfg", "team-"]);
    s.ok(&["annotate", "cm", "cfg", "note-"]);
    let cm = s.get_json(&["cm", "cfg"]);
    assert_eq!(cm["metadata"]["labels"], json!({"env": "prod"}));
    assert!(cm["metadata"]
        .get("annotations")
        .is_none_or(|a| a.get("note").is_none()));

    let mut edited = cm.clone();
    edited["data"]["k"] = json!("changed");
    let dir = tempfile::tempdir().expect("tmp");
    let f = write_file(dir.path(), "cm.json", &edited.to_string());
    s.ok(&["replace", "-f", f.to_str().expect("p")]);
    assert_eq!(s.get_json(&["cm", "cfg"])["data"]["k"], "changed");

    let out = s.ok(&["delete", "cm", "cfg"]);
    assert!(out.contains("configmap \"cfg\" deleted"), "{out}");
    let err = s.fails(&["get", "cm", "cfg"]);
    assert!(
        err.contains("NotFound") && err.contains("configmaps \"cfg\" not found"),
        "{err}"
    );

    for n in ["x1", "x2", "y1"] {
        s.ok(&["create", "cm", n]);
    }
    s.ok(&["label", "cm", "x1", "x2", "group=x"]);
    let out = s.ok(&["delete", "cm", "-l", "group=x"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let left = s.ok(&["get", "cm", "-o", "name"]);
    assert!(
        left.contains("configmap/y1") && !left.contains("x1"),
        "{left}"
    );
}

#[test]
fn get_watch_prints_changes_made_meanwhile() {
    let s = Server::start(BIN);
    s.ok(&["create", "cm", "watched"]);
    let mut child = std::process::Command::new("kubectl")
        .args(["get", "cm", "-w", "--request-timeout=20s"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBECACHEDIR", s.dir.path().join("kubecache"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl -w");
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&["create", "cm", "appeared"]);
    s.ok(&["label", "cm", "watched", "x=y"]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().next().is_some_and(|h| h.starts_with("NAME")),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("NAME")).count(),
        1,
        "header printed once:\n{text}"
    );
    assert!(
        text.contains("appeared"),
        "the create made during the watch is printed:\n{text}"
    );
    assert!(
        text.lines().filter(|l| l.starts_with("watched")).count() >= 2,
        "the label change is printed:\n{text}"
    );
}

#[test]
fn delete_waits_for_finalizers_then_returns() {
    let s = Server::start(BIN);
    let manifest = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"held","finalizers":["example.com/hold"]}}"#;
    s.ok_stdin(&["create", "-f", "-"], manifest);
    let out = s.ok(&["delete", "cm", "held", "--wait=false"]);
    assert!(out.contains("deleted"), "{out}");
    let cm = s.get_json(&["cm", "held"]);
    assert!(
        cm["metadata"]["deletionTimestamp"].is_string(),
        "marked for deletion: {cm}"
    );
    s.ok(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually(Duration::from_secs(5), "the configmap to go", || {
        (!s.kubectl(&["get", "cm", "held"]).status.success()).then_some(())
    });
}

#[test]
fn describe_shows_pods_deployments_and_nodes_with_their_events() {
    let s = Server::start(BIN);
    let ex = examples_dir();
    s.ok(&["create", "-f", ex.join("pod.yaml").to_str().expect("p")]);
    s.ok(&[
        "create",
        "-f",
        ex.join("deployment.yaml").to_str().expect("p"),
    ]);
    let pod = s.get_json(&["pod", "my-pod"]);
    let uid = pod["metadata"]["uid"].as_str().expect("uid");
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "my-pod.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "my-pod", "namespace": "default", "uid": uid, "apiVersion": "v1"},
        "reason": "Scheduled", "message": "Successfully assigned default/my-pod to n1", "type": "Normal",
        "source": {"component": "default-scheduler"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    });
    s.ok_stdin(&["create", "-f", "-"], &event.to_string());
    let out = s.ok(&["describe", "pod", "my-pod"]);
    for want in [
        "Name:",
        "my-pod",
        "Namespace:",
        "default",
        "Containers:",
        "my-container",
        "Image:",
        "nginx",
        "Events:",
        "Scheduled",
        "Successfully assigned default/my-pod to n1",
    ] {
        assert!(out.contains(want), "describe pod lacks {want:?}:\n{out}");
    }
    let out = s.ok(&["describe", "deployment", "my-deployment"]);
    for want in [
        "Replicas:",
        "3 desired",
        "StrategyType:",
        "RollingUpdate",
        "Pod Template:",
        "my-container",
    ] {
        assert!(
            out.contains(want),
            "describe deployment lacks {want:?}:\n{out}"
        );
    }
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
                                   "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "kernelVersion": "6", "containerRuntimeVersion": "containerd://1.6",
                                "architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "", "systemUUID": "", "kubeProxyVersion": ""}}});
    s.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let out = s.ok(&["describe", "node", "n1"]);
    for want in [
        "Name:",
        "n1",
        "Capacity:",
        "Allocatable:",
        "Conditions:",
        "Ready",
        "KubeletReady",
        "Non-terminated Pods:",
    ] {
        assert!(out.contains(want), "describe node lacks {want:?}:\n{out}");
    }
    let nodes = s.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("n1") && nodes.contains("Ready") && nodes.contains("v1.32.0"),
        "{nodes}"
    );
}

#[test]
fn a_terminating_namespace_goes_once_its_finalizer_is_removed() {
    let s = Server::start_with(BIN, &["--disable-controllers", "namespace"]);
    s.ok(&["create", "namespace", "temp"]);
    s.ok(&["delete", "namespace", "temp", "--wait=false"]);
    let ns = s.get_json(&["namespace", "temp"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    // Putting back what was read changes nothing, so nothing is written.
    let (code, body) = capstan_testkit::http(
        &s,
        "PUT",
        "/api/v1/namespaces/temp",
        Some(ns.to_string().as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["metadata"]["resourceVersion"], ns["metadata"]["resourceVersion"],
        "an update that changes nothing writes nothing"
    );
    // An ordinary update cannot drop the finalizer; the finalize subresource can.
    let mut edited = ns.clone();
    edited["spec"]["finalizers"] = json!([]);
    let (code, body) = capstan_testkit::http(
        &s,
        "PUT",
        "/api/v1/namespaces/temp",
        Some(edited.to_string().as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["spec"]["finalizers"], json!(["kubernetes"]));
    edited["metadata"]["resourceVersion"] = body["metadata"]["resourceVersion"].clone();
    let (code, body) = capstan_testkit::http(
        &s,
        "PUT",
        "/api/v1/namespaces/temp/finalize",
        Some(edited.to_string().as_bytes()),
        "application/json",
        true,
    );
    assert_eq!(code, 200, "{body}");
    let err = s.fails(&["get", "namespace", "temp"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_new_deployment_keeps_generation_1_while_its_controller_records_the_revision() {
    let s = Server::start(BIN);
    s.ok(&[
        "create",
        "-f",
        examples_dir().join("deployment.yaml").to_str().expect("p"),
    ]);
    let d = eventually(Duration::from_secs(10), "the revision annotation", || {
        let d = s.get_json(&["deployment", "my-deployment"]);
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .is_string()
            .then_some(d)
    });
    assert_eq!(d["metadata"]["generation"], 1, "{d}");
    // A user's annotation change is a spec-like change for a Deployment: the generation moves.
    s.ok(&["annotate", "deployment", "my-deployment", "team=a"]);
    assert_eq!(
        s.get_json(&["deployment", "my-deployment"])["metadata"]["generation"],
        2
    );
}

#[test]
fn in_process_components_are_named_as_upstream_in_managed_fields() {
    let s = Server::start_with(BIN, &["--simulate-nodes", "1"]);
    s.ok(&[
        "create",
        "-f",
        examples_dir().join("deployment.yaml").to_str().expect("p"),
    ]);
    let managers = |args: &[&str]| -> Vec<String> {
        let mut a = args.to_vec();
        a.push("--show-managed-fields");
        let v = s.get_json(&a);
        let items = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![v.clone()]);
        let mut out: Vec<String> = items
            .iter()
            .flat_map(|o| {
                o["metadata"]["managedFields"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|m| m["manager"].as_str().map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let mut last = (Vec::new(), Vec::new());
    let found = capstan_testkit::poll(Duration::from_secs(20), || {
        let rs = managers(&["rs"]);
        let pods = managers(&["pods"]);
        // Binding bypasses field management upstream, so a bound pod shows no kube-scheduler.
        let ok = rs.contains(&"kube-controller-manager".to_string())
            && pods.contains(&"kube-controller-manager".to_string())
            && pods.contains(&"kubelet".to_string());
        last = (rs, pods);
        ok
    });
    assert!(found, "managers of replica sets and pods: {last:?}");
    assert!(!managers(&["deployment", "my-deployment"]).contains(&"unknown".to_string()));
}
