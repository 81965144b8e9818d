//! Client libraries nobody here wrote: kube-rs and the Python `kubernetes` package list, watch
//! and create against a real server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use std::time::Duration;

use capstan_testkit::{kube_client, Server};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_and_creates() {
    let s = Server::start(BIN);
    let client = kube_client(s.kubeconfig()).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &start)
        .await
        .expect("watch")
        .boxed();

    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("from-kube-rs".into());
    cm.data = Some([("a".to_string(), "b".to_string())].into());
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());

    let ev = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("an event within 10s")
        .expect("no watch error")
        .expect("stream open");
    match ev {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("from-kube-rs")),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // A second create of the same name is a 409 the client understands.
    match cms.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "AlreadyExists");
        }
        other => panic!("expected 409 AlreadyExists, got {other:?}"),
    }

    // kube-runtime's watcher (list then watch, with bookmarks) sees the object too.
    let w = kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default());
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut w = std::pin::pin!(w);
        while let Some(ev) = w.next().await {
            if let Ok(kube::runtime::watcher::Event::InitApply(o)) = ev {
                if o.metadata.name.as_deref() == Some("from-kube-rs") {
                    return true;
                }
            }
        }
        false
    })
    .await
    .expect("watcher within 10s");
    assert!(found);
}

#[test]
fn python_client_lists_watches_and_creates() {
    let s = Server::start(BIN);
    // Tests run in the package folder (cargo and nextest); see capstan_testkit::examples_dir.
    let script = std::path::Path::new("tests/python/client_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(s.kubeconfig())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python client check failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}
