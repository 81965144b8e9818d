//! kubectl 1.32's imperative commands send protobuf bodies (`create deployment|namespace|
//! configmap|secret|job|cronjob|service`, `autoscale`): each must succeed against the real
//! server and store the object its JSON twin (`--dry-run=client -o json | kubectl create -f -`)
//! stores.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed step is the test failing

use capstan_testkit::{write_file, Server};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan");

/// Creates `name` with `args` (kubectl sends protobuf) and `name-json` with the JSON kubectl
/// prints for the same command, and returns both stored objects.
fn create_both(s: &Server, resource: &str, name: &str, args: &[&str]) -> (Value, Value) {
    let with_name = |n: &str| -> Vec<String> {
        let mut a: Vec<String> = vec!["create".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.push(n.into());
        a
    };
    let proto_args = with_name(name);
    let proto_args: Vec<&str> = proto_args.iter().map(String::as_str).collect();
    s.ok(&proto_args);

    let json_name = format!("{name}-json");
    let mut dry = with_name(&json_name);
    dry.extend(["--dry-run=client".into(), "-o".into(), "json".into()]);
    let dry: Vec<&str> = dry.iter().map(String::as_str).collect();
    let manifest = s.ok(&dry);
    s.ok_stdin(&["create", "-f", "-"], &manifest);

    (
        s.get_json(&[resource, name]),
        s.get_json(&[resource, &json_name]),
    )
}

/// Asserts two stored objects agree once names and server-assigned fields are set aside.
/// Go writes every non-pointer field in protobuf, so the protobuf twin may carry zero numbers
/// and `false` that the JSON twin omitted (`hostPort: 0`, `stdin: false`); those mean "unset"
/// to the API either way and are the only difference allowed.
fn assert_twins(proto: &Value, json: &Value, name: &str) {
    let rename = |v: &Value| -> Value {
        let text = serde_json::to_string(v).expect("json");
        serde_json::from_str(&text.replace(&format!("{name}-json"), name)).expect("json")
    };
    let mut p = proto.clone();
    let mut j = rename(json);
    for v in [&mut p, &mut j] {
        let meta = v["metadata"].as_object_mut().expect("metadata");
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
        // Status is the controllers' (it names the ReplicaSet by a hash of the template, and
        // the protobuf twin's template carries the extra zeros described above).
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        // The controller's revision annotation is in both or neither, depending on timing.
        if let Some(a) = v["metadata"]
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                v["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("annotations");
            }
        }
        // Allocated per object.
        if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            for port in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(port) = port.as_object_mut() {
                    port.remove("nodePort");
                }
            }
        }
    }
    let mut path = String::new();
    compare(&p, &j, &mut path);
}

fn compare(p: &Value, j: &Value, path: &mut String) {
    match (p, j) {
        (Value::Object(p), Value::Object(j)) => {
            for (k, pv) in p {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                match j.get(k) {
                    Some(jv) => compare(pv, jv, path),
                    None => assert!(
                        pv == &Value::from(0) || pv == &Value::Bool(false),
                        "{path}: protobuf twin has {pv}, JSON twin lacks it"
                    ),
                }
                path.truncate(len);
            }
            for k in j.keys() {
                assert!(
                    p.contains_key(k),
                    "{path}.{k}: only the JSON twin has it: {}",
                    j[k]
                );
            }
        }
        (Value::Array(p), Value::Array(j)) => {
            assert_eq!(p.len(), j.len(), "{path}: lengths differ");
            for (i, (pv, jv)) in p.iter().zip(j).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                compare(pv, jv, path);
                path.truncate(len);
            }
        }
        (p, j) => assert_eq!(p, j, "{path}"),
    }
}

#[test]
fn kubectl_sends_protobuf_for_imperative_create() {
    let s = Server::start(BIN);
    let out = s.kubectl(&["create", "namespace", "x", "-v=8"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}\n{}", s.log());
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl no longer sends protobuf here; this test proves nothing:\n{log}"
    );
    let ns = s.get_json(&["namespace", "x"]);
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["status"]["phase"], "Active");
}

