//! Hand-built protobuf bodies, encoded field by field the way Go's generated marshallers write
//! them (every non-pointer field present, empty strings included), and the exact JSON each
//! must become. Tag numbers are from Kubernetes' generated.proto (as k8s-pb carries them).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// A protobuf message under construction.
#[derive(Clone, Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn new() -> Self {
        Pb::default()
    }

    fn raw_varint(mut self, mut v: u64) -> Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }

    fn key(self, tag: u32, wire: u8) -> Self {
        self.raw_varint(u64::from(tag) << 3 | u64::from(wire))
    }

    fn int(self, tag: u32, v: i64) -> Self {
        self.key(tag, 0).raw_varint(v as u64)
    }

    fn bool(self, tag: u32, v: bool) -> Self {
        self.int(tag, i64::from(v))
    }

    fn bytes(self, tag: u32, b: &[u8]) -> Self {
        let mut out = self.key(tag, 2).raw_varint(b.len() as u64);
        out.0.extend_from_slice(b);
        out
    }

    fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    fn msg(self, tag: u32, m: Pb) -> Self {
        self.bytes(tag, &m.0)
    }

    /// A `map<string, string>` entry.
    fn entry(self, tag: u32, k: &str, v: &str) -> Self {
        self.msg(tag, Pb::new().str(1, k).str(2, v))
    }

    /// A `map<string, Message>` entry.
    fn entry_msg(self, tag: u32, k: &str, v: Pb) -> Self {
        self.msg(tag, Pb::new().str(1, k).msg(2, v))
    }
}

/// ObjectMeta as Go writes it for a new object: all strings, generation and an empty
/// creationTimestamp present.
fn meta(name: &str) -> Pb {
    Pb::new()
        .str(1, name)
        .str(2, "")
        .str(3, "")
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Pb::new())
}

/// The `k8s\0` + runtime.Unknown envelope around an object.
fn body(api_version: &str, kind: &str, object: Pb) -> Vec<u8> {
    let type_meta = Pb::new().str(1, api_version).str(2, kind);
    let unknown = Pb::new()
        .msg(1, type_meta)
        .msg(2, object)
        .str(3, "")
        .str(4, "");
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&unknown.0);
    out
}

fn decode(api_version: &str, kind: &str, object: Pb) -> Value {
    decode_body(&body(api_version, kind, object)).expect("decodes")
}

fn int_or_string_int(v: i32) -> Pb {
    Pb::new().int(1, 0).int(2, i64::from(v)).str(3, "")
}

fn int_or_string_str(s: &str) -> Pb {
    Pb::new().int(1, 1).int(2, 0).str(3, s)
}

fn quantity(s: &str) -> Pb {
    Pb::new().str(1, s)
}

#[test]
fn a_configmap_with_data_and_binary_data_becomes_its_json() {
    let cm = Pb::new()
        .msg(1, meta("c").entry(11, "app", "web"))
        .entry(2, "a", "b")
        .entry(2, "file.txt", "line1\nline2\n")
        .msg(3, Pb::new().str(1, "bin").bytes(2, &[0, 1, 2, 0xff]));
    let v = decode("v1", "ConfigMap", cm);
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "generation": 0, "creationTimestamp": null, "labels": {"app": "web"}},
            "data": {"a": "b", "file.txt": "line1\nline2\n"},
            "binaryData": {"bin": "AAEC/w=="}
        })
    );
    let text = serde_json::to_string(&v).expect("json");
    assert!(
        text.starts_with(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata""#),
        "{text}"
    );
}

#[test]
fn a_secret_keeps_binary_values_as_base64_and_its_type() {
    let secret = Pb::new()
        .msg(1, meta("s"))
        .msg(2, Pb::new().str(1, "p").bytes(2, b"q"))
        .msg(2, Pb::new().str(1, "raw").bytes(2, &[0x00, 0xfe, 0x80]))
        .msg(2, Pb::new().str(1, "empty").bytes(2, b""))
        .str(3, "Opaque");
    assert_eq!(
        decode("v1", "Secret", secret),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s", "generation": 0, "creationTimestamp": null},
            "data": {"p": "cQ==", "raw": "AP6A", "empty": ""},
            "type": "Opaque"
        })
    );
}

