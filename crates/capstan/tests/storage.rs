//! Storage for workloads on real containerd, driven with the real kubectl: the built-in
//! local-path provisioner (default class, WaitForFirstConsumer, a directory under the data
//! dir, node affinity, reclaim Delete), pods writing to and reading from their claim across
//! pod restarts, the protection finalizer, expansion; static volumes bound by matching with
//! Retain; claims of missing classes and pods of unbindable claims waiting with upstream's
//! messages; ephemeral volumes; a joined agent making volumes in its own data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is the test failing

use std::path::PathBuf;
use std::time::Duration;

use capstan_testkit::agent::BUSYBOX;
use capstan_testkit::{eventually, Server};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");
const WAIT: Duration = Duration::from_secs(90);

fn claim(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n{extra_spec}"
    )
}

/// A busybox pod (placed by the scheduler) running `script` with claim `claim` at /data.
fn pod_with_claim(name: &str, claim: &str, script: &str, restart: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, '{script}']\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    persistentVolumeClaim:\n      claimName: {claim}\n"
    )
}

/// The messages of the events about `kind/name`.
fn events(s: &Server, kind: &str, name: &str) -> String {
    s.jsonpath(
        &[
            "events",
            "--field-selector",
            &format!("involvedObject.kind={kind},involvedObject.name={name}"),
        ],
        "{range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    )
}

fn wait_phase(s: &Server, what: &[&str], phase: &str) {
    eventually(WAIT, &format!("{what:?} {phase}"), || {
        (s.jsonpath(what, "{.status.phase}") == phase).then_some(())
    });
}

#[test]
fn local_path_claims_are_provisioned_on_the_consumers_node_keep_data_and_are_deleted_with_the_claim(
) {
    let s = Server::start_with_agent(BIN, &[]);
    let node = s.node_name();

    // The built-in default class, as k3s's.
    let sc = s.get_json(&["storageclass", "local-path"]);
    assert_eq!(sc["provisioner"], "rancher.io/local-path");
    assert_eq!(sc["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(
        sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );

    // A claim without a class gets the default one and waits for its first consumer.
    s.apply(&claim("data", ""));
    let pvc = s.get_json(&["pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert_eq!(
        pvc["metadata"]["finalizers"][0],
        "kubernetes.io/pvc-protection"
    );
    eventually(WAIT, "the WaitForFirstConsumer event", || {
        events(&s, "PersistentVolumeClaim", "data")
            .contains(
                "WaitForFirstConsumer: waiting for first consumer to be created before binding",
            )
            .then_some(())
    });
    assert_eq!(s.jsonpath(&["pvc", "data"], "{.status.phase}"), "Pending");

    // A pod writes to it: the claim is bound once the pod is scheduled.
    let started = std::time::Instant::now();
    s.apply(&pod_with_claim(
        "writer",
        "data",
        "echo hello > /data/file",
        "Never",
    ));
    wait_phase(&s, &["pod", "writer"], "Succeeded");
    eprintln!(
        "writer pod created to Succeeded, its claim provisioned and bound on the way: {:?}",
        started.elapsed()
    );
    wait_phase(&s, &["pvc", "data"], "Bound");
    // The scheduler bound the pod only once its claim was bound: it never waited to mount.
    let pod_events = events(&s, "Pod", "writer");
    assert!(!pod_events.contains("FailedMount"), "{pod_events}");
    let pvc = s.get_json(&["pvc", "data"]);
    assert_eq!(
        pvc["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    assert_eq!(pvc["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(pvc["status"]["accessModes"][0], "ReadWriteOnce");
    let pv_name = pvc["spec"]["volumeName"]
        .as_str()
        .expect("volumeName")
        .to_string();
    let uid = pvc["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(pv_name, format!("pvc-{uid}"));
    let pv = s.get_json(&["pv", &pv_name]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"][0],
        node.as_str()
    );
    let dir = s
        .data_dir()
        .join("storage")
        .join(format!("{pv_name}_default_data"));
    assert_eq!(
        pv["spec"]["hostPath"]["path"].as_str().map(PathBuf::from),
        Some(dir.clone())
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("file")).expect("the file the pod wrote"),
        "hello\n"
    );

    // Another pod finds the data; while it runs, deleting the claim only marks it.
    s.ok(&["delete", "pod", "writer"]);
    s.apply(&pod_with_claim(
        "reader",
        "data",
        "test \"$(cat /data/file)\" = hello && exec sleep 3600",
        "Never",
    ));
    wait_phase(&s, &["pod", "reader"], "Running");

    // Growing a claim of a class without allowVolumeExpansion is refused, as is shrinking.
    let refused = s.fails(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(
        refused.contains("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"),
        "{refused}"
    );
    let shrink = s.fails(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"500Mi"}}}}"#,
    ]);
    assert!(
        shrink.contains("field can not be less than previous value"),
        "{shrink}"
    );
    // Once the class allows it, the claim grows (local-path records the new size).
    s.ok(&[
        "patch",
        "storageclass",
        "local-path",
        "-p",
        r#"{"allowVolumeExpansion":true}"#,
    ]);
    s.ok(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    eventually(WAIT, "the claim's capacity to follow the request", || {
        (s.jsonpath(&["pvc", "data"], "{.status.capacity.storage}") == "2Gi").then_some(())
    });
    assert_eq!(
        s.jsonpath(&["pv", &pv_name], "{.spec.capacity.storage}"),
        "2Gi"
    );

    s.ok(&["delete", "pvc", "data", "--wait=false"]);
    let pvc = s.get_json(&["pvc", "data"]);
    assert!(pvc["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        pvc["metadata"]["finalizers"][0],
        "kubernetes.io/pvc-protection"
    );
    assert!(s.ok(&["get", "pvc", "data"]).contains("Terminating"));

    // Once the pod is gone, the claim goes, then its volume and the directory (Delete).
    s.ok(&["delete", "pod", "reader", "--wait=true"]);
    eventually(WAIT, "the claim to be gone", || {
        (!s.kubectl(&["get", "pvc", "data"]).status.success()).then_some(())
    });
    eventually(WAIT, "the volume to be gone", || {
        (!s.kubectl(&["get", "pv", &pv_name]).status.success()).then_some(())
    });
    eventually(WAIT, "the directory to be gone", || {
        (!dir.exists()).then_some(())
    });

    // An ephemeral volume: its claim is made for the pod, owned by it, and goes with it.
    s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: scratch\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo tmp > /cache/file && exec sleep 3600']\n    volumeMounts:\n    - name: cache\n      mountPath: /cache\n  volumes:\n  - name: cache\n    ephemeral:\n      volumeClaimTemplate:\n        spec:\n          accessModes: [ReadWriteOnce]\n          resources:\n            requests:\n              storage: 1Gi\n"
    ));
    wait_phase(&s, &["pod", "scratch"], "Running");
    let scratch = s.get_json(&["pvc", "scratch-cache"]);
    assert_eq!(scratch["status"]["phase"], "Bound");
    assert_eq!(scratch["spec"]["storageClassName"], "local-path");
    assert_eq!(scratch["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(scratch["metadata"]["ownerReferences"][0]["name"], "scratch");
    let scratch_pv = scratch["spec"]["volumeName"]
        .as_str()
        .expect("volume")
        .to_string();
    let scratch_dir = s
        .data_dir()
        .join("storage")
        .join(format!("{scratch_pv}_default_scratch-cache"));
    eventually(WAIT, "the pod's file in its ephemeral volume", || {
        (std::fs::read_to_string(scratch_dir.join("file")).ok()? == "tmp\n").then_some(())
    });
    s.ok(&["delete", "pod", "scratch", "--wait=true"]);
    eventually(
        WAIT,
        "the ephemeral claim, its volume and directory to be gone",
        || {
            (!s.kubectl(&["get", "pvc", "scratch-cache"]).status.success()
                && !s.kubectl(&["get", "pv", &scratch_pv]).status.success()
                && !scratch_dir.exists())
            .then_some(())
        },
    );

    // A pod placed by hand on an unbound claim waits in ContainerCreating, saying why...
    s.apply(&claim("later", "  storageClassName: \"\"\n"));
    let manifest = pod_with_claim(
        "pinned",
        "later",
        "test \"$(cat /data/seed)\" = seed && ! touch /data/new && exec sleep 3600",
        "Never",
    )
    .replace("spec:\n", &format!("spec:\n  nodeName: {node}\n"))
    .replace("claimName: later", "claimName: later\n      readOnly: true");
    s.apply(&manifest);
    eventually(WAIT, "the FailedMount event", || {
        events(&s, "Pod", "pinned")
            .contains("FailedMount: Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data], failed to process volumes=[data]: error processing PVC default/later: PVC is not bound")
            .then_some(())
    });
    eventually(WAIT, "the pod to wait in ContainerCreating", || {
        (s.jsonpath(
            &["pod", "pinned"],
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ContainerCreating")
            .then_some(())
    });
    // ...until a static hostPath volume binds it; the pod then sees its files, read-only.
    let static_dir = s.data_dir().join("static-ro");
    std::fs::create_dir_all(&static_dir).expect("static dir");
    std::fs::write(static_dir.join("seed"), "seed").expect("seed file");
    s.apply(&format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: static-ro\nspec:\n  storageClassName: \"\"\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: {}\n",
        static_dir.display()
    ));
    wait_phase(&s, &["pvc", "later"], "Bound");
    wait_phase(&s, &["pod", "pinned"], "Running");
    assert!(!static_dir.join("new").exists());
}

#[test]
fn static_volumes_bind_by_matching_and_unbindable_claims_say_why() {
    let s = Server::start_with(BIN, &["--simulate-nodes", "1"]);

    // Two static volumes: the smallest that fits is chosen; Retain keeps it after the claim.
    for (name, size) in [("big", "10Gi"), ("fits", "2Gi")] {
        s.apply(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\nspec:\n  storageClassName: manual\n  capacity:\n    storage: {size}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: /tmp/capstan-static-{name}\n"
        ));
    }
    assert_eq!(
        s.jsonpath(&["pv", "fits"], "{.metadata.finalizers[0]}"),
        "kubernetes.io/pv-protection"
    );
    wait_phase(&s, &["pv", "fits"], "Available");
    s.apply(&claim("static", "  storageClassName: manual\n"));
    wait_phase(&s, &["pvc", "static"], "Bound");
    assert_eq!(s.jsonpath(&["pvc", "static"], "{.spec.volumeName}"), "fits");
    assert_eq!(
        s.jsonpath(&["pvc", "static"], "{.status.capacity.storage}"),
        "2Gi"
    );
    wait_phase(&s, &["pv", "fits"], "Bound");
    assert_eq!(s.jsonpath(&["pv", "big"], "{.status.phase}"), "Available");
    let row = s.ok(&["get", "pvc", "static"]);
    assert!(
        row.contains("Bound") && row.contains("fits") && row.contains("2Gi"),
        "{row}"
    );
    s.ok(&["delete", "pvc", "static", "--wait=true"]);
    wait_phase(&s, &["pv", "fits"], "Released");
    assert_eq!(
        s.jsonpath(&["pv", "fits"], "{.spec.claimRef.name}"),
        "static"
    );

    // A bound volume is protected: deleting it waits while its claim holds it; forcing it
    // away leaves the claim Lost.
    s.apply(&claim("keeper", "  storageClassName: manual\n"));
    wait_phase(&s, &["pvc", "keeper"], "Bound");
    assert_eq!(s.jsonpath(&["pvc", "keeper"], "{.spec.volumeName}"), "big");
    s.ok(&["delete", "pv", "big", "--wait=false"]);
    assert!(s.ok(&["get", "pv", "big"]).contains("Terminating"));
    assert_eq!(
        s.jsonpath(&["pv", "big"], "{.metadata.finalizers[0]}"),
        "kubernetes.io/pv-protection"
    );
    s.ok(&[
        "patch",
        "pv",
        "big",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    wait_phase(&s, &["pvc", "keeper"], "Lost");
    eventually(WAIT, "the ClaimLost event", || {
        events(&s, "PersistentVolumeClaim", "keeper")
            .contains(
                "ClaimLost: Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .then_some(())
    });

    // Delete of a volume no provisioner made cannot be carried out: the volume is Failed.
    s.apply("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: doomed\nspec:\n  storageClassName: once\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Delete\n  hostPath:\n    path: /tmp/capstan-static-doomed\n");
    s.apply(&claim("brief", "  storageClassName: once\n"));
    wait_phase(&s, &["pvc", "brief"], "Bound");
    s.ok(&["delete", "pvc", "brief", "--wait=true"]);
    wait_phase(&s, &["pv", "doomed"], "Failed");
    eventually(WAIT, "the VolumeFailedDelete event", || {
        events(&s, "PersistentVolume", "doomed")
            .contains("VolumeFailedDelete: error getting deleter volume plugin for volume \"doomed\": no deletable volume plugin matched")
            .then_some(())
    });

    // A claim made while no class was the default gets the default once there is one.
    s.ok(&[
        "annotate",
        "storageclass",
        "local-path",
        "--overwrite",
        "storageclass.kubernetes.io/is-default-class=false",
    ]);
    s.apply(&claim("early", ""));
    assert_eq!(
        s.jsonpath(&["pvc", "early"], "{.spec.storageClassName}"),
        ""
    );
    s.ok(&[
        "annotate",
        "storageclass",
        "local-path",
        "--overwrite",
        "storageclass.kubernetes.io/is-default-class=true",
    ]);
    eventually(WAIT, "the default class to be assigned", || {
        (s.jsonpath(&["pvc", "early"], "{.spec.storageClassName}") == "local-path").then_some(())
    });

    // A claim naming a class that does not exist waits, saying so.
    s.apply(&claim("nowhere", "  storageClassName: nope\n"));
    eventually(WAIT, "the ProvisioningFailed event", || {
        events(&s, "PersistentVolumeClaim", "nowhere")
            .contains("ProvisioningFailed: storageclass.storage.k8s.io \"nope\" not found")
            .then_some(())
    });
    assert_eq!(
        s.jsonpath(&["pvc", "nowhere"], "{.status.phase}"),
        "Pending"
    );

    // A claim with no class and no volume for it: FailedBinding; its pod is not scheduled.
    s.apply(&claim(
        "nothing",
        "  storageClassName: \"\"\n  selector:\n    matchLabels:\n      none: here\n",
    ));
    eventually(WAIT, "the FailedBinding event", || {
        events(&s, "PersistentVolumeClaim", "nothing")
            .contains("FailedBinding: no persistent volumes available for this claim and no storage class is set")
            .then_some(())
    });
    s.apply(&pod_with_claim("stuck", "nothing", "true", "Never"));
    let message = eventually(WAIT, "the scheduler's message", || {
        let m = s.jsonpath(
            &["pod", "stuck"],
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        (!m.is_empty()).then_some(m)
    });
    assert_eq!(
        message,
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.."
    );
    assert_eq!(s.jsonpath(&["pod", "stuck"], "{.status.phase}"), "Pending");

    // A pod naming a claim that does not exist.
    s.apply(&pod_with_claim("orphan", "missing", "true", "Never"));
    let message = eventually(WAIT, "the scheduler's message", || {
        let m = s.jsonpath(
            &["pod", "orphan"],
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        );
        (!m.is_empty()).then_some(m)
    });
    assert!(
        message
            .starts_with("0/1 nodes are available: persistentvolumeclaim \"missing\" not found."),
        "{message}"
    );
}

#[test]
fn a_joined_agent_provisions_local_path_volumes_in_its_own_data_dir() {
    let c = capstan_testkit::cluster::Cluster::start(BIN);
    let names = c.node_names();
    let far = names[1].clone();

    // The claim's first pod is pinned to the second agent: the volume is made there.
    c.apply(&claim("far", ""));
    let manifest = pod_with_claim("far-writer", "far", "echo far > /data/file", "Never").replace(
        "spec:\n",
        &format!("spec:\n  nodeSelector:\n    kubernetes.io/hostname: {far}\n"),
    );
    c.apply(&manifest);
    wait_phase(&c, &["pod", "far-writer"], "Succeeded");
    wait_phase(&c, &["pvc", "far"], "Bound");
    let pv = c.jsonpath(&["pvc", "far"], "{.spec.volumeName}");
    let dir = c
        .node(&far)
        .data_dir()
        .join("storage")
        .join(format!("{pv}_default_far"));
    assert_eq!(
        std::fs::read_to_string(dir.join("file")).expect("the file on the far node"),
        "far\n"
    );
    assert_eq!(
        c.jsonpath(
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        far
    );
    for other in names.iter().filter(|n| **n != far) {
        assert!(!c
            .node(other)
            .data_dir()
            .join("storage")
            .join(format!("{pv}_default_far"))
            .exists());
    }

    // Deleting the claim deletes the directory on that node, then the volume.
    c.ok(&["delete", "pod", "far-writer"]);
    c.ok(&["delete", "pvc", "far", "--wait=true"]);
    eventually(WAIT, "the far directory to be gone", || {
        (!dir.exists()).then_some(())
    });
    eventually(WAIT, "the volume to be gone", || {
        (!c.kubectl(&["get", "pv", &pv]).status.success()).then_some(())
    });
}