#[test]
fn create_deployment_keeps_zero_replicas_and_the_port() {
    let s = Server::start(BIN);
    let args = ["deployment", "--image=nginx", "--replicas=0", "--port=8080"];
    let (proto, json) = create_both(&s, "deployment", "web", &args);
    assert_eq!(proto["spec"]["replicas"], 0);
    let c = &proto["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(proto["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(proto["spec"]["strategy"]["type"], "RollingUpdate");
    assert_twins(&proto, &json, "web");
}

#[test]
fn create_configmap_and_secrets_store_their_data() {
    let s = Server::start(BIN);
    let file = write_file(s.dir.path(), "notes.txt", "line one\nline two\n");
    let from_file = format!("--from-file={}", file.display());
    let (cm, json) = create_both(
        &s,
        "configmap",
        "c",
        &["configmap", "--from-literal=a=b", &from_file],
    );
    assert_eq!(cm["data"]["a"], "b");
    assert_eq!(cm["data"]["notes.txt"], "line one\nline two\n");
    assert_twins(&cm, &json, "c");

    let (secret, json) = create_both(
        &s,
        "secret",
        "s",
        &["secret", "generic", "--from-literal=p=q"],
    );
    assert_eq!(secret["data"]["p"], "cQ==");
    assert_eq!(secret["type"], "Opaque");
    assert_twins(&secret, &json, "s");

    // The server's own serving certificate and key make a valid TLS pair.
    let tls = s.data_dir().join("server/tls");
    let cert = format!("--cert={}", tls.join("serving.crt").display());
    let key = format!("--key={}", tls.join("serving.key").display());
    let (secret, json) = create_both(&s, "secret", "t", &["secret", "tls", &cert, &key]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let pem = std::fs::read(tls.join("serving.crt")).expect("cert");
    use base64::Engine as _;
    assert_eq!(
        secret["data"]["tls.crt"],
        base64::engine::general_purpose::STANDARD.encode(pem)
    );
    assert_twins(&secret, &json, "t");
}

#[test]
fn create_job_and_cronjob_store_their_pod_templates() {
    let s = Server::start(BIN);
    s.ok(&["create", "job", "j", "--image=busybox", "--", "echo", "hi"]);
    let job = s.get_json(&["job", "j"]);
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox");
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let args = ["cronjob", "--image=busybox", "--schedule=*/5 * * * *"];
    let (cj, json) = create_both(&s, "cronjob", "cj", &args);
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(pod["containers"][0]["image"], "busybox");
    assert_twins(&cj, &json, "cj");
}

#[test]
fn create_service_clusterip_and_nodeport_allocate_like_their_json_twins() {
    let s = Server::start(BIN);
    let (svc, json) = create_both(
        &s,
        "service",
        "svc",
        &["service", "clusterip", "--tcp=80:8080"],
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.contains('.')),
        "{svc}"
    );
    assert_twins(&svc, &json, "svc");

    let (np, json) = create_both(
        &s,
        "service",
        "np",
        &["service", "nodeport", "--tcp=80:8080"],
    );
    assert_eq!(np["spec"]["type"], "NodePort");
    let node_port = np["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort allocated");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert_twins(&np, &json, "np");
}

#[test]
fn autoscale_creates_a_horizontal_pod_autoscaler() {
    let s = Server::start(BIN);
    s.ok(&["create", "deployment", "web", "--image=nginx"]);
    s.ok(&[
        "autoscale",
        "deployment",
        "web",
        "--min=2",
        "--max=5",
        "--cpu-percent=70",
    ]);
    // kubectl sends autoscaling/v1; read back in the preferred version, autoscaling/v2.
    let hpa = s.get_json(&["hpa", "web"]);
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "web");
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(metric["name"], "cpu");
    assert_eq!(metric["target"]["averageUtilization"], 70);
}