/// What `kubectl create deployment web --image=nginx --replicas=0 --port=8080` encodes.
fn deployment() -> Pb {
    let labels = |m: Pb| m.entry(11, "app", "web");
    let port = Pb::new()
        .str(1, "")
        .int(2, 0)
        .int(3, 8080)
        .str(4, "")
        .str(5, "");
    let container = Pb::new()
        .str(1, "nginx")
        .str(2, "nginx")
        .str(5, "")
        .msg(6, port)
        .msg(8, Pb::new())
        .str(13, "")
        .str(14, "")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false)
        .str(20, "");
    let pod_spec = Pb::new()
        .msg(2, container)
        .str(3, "")
        .str(6, "")
        .str(8, "")
        .str(9, "")
        .str(10, "")
        .bool(11, false)
        .str(19, "");
    let template = Pb::new().msg(1, labels(meta(""))).msg(2, pod_spec);
    let spec = Pb::new()
        .int(1, 0)
        .msg(2, Pb::new().entry(1, "app", "web"))
        .msg(3, template)
        .msg(4, Pb::new().str(1, ""))
        .int(5, 0)
        .bool(7, false);
    Pb::new()
        .msg(1, labels(meta("web")))
        .msg(2, spec)
        .msg(3, Pb::new().int(1, 0).int(2, 0))
}

#[test]
fn a_deployment_keeps_zero_replicas_and_drops_go_empty_strings() {
    assert_eq!(
        decode("apps/v1", "Deployment", deployment()),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "generation": 0, "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"generation": 0, "creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx",
                            "ports": [{"hostPort": 0, "containerPort": 8080}],
                            "resources": {},
                            "stdin": false,
                            "stdinOnce": false,
                            "tty": false
                        }],
                        "hostNetwork": false
                    }
                },
                "strategy": {},
                "minReadySeconds": 0,
                "paused": false
            },
            "status": {"observedGeneration": 0, "replicas": 0}
        })
    );
}

#[test]
fn required_empty_strings_stay() {
    // TokenRequestStatus.token is required (json:"token", no omitempty).
    let tr = Pb::new()
        .msg(1, meta("default"))
        .msg(
            2,
            Pb::new()
                .str(1, "https://kubernetes.default.svc")
                .int(4, 3600),
        )
        .msg(3, Pb::new().str(1, "").msg(2, Pb::new()));
    assert_eq!(
        decode("authentication.k8s.io/v1", "TokenRequest", tr),
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": "default", "generation": 0, "creationTimestamp": null},
            "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600},
            "status": {"token": "", "expirationTimestamp": null}
        })
    );
}

#[test]
fn int_or_string_is_a_number_or_a_string() {
    let svc = Pb::new().msg(1, meta("svc")).msg(
        2,
        Pb::new()
            .msg(
                1,
                Pb::new()
                    .str(1, "80-8080")
                    .str(2, "TCP")
                    .int(3, 80)
                    .msg(4, int_or_string_int(8080))
                    .int(5, 0),
            )
            .msg(
                1,
                Pb::new()
                    .str(1, "web")
                    .str(2, "TCP")
                    .int(3, 81)
                    .msg(4, int_or_string_str("http")),
            )
            .entry(2, "app", "svc")
            .str(3, "")
            .str(4, "ClusterIP"),
    );
    let v = decode("v1", "Service", svc);
    assert_eq!(
        v["spec"],
        json!({
            "ports": [
                {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 0},
                {"name": "web", "protocol": "TCP", "port": 81, "targetPort": "http"}
            ],
            "selector": {"app": "svc"},
            "type": "ClusterIP"
        })
    );
    let pdb = Pb::new().msg(1, meta("pdb")).msg(
        2,
        Pb::new()
            .msg(1, int_or_string_str("50%"))
            .msg(3, int_or_string_int(0)),
    );
    let v = decode("policy/v1", "PodDisruptionBudget", pdb);
    assert_eq!(
        v["spec"],
        json!({"minAvailable": "50%", "maxUnavailable": 0})
    );
}

#[test]
fn quantities_are_strings_and_empty_ones_are_zero() {
    let quota = Pb::new().msg(1, meta("q")).msg(
        2,
        Pb::new()
            .entry_msg(1, "cpu", quantity("500m"))
            .entry_msg(1, "memory", quantity("1Gi"))
            .entry_msg(1, "pods", Pb::new()),
    );
    let v = decode("v1", "ResourceQuota", quota);
    assert_eq!(
        v["spec"],
        json!({"hard": {"cpu": "500m", "memory": "1Gi", "pods": "0"}})
    );
}

