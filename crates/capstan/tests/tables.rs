//! `kubectl get` prints upstream's columns for every kind served: the server's Table output is
//! what makes the familiar columns appear.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use capstan_testkit::Server;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

fn header(s: &Server, args: &[&str]) -> String {
    let out = s.ok(args);
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_kind_prints_upstream_columns() {
    // The objects are only read back; no controller or scheduler needs to act on them.
    let s = Server::start_with(
        BIN,
        &["--disable-controllers", "all", "--disable-scheduler"],
    );
    let pod_spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    let template = json!({"metadata": {"labels": {"app": "t"}}, "spec": pod_spec});
    let selector = json!({"matchLabels": {"app": "t"}});
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": pod_spec}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "t"}, "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "t"}}),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "t"}, "involvedObject": {"kind": "Pod", "name": "t", "namespace": "default"}, "reason": "R", "message": "m", "type": "Normal"}),
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "t"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/t"}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "t"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "t"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}}),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "t"}, "spec": {"hard": {"pods": "10"}}}),
        json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "t"}, "spec": {"selector": {"app": "t"}, "template": template}}),
        json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "t"}, "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "t"}, "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "t"}, "spec": {"selector": selector, "template": template, "serviceName": "t"}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "t"}, "spec": {"selector": selector, "template": template}}),
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "t"}, "data": {}, "revision": 1}),
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}),
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "t"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}}}}}),
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "t"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "t"}, "maxReplicas": 3}}),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "t"}, "spec": {"holderIdentity": "me"}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "t"}, "addressType": "IPv4", "endpoints": []}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "t"}, "spec": {"controller": "example.com/t"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "t"}, "spec": {"defaultBackend": {"service": {"name": "t", "port": {"number": 80}}}}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "t"}, "spec": {"podSelector": {}}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "t"}, "spec": {"minAvailable": 1, "selector": selector}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "t"}, "rules": []}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "t"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "t"}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "t"}, "rules": []}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "t"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "t"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "t"}, "provisioner": "example.com/t"}),
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}),
    ];
    // A stream of JSON documents (a `kind: List` file is covered by the OpenAPI v2 test).
    let stream: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
    s.ok_stdin(&["create", "-f", "-"], &stream.join("\n"));

    for (resource, name, columns) in [
        ("pods", "t", "NAME READY STATUS RESTARTS AGE"),
        ("services", "t", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"),
        ("endpoints", "t", "NAME ENDPOINTS AGE"),
        ("configmaps", "t", "NAME DATA AGE"),
        ("secrets", "t", "NAME TYPE DATA AGE"),
        ("serviceaccounts", "t", "NAME SECRETS AGE"),
        ("namespaces", "t", "NAME STATUS AGE"),
        ("nodes", "t", "NAME STATUS ROLES AGE VERSION"),
        ("events", "t", "LAST SEEN TYPE REASON OBJECT MESSAGE"),
        ("persistentvolumes", "t", "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE"),
        ("persistentvolumeclaims", "t", "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE"),
        ("limitranges", "t", "NAME CREATED AT"),
        ("resourcequotas", "t", "NAME AGE REQUEST LIMIT"),
        ("replicationcontrollers", "t", "NAME DESIRED CURRENT READY AGE"),
        ("podtemplates", "t", "NAME CONTAINERS IMAGES POD LABELS"),
        ("deployments", "t", "NAME READY UP-TO-DATE AVAILABLE AGE"),
        ("replicasets", "t", "NAME DESIRED CURRENT READY AGE"),
        ("statefulsets", "t", "NAME READY AGE"),
        ("daemonsets", "t", "NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE"),
        ("controllerrevisions", "t", "NAME CONTROLLER REVISION AGE"),
        ("jobs", "t", "NAME STATUS COMPLETIONS DURATION AGE"),
        ("cronjobs", "t", "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE"),
        ("horizontalpodautoscalers", "t", "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"),
        ("leases", "t", "NAME HOLDER AGE"),
        ("endpointslices", "t", "NAME ADDRESSTYPE PORTS ENDPOINTS AGE"),
        ("ingressclasses", "t", "NAME CONTROLLER PARAMETERS AGE"),
        ("ingresses", "t", "NAME CLASS HOSTS ADDRESS PORTS AGE"),
        ("networkpolicies", "t", "NAME POD-SELECTOR AGE"),
        ("poddisruptionbudgets", "t", "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE"),
        ("roles", "t", "NAME CREATED AT"),
        ("rolebindings", "t", "NAME ROLE AGE"),
        ("clusterroles", "t", "NAME CREATED AT"),
        ("clusterrolebindings", "t", "NAME ROLE AGE"),
        ("storageclasses", "t", "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE"),
        ("customresourcedefinitions", "widgets.example.com", "NAME CREATED AT"),
    ] {
        assert_eq!(header(&s, &["get", resource, name]), columns, "columns of {resource}");
    }
    // -o wide adds upstream's priority-1 columns.
    assert_eq!(
        header(&s, &["get", "deployments", "t", "-o", "wide"]),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
    );
    assert_eq!(
        header(&s, &["get", "nodes", "t", "-o", "wide"]),
        "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME"
    );
    assert_eq!(
        header(&s, &["get", "services", "t", "-o", "wide"]),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"
    );
    // Every kind at once across namespaces, as `kubectl get all -A` does for its category.
    let all = s.ok(&["get", "all", "-A"]);
    for want in [
        "pod/t",
        "service/t",
        "deployment.apps/t",
        "replicaset.apps/t",
        "statefulset.apps/t",
        "daemonset.apps/t",
        "job.batch/t",
        "cronjob.batch/t",
        "replicationcontroller/t",
        "horizontalpodautoscaler.autoscaling/t",
    ] {
        assert!(all.contains(want), "get all lacks {want}:\n{all}");
    }
}

#[test]
fn a_json_patch_that_replaces_the_whole_object_is_refused_not_fatal() {
    let s = Server::start(BIN);
    s.ok(&["create", "configmap", "p"]);
    let err = s.fails(&[
        "patch",
        "configmap",
        "p",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"","value":[1,2]}]"#,
    ]);
    assert!(
        err.contains("must be a JSON object")
            || err.contains("BadRequest")
            || err.contains("Invalid"),
        "{err}"
    );
    s.ok(&["get", "configmap", "p"]);
}
