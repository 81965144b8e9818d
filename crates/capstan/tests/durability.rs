//! Acknowledged writes survive restarts and crashes; concurrent updates conflict as upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_testkit::Server;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

#[test]
fn objects_survive_a_restart_with_the_same_credentials() {
    let mut s = Server::start(BIN);
    s.ok(&["create", "namespace", "keep"]);
    s.ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "keep",
        "--from-literal=a=b",
    ]);
    s.ok(&[
        "create",
        "-f",
        capstan_testkit::examples_dir()
            .join("service.yaml")
            .to_str()
            .expect("p"),
    ]);
    let before = s.get_json(&["svc", "my-service"]);
    let kubeconfig_before = std::fs::read_to_string(s.kubeconfig()).expect("kubeconfig");
    s.restart();
    assert_eq!(
        std::fs::read_to_string(s.kubeconfig()).expect("kubeconfig"),
        kubeconfig_before,
        "credentials are reused"
    );
    assert_eq!(s.get_json(&["cm", "c1", "-n", "keep"])["data"]["a"], "b");
    let after = s.get_json(&["svc", "my-service"]);
    assert_eq!(before, after);
    // The allocator remembers the address across the restart: asking for it again is refused.
    let ip = after["spec"]["clusterIP"].as_str().expect("ip").to_string();
    let dup = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"dup"},"spec":{"clusterIP": ip, "ports":[{"port":80}]}});
    let err = s.kubectl_stdin(&["create", "-f", "-"], &dup.to_string());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("provided IP is already allocated"),
        "{stderr}"
    );
}

#[test]
fn every_acknowledged_create_survives_kill_9_during_a_burst() {
    let mut s = Server::start(BIN);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let c = rt.block_on(capstan_testkit::kube_client(s.kubeconfig()));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        let acked = acked.clone();
        tasks.push(rt.spawn(async move {
            for i in 0.. {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(format!("burst-{w}-{i}"));
                cm.data = Some([("i".to_string(), i.to_string())].into());
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => acked.lock().expect("lock").push(format!("burst-{w}-{i}")),
                    Err(_) => break,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    for t in tasks {
        let _ = rt.block_on(t);
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the burst should have created many objects, got {}",
        acked.len()
    );
    s.start_again();
    let c = rt.block_on(capstan_testkit::kube_client(s.kubeconfig()));
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let stored: std::collections::HashSet<String> = rt
        .block_on(api.list(&ListParams::default()))
        .expect("list")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates were lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[test]
fn two_updates_with_the_same_resource_version_conflict() {
    let s = Server::start(BIN);
    s.ok(&["create", "configmap", "shared", "--from-literal=v=0"]);
    let cm = s.get_json(&["cm", "shared"]);
    let dir = tempfile::tempdir().expect("tmp");
    let mut first = cm.clone();
    first["data"]["v"] = json!("1");
    let mut second = cm.clone();
    second["data"]["v"] = json!("2");
    let f1 = capstan_testkit::write_file(dir.path(), "1.json", &first.to_string());
    let f2 = capstan_testkit::write_file(dir.path(), "2.json", &second.to_string());
    s.ok(&["replace", "-f", f1.to_str().expect("p")]);
    let err = s.fails(&["replace", "-f", f2.to_str().expect("p")]);
    assert!(
        err.contains("Operation cannot be fulfilled on configmaps \"shared\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
    assert_eq!(s.get_json(&["cm", "shared"])["data"]["v"], "1");
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut s = Server::start(BIN);
    s.ok(&["create", "configmap", "x"]);
    s.stop();
    assert!(s.log().contains("stopped"), "{}", s.log());
    // The last batch was committed and the WAL folded into the database.
    let wal = s.data_dir().join("server/db/state.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        wal_len,
        0,
        "{} holds {wal_len} bytes after a clean stop",
        wal.display()
    );
}