#[test]
fn times_are_rfc3339_and_the_zero_time_is_null() {
    let m = meta("t")
        .msg(9, Pb::new().int(1, 1_700_000_000).int(2, 999))
        .int(10, 30);
    let v = decode("v1", "Namespace", Pb::new().msg(1, m));
    assert_eq!(
        v["metadata"],
        json!({
            "name": "t",
            "generation": 0,
            "creationTimestamp": null,
            "deletionTimestamp": "2023-11-14T22:13:20Z",
            "deletionGracePeriodSeconds": 30
        })
    );
    let lease = Pb::new().msg(1, meta("l")).msg(
        2,
        Pb::new()
            .str(1, "node-1")
            .int(2, 40)
            .msg(4, Pb::new().int(1, 1_700_000_000).int(2, 123_456_789)),
    );
    let v = decode("coordination.k8s.io/v1", "Lease", lease);
    assert_eq!(
        v["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2023-11-14T22:13:20.123456Z"})
    );
}

#[test]
fn embedded_structs_are_inlined_into_their_parent() {
    // Volume{name, VolumeSource (inline){configMap{LocalObjectReference (inline){name}}}}
    let volume = Pb::new().str(1, "cfg").msg(
        2,
        Pb::new().msg(19, Pb::new().msg(1, Pb::new().str(1, "c")).int(3, 420)),
    );
    let env = Pb::new().str(1, "A").msg(
        3,
        Pb::new().msg(3, Pb::new().msg(1, Pb::new().str(1, "c")).str(2, "a")),
    );
    let pod_spec = Pb::new()
        .msg(1, volume)
        .msg(2, Pb::new().str(1, "x").str(2, "busybox").msg(7, env));
    let v = decode("v1", "Pod", Pb::new().msg(1, meta("p")).msg(2, pod_spec));
    assert_eq!(
        v["spec"],
        json!({
            "volumes": [{"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
            "containers": [{
                "name": "x",
                "image": "busybox",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a"}}}]
            }]
        })
    );
}

#[test]
fn raw_extensions_carry_their_json_or_a_nested_envelope() {
    let rev = Pb::new()
        .msg(1, meta("r"))
        .msg(2, Pb::new().bytes(1, br#"{"spec":{"x":1}}"#))
        .int(3, 2);
    let v = decode("apps/v1", "ControllerRevision", rev);
    assert_eq!(v["data"], json!({"spec": {"x": 1}}));
    assert_eq!(v["revision"], 2);

    let inner = body("v1", "ConfigMap", Pb::new().msg(1, meta("in")));
    let rev = Pb::new()
        .msg(1, meta("r"))
        .msg(2, Pb::new().bytes(1, &inner));
    let v = decode("apps/v1", "ControllerRevision", rev);
    assert_eq!(v["data"]["kind"], "ConfigMap");
    assert_eq!(v["data"]["metadata"]["name"], "in");
}

#[test]
fn kubectl_auth_can_i_sends_a_self_subject_access_review() {
    let ssar = Pb::new()
        .msg(1, meta(""))
        .msg(
            2,
            Pb::new().msg(
                1,
                Pb::new()
                    .str(1, "default")
                    .str(2, "list")
                    .str(3, "")
                    .str(4, "")
                    .str(5, "pods")
                    .str(6, "")
                    .str(7, ""),
            ),
        )
        .msg(
            3,
            Pb::new()
                .bool(1, false)
                .str(2, "")
                .str(3, "")
                .bool(4, false),
        );
    assert_eq!(
        decode("authorization.k8s.io/v1", "SelfSubjectAccessReview", ssar),
        json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "metadata": {"generation": 0, "creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
            "status": {"allowed": false, "denied": false}
        })
    );
}

#[test]
fn drain_sends_an_eviction_with_delete_options() {
    let eviction = Pb::new()
        .msg(1, meta("web-1").str(3, "default"))
        .msg(2, Pb::new().int(1, 0).str(5, "All"));
    assert_eq!(
        decode("policy/v1", "Eviction", eviction),
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-1", "namespace": "default", "generation": 0, "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 0, "dryRun": ["All"]}
        })
    );
}

#[test]
fn autoscale_sends_a_horizontal_pod_autoscaler() {
    let target = Pb::new()
        .str(1, "Deployment")
        .str(2, "web")
        .str(3, "apps/v1");
    let v1 = Pb::new().msg(1, meta("web")).msg(
        2,
        Pb::new()
            .msg(1, target.clone())
            .int(2, 1)
            .int(3, 5)
            .int(4, 80),
    );
    assert_eq!(
        decode("autoscaling/v1", "HorizontalPodAutoscaler", v1)["spec"],
        json!({
            "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 80
        })
    );
    let metric = Pb::new().str(1, "Resource").msg(
        4,
        Pb::new()
            .str(1, "cpu")
            .msg(2, Pb::new().str(1, "Utilization").int(4, 80)),
    );
    let v2 = Pb::new()
        .msg(1, meta("web"))
        .msg(2, Pb::new().msg(1, target).int(3, 5).msg(4, metric));
    assert_eq!(
        decode("autoscaling/v2", "HorizontalPodAutoscaler", v2)["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
}

#[test]
fn priority_classes_keep_a_zero_value() {
    let pc = Pb::new()
        .msg(1, meta("low"))
        .int(2, 0)
        .bool(3, false)
        .str(4, "");
    assert_eq!(
        decode("scheduling.k8s.io/v1", "PriorityClass", pc),
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "low", "generation": 0, "creationTimestamp": null},
            "value": 0,
            "globalDefault": false
        })
    );
}

#[test]
fn negative_int32_values_survive_sign_extension() {
    let cm = Pb::new().msg(1, meta("c").int(10, -1));
    assert_eq!(
        decode("v1", "ConfigMap", cm)["metadata"]["deletionGracePeriodSeconds"],
        -1
    );
}

#[test]
fn repeated_numbers_may_be_packed() {
    // Job podFailurePolicy onExitCodes.values is `repeated int32`; Go writes it unpacked, but
    // decoders must accept the packed form too.
    let rule = Pb::new().str(1, "FailJob").msg(
        2,
        Pb::new()
            .str(1, "main")
            .str(2, "In")
            .bytes(3, &[1, 2, 0x7f]),
    );
    let job = Pb::new()
        .msg(1, meta("j"))
        .msg(2, Pb::new().msg(11, Pb::new().msg(1, rule)));
    let v = decode("batch/v1", "Job", job);
    assert_eq!(
        v["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"],
        json!([1, 2, 127])
    );
}

#[test]
fn malformed_bodies_are_bad_requests_naming_the_problem() {
    let err = decode_body(b"{\"kind\":\"Pod\"}").expect_err("no magic");
    assert_eq!(err.code, 400);
    assert!(err.message.contains("magic"), "{}", err.message);

    let mut truncated = body("v1", "ConfigMap", Pb::new().msg(1, meta("c")));
    truncated.truncate(truncated.len() - 3);
    assert_eq!(decode_body(&truncated).expect_err("truncated").code, 400);

    let unknown_field = body("v1", "ConfigMap", Pb::new().msg(1, meta("c").str(99, "x")));
    let err = decode_body(&unknown_field).expect_err("unknown field");
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains(
            "unknown field number 99 in message apimachinery.pkg.apis.meta.v1.ObjectMeta"
        ) && err.message.contains("metadata"),
        "{}",
        err.message
    );

    let wrong_type = body(
        "apps/v1",
        "Deployment",
        Pb::new().msg(2, Pb::new().str(1, "3")),
    );
    let err = decode_body(&wrong_type).expect_err("wrong wire type");
    assert_eq!(err.code, 400);
    assert!(err.message.contains("spec.replicas"), "{}", err.message);

    let bad_utf8 = body(
        "v1",
        "ConfigMap",
        Pb::new().msg(1, Pb::new().bytes(1, &[0xff])),
    );
    assert!(decode_body(&bad_utf8)
        .expect_err("utf8")
        .message
        .contains("metadata.name"));
}

#[test]
fn unknown_kinds_and_encodings_are_unsupported_media_types() {
    let err = decode_body(&body("example.com/v1", "Widget", Pb::new())).expect_err("unknown");
    assert_eq!(err.code, 415);
    assert!(
        err.message.contains("Widget") && err.message.contains("example.com/v1"),
        "{}",
        err.message
    );

    let mut gz = MAGIC.to_vec();
    gz.extend(
        Pb::new()
            .msg(1, Pb::new().str(1, "v1").str(2, "ConfigMap"))
            .str(3, "gzip")
            .0,
    );
    assert_eq!(decode_body(&gz).expect_err("encoding").code, 415);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.properties values nest without bound.
    let mut schema = Pb::new().str(5, "object");
    for _ in 0..200 {
        schema = Pb::new().entry_msg(29, "p", schema);
    }
    let crd = Pb::new().msg(1, meta("c")).msg(
        2,
        Pb::new().msg(7, Pb::new().str(1, "v1").msg(4, Pb::new().msg(1, schema))),
    );
    let err = decode_body(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .expect_err("too deep");
    assert_eq!(err.code, 400);
    assert!(err.message.contains("deeper"), "{}", err.message);
}

#[test]
fn crd_schemas_decode_with_their_union_types() {
    let string = Pb::new().str(5, "string");
    let schema = Pb::new()
        .str(5, "object")
        .entry_msg(29, "name", string.clone())
        .msg(30, Pb::new().bool(1, true))
        .bool(38, true);
    let crd = Pb::new().msg(1, meta("widgets.example.com")).msg(
        2,
        Pb::new().msg(
            7,
            Pb::new()
                .str(1, "v1")
                .bool(2, true)
                .bool(3, true)
                .msg(4, Pb::new().msg(1, schema)),
        ),
    );
    let v = decode("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd);
    assert_eq!(
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "additionalProperties": true,
            "x-kubernetes-preserve-unknown-fields": true
        })
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_body(&bytes);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = decode_body(&with_magic);
    }

    #[test]
    fn random_objects_in_a_valid_envelope_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        kind in prop::sample::select(vec![
            ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("v1", "Secret"),
        ]),
    ) {
        let mut b = MAGIC.to_vec();
        b.extend(Pb::new().msg(1, Pb::new().str(1, kind.0).str(2, kind.1)).bytes(2, &bytes).0);
        let _ = decode_body(&b);
    }

    #[test]
    fn mutated_real_bodies_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut b = body("apps/v1", "Deployment", deployment());
        let i = index.index(b.len());
        b[i] = byte;
        let _ = decode_body(&b);
        b.truncate(cut.index(b.len()));
        let _ = decode_body(&b);
    }
}

/// A body kubectl 1.32 sent (testdata/kubectl-NAME.hex, captured with `kubectl -v=9`).
fn captured(name: &str) -> Value {
    let hex = match name {
        "configmap" => include_str!("testdata/kubectl-configmap.hex"),
        "cronjob" => include_str!("testdata/kubectl-cronjob.hex"),
        "deployment" => include_str!("testdata/kubectl-deployment.hex"),
        "hpa" => include_str!("testdata/kubectl-hpa.hex"),
        "job" => include_str!("testdata/kubectl-job.hex"),
        "pc" => include_str!("testdata/kubectl-pc.hex"),
        "pdb" => include_str!("testdata/kubectl-pdb.hex"),
        "quota" => include_str!("testdata/kubectl-quota.hex"),
        "secret" => include_str!("testdata/kubectl-secret.hex"),
        "service" => include_str!("testdata/kubectl-service.hex"),
        "ssar" => include_str!("testdata/kubectl-ssar.hex"),
        "tls" => include_str!("testdata/kubectl-tls.hex"),
        "token" => include_str!("testdata/kubectl-token.hex"),
        other => panic!("no capture {other}"),
    }
    .trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    decode_body(&bytes).expect("kubectl's body decodes")
}

/// What the same kubectl command prints with `--dry-run=client -o json` (the JSON it would
/// have sent before 1.32): testdata/kubectl-NAME.json.
fn reference(name: &str) -> Value {
    let text = match name {
        "configmap" => include_str!("testdata/kubectl-configmap.json"),
        "cronjob" => include_str!("testdata/kubectl-cronjob.json"),
        "deployment" => include_str!("testdata/kubectl-deployment.json"),
        "hpa" => include_str!("testdata/kubectl-hpa.json"),
        "job" => include_str!("testdata/kubectl-job.json"),
        "pc" => include_str!("testdata/kubectl-pc.json"),
        "pdb" => include_str!("testdata/kubectl-pdb.json"),
        "quota" => include_str!("testdata/kubectl-quota.json"),
        "secret" => include_str!("testdata/kubectl-secret.json"),
        "service" => include_str!("testdata/kubectl-service.json"),
        "tls" => include_str!("testdata/kubectl-tls.json"),
        other => panic!("no reference {other}"),
    };
    serde_json::from_str(text).expect("reference JSON")
}

/// Compares a decoded body with the JSON Go would write for the same object. The only
/// differences allowed are the two the wire format cannot settle (see decode.rs): a zero
/// number or false that Go's JSON omitted (a non-pointer `omitempty` field, always on the
/// wire), and a null Go's JSON wrote (a nil pointer without `omitempty`, never on the wire).
/// Returns the paths of the allowed differences.
fn equivalent(decoded: &Value, go: &Value, path: &str, extras: &mut Vec<String>) {
    match (decoded, go) {
        (Value::Object(d), Value::Object(g)) => {
            for (k, dv) in d {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => equivalent(dv, gv, &p, extras),
                    None if dv == &json!(0) || dv == &json!(false) => extras.push(p),
                    None => panic!("{p}: decoded {dv}, absent from Go's JSON"),
                }
            }
            for (k, gv) in g {
                if !d.contains_key(k) {
                    assert!(
                        gv.is_null(),
                        "{path}.{k}: Go's JSON has {gv}, decoded lacks it"
                    );
                    extras.push(format!("{path}.{k}"));
                }
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            assert_eq!(d.len(), g.len(), "{path}: array lengths");
            for (i, (dv, gv)) in d.iter().zip(g).enumerate() {
                equivalent(dv, gv, &format!("{path}[{i}]"), extras);
            }
        }
        (d, g) => assert_eq!(d, g, "{path}"),
    }
}

#[test]
fn kubectl_create_bodies_decode_to_the_json_kubectl_would_have_sent() {
    for name in [
        "configmap",
        "cronjob",
        "deployment",
        "hpa",
        "job",
        "pc",
        "pdb",
        "quota",
        "secret",
        "service",
        "tls",
    ] {
        let mut extras = Vec::new();
        equivalent(&captured(name), &reference(name), "", &mut extras);
        // Go's zero metadata.generation is on the wire of every object.
        assert!(
            extras.contains(&".metadata.generation".to_string()),
            "{name}: {extras:?}"
        );
    }
}

#[test]
fn kubectl_create_deployment_differs_from_its_json_only_by_go_zero_values() {
    let mut extras = Vec::new();
    let decoded = captured("deployment");
    equivalent(&decoded, &reference("deployment"), "", &mut extras);
    assert_eq!(decoded["spec"]["replicas"], 0);
    assert_eq!(
        decoded["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    let c = ".spec.template.spec.containers[0]";
    let mut expected: Vec<String> = [
        ".metadata.generation".to_string(),
        ".spec.template.metadata.generation".to_string(),
        format!("{c}.ports[0].hostPort"),
        format!("{c}.stdin"),
        format!("{c}.stdinOnce"),
        format!("{c}.tty"),
        ".spec.template.spec.hostNetwork".to_string(),
        ".spec.template.spec.hostPID".to_string(),
        ".spec.template.spec.hostIPC".to_string(),
        ".spec.minReadySeconds".to_string(),
        ".spec.paused".to_string(),
        ".status.observedGeneration".to_string(),
        ".status.replicas".to_string(),
        ".status.updatedReplicas".to_string(),
        ".status.availableReplicas".to_string(),
        ".status.unavailableReplicas".to_string(),
        ".status.readyReplicas".to_string(),
    ]
    .into();
    expected.sort();
    extras.sort();
    assert_eq!(extras, expected);
}

#[test]
fn kubectl_auth_can_i_and_create_token_bodies_decode() {
    // kubectl has no --dry-run for these; the JSON is Go's encoding of what it builds.
    let mut extras = Vec::new();
    equivalent(
        &captured("ssar"),
        &json!({
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}},
            "status": {"allowed": false}
        }),
        "",
        &mut extras,
    );
    assert_eq!(extras, [".metadata.generation", ".status.denied"]);
    extras.clear();
    equivalent(
        &captured("token"),
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "audiences": ["https://kubernetes.default.svc"],
                "expirationSeconds": 3600,
                "boundObjectRef": null
            },
            "status": {"token": "", "expirationTimestamp": null}
        }),
        "",
        &mut extras,
    );
    assert_eq!(extras, [".metadata.generation", ".spec.boundObjectRef"]);
}
