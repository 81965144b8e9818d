//! Strategic merge patch: one test per directive and rule, errors, a golden three-way patch
//! taken from the real kubectl, and the property that applying a diff reproduces its target.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn deployment() -> Option<TypeRef> {
    Model::for_kind("apps", "v1", "Deployment")
}

fn pod() -> Option<TypeRef> {
    Model::for_kind("", "v1", "Pod")
}

fn apply_pod(original: Value, patch: Value) -> Value {
    apply(&original, &patch, pod()).expect("patch applies")
}

fn pod_with(containers: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
}

#[test]
fn containers_merge_by_name() {
    let got = apply_pod(
        pod_with(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
        json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
    );
    assert_eq!(
        got,
        pod_with(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]))
    );
}

#[test]
fn new_items_come_in_patch_order() {
    let got = apply_pod(
        pod_with(json!([{"name": "a"}])),
        json!({"spec": {"containers": [{"name": "c"}, {"name": "b"}]}}),
    );
    // Upstream puts the patch's items first when the live order says nothing about them.
    assert_eq!(
        got,
        pod_with(json!([{"name": "c"}, {"name": "b"}, {"name": "a"}]))
    );
}

#[test]
fn null_deletes_a_field_and_a_map_key() {
    let original = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"hostname": "h"}});
    let got = apply_pod(
        original,
        json!({"metadata": {"labels": {"a": null}}, "spec": {"hostname": null}}),
    );
    assert_eq!(
        got,
        json!({"metadata": {"name": "p", "labels": {"b": "2"}}, "spec": {}})
    );
}

#[test]
fn nulls_inside_new_content_are_dropped() {
    let got = apply_pod(
        json!({}),
        json!({"metadata": {"labels": {"a": "1", "b": null}}}),
    );
    assert_eq!(got, json!({"metadata": {"labels": {"a": "1"}}}));
}

#[test]
fn patch_replace_on_a_map_replaces_it() {
    let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let got = apply_pod(
        original,
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    );
    assert_eq!(got, json!({"metadata": {"labels": {"c": "3"}}}));
}

#[test]
fn patch_delete_on_a_map_empties_it() {
    let original = json!({"metadata": {"labels": {"a": "1"}, "name": "p"}});
    let got = apply_pod(
        original,
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    );
    assert_eq!(got, json!({"metadata": {"labels": {}, "name": "p"}}));
}

#[test]
fn patch_delete_in_a_list_removes_the_item_with_that_key() {
    let got = apply_pod(
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
    );
    assert_eq!(got, pod_with(json!([{"name": "b"}])));
}

#[test]
fn patch_replace_in_a_list_replaces_the_whole_list() {
    let got = apply_pod(
        pod_with(json!([{"name": "a"}, {"name": "b"}])),
        json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"$patch": "replace"}]}}),
    );
    assert_eq!(got, pod_with(json!([{"name": "c", "image": "i"}])));
}

#[test]
fn set_element_order_reorders_and_keeps_server_only_items_in_place() {
    let got = apply_pod(
        pod_with(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "new"}],
        }}),
    );
    // b is only on the server: it stays before c, as it was live (upstream's interleaving).
    assert_eq!(
        got,
        pod_with(json!([{"name": "b"}, {"name": "c"}, {"name": "a", "image": "new"}]))
    );
}

#[test]
fn set_element_order_must_agree_with_the_patch_list() {
    let err = apply(
        &pod_with(json!([{"name": "a"}, {"name": "b"}])),
        &json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b"}, {"name": "a"}],
        }}),
        pod(),
    )
    .expect_err("order mismatch");
    assert!(matches!(err, Error::BadSetElementOrder { .. }), "{err}");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn retain_keys_clears_the_other_members_of_a_union() {
    let original =
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let got = apply(&original, &patch, deployment()).expect("applies");
    assert_eq!(got, json!({"spec": {"strategy": {"type": "Recreate"}}}));
}

#[test]
fn retain_keys_rejects_a_patch_setting_an_unlisted_field() {
    let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}});
    let err = apply(&original, &patch, deployment()).expect_err("unlisted");
    assert!(matches!(err, Error::BadRetainKeys { .. }), "{err}");
}

#[test]
fn delete_from_primitive_list_removes_values() {
    let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let got = apply_pod(
        original,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
    );
    assert_eq!(got, json!({"metadata": {"finalizers": ["a", "c"]}}));
}

#[test]
fn primitive_lists_with_merge_strategy_are_unioned() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let got = apply_pod(original, json!({"metadata": {"finalizers": ["c", "a"]}}));
    assert_eq!(got, json!({"metadata": {"finalizers": ["c", "a", "b"]}}));
}

#[test]
fn atomic_lists_are_replaced() {
    let got = apply_pod(
        pod_with(json!([{"name": "a", "args": ["1", "2"]}])),
        json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
    );
    assert_eq!(got, pod_with(json!([{"name": "a", "args": ["3"]}])));
}

#[test]
fn lists_of_unknown_fields_are_replaced_and_maps_merged() {
    let original = json!({"spec": {"foo": [1, 2], "bar": {"a": 1}}});
    let got = apply_pod(original, json!({"spec": {"foo": [3], "bar": {"b": 2}}}));
    assert_eq!(got, json!({"spec": {"foo": [3], "bar": {"a": 1, "b": 2}}}));
}

#[test]
fn volumes_switch_source_with_retain_keys() {
    let original = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let modified = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}]}});
    let patch = diff(&original, &modified, pod()).expect("diff");
    assert_eq!(
        patch["spec"]["volumes"][0]["$retainKeys"],
        json!(["configMap", "name"]),
        "{patch}"
    );
    assert_eq!(apply(&original, &patch, pod()).expect("applies"), modified);
}

#[test]
fn a_list_item_without_its_merge_key_is_refused() {
    let err = apply(
        &pod_with(json!([{"name": "a"}])),
        &json!({"spec": {"containers": [{"image": "x"}]}}),
        pod(),
    )
    .expect_err("no name");
    assert!(
        matches!(err, Error::MissingMergeKey { ref key, .. } if key == "name"),
        "{err}"
    );
    assert_eq!(err.status_code(), 422);
    assert!(err.to_string().contains("spec.containers"), "{err}");
}

#[test]
fn malformed_directives_are_bad_requests() {
    let cases = [
        json!({"metadata": {"labels": {"$patch": "frobnicate"}}}),
        json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
        json!({"metadata": {"$retainKeys": "name"}}),
        json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
        json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
    ];
    for patch in cases {
        let mut original = pod_with(json!([{"name": "a"}]));
        original["metadata"]["labels"] = json!({"x": "1"});
        let err = apply(&original, &patch, pod()).expect_err("malformed");
        assert_eq!(err.status_code(), 400, "{patch}: {err}");
    }
    let err = apply(&json!({}), &json!([1]), pod()).expect_err("not an object");
    assert_eq!(err, Error::NotAnObject { found: "array" });
}

#[test]
fn lists_of_lists_and_mixed_lists_are_refused() {
    let err = apply(
        &json!({"metadata": {"finalizers": [["a"]]}}),
        &json!({"metadata": {"finalizers": [["b"]]}}),
        pod(),
    )
    .expect_err("list of lists");
    assert!(matches!(err, Error::ListOfLists { .. }), "{err}");
    let err = apply(
        &json!({"metadata": {"finalizers": ["a"]}}),
        &json!({"metadata": {"finalizers": [1]}}),
        pod(),
    )
    .expect_err("mixed");
    assert!(matches!(err, Error::MixedList { .. }), "{err}");
}

#[test]
fn a_diff_of_equal_objects_is_empty() {
    let obj = pod_with(json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}]));
    assert_eq!(diff(&obj, &obj, pod()).expect("diff"), json!({}));
}

#[test]
fn two_way_diff_matches_what_kubectl_computes() {
    let original = pod_with(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]));
    let modified = pod_with(json!([{"name": "b", "image": "y"}, {"name": "c", "image": "z"}]));
    let patch = diff(&original, &modified, pod()).expect("diff");
    assert_eq!(
        patch,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c", "image": "z"}, {"$patch": "delete", "name": "a"}],
        }})
    );
    assert_eq!(apply(&original, &patch, pod()).expect("applies"), modified);
}

#[test]
fn primitive_merge_lists_diff_to_deletions_and_order() {
    let original = json!({"metadata": {"finalizers": ["a", "b"]}});
    let modified = json!({"metadata": {"finalizers": ["c", "a"]}});
    let patch = diff(&original, &modified, pod()).expect("diff");
    assert_eq!(
        patch,
        json!({"metadata": {
            "finalizers": ["c"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["c", "a"],
        }})
    );
    assert_eq!(apply(&original, &patch, pod()).expect("applies"), modified);
}

/// The spec part of the patch the real kubectl 1.32 sent for `kubectl apply` of a changed
/// deployment (no last-applied annotation yet, so original is empty), captured from a mock
/// server serving this crate's documents.
#[test]
fn three_way_patch_matches_kubectl_apply() {
    let current = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1", "uid": "u1"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1}, "type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}], "image": "nginx", "name": "a", "ports": [{"containerPort": 80}]},
                {"image": "busybox", "name": "b"}
            ]}}
        }
    });
    let modified = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": 2}, "type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}], "image": "nginx", "name": "a", "ports": [{"containerPort": 80}]},
                {"image": "busybox:2", "name": "b"}
            ]}}
        }
    });
    let patch = three_way(&json!({}), &modified, &current, deployment()).expect("three-way");
    assert_eq!(
        patch,
        json!({"spec": {
            "strategy": {"$retainKeys": ["rollingUpdate", "type"], "rollingUpdate": {"maxSurge": 2}},
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [
                    {"$setElementOrder/env": [{"name": "X"}, {"name": "Y"}], "env": [{"name": "Y", "value": "3"}], "name": "a"},
                    {"image": "busybox:2", "name": "b"}
                ]
            }}
        }})
    );
}

#[test]
fn three_way_deletes_only_what_was_applied_before() {
    let original = json!({"metadata": {"labels": {"mine": "1", "gone": "1"}}});
    let modified = json!({"metadata": {"labels": {"mine": "2"}}});
    let current = json!({"metadata": {"labels": {"mine": "1", "gone": "1", "theirs": "1"}}});
    let patch = three_way(&original, &modified, &current, pod()).expect("three-way");
    assert_eq!(
        patch,
        json!({"metadata": {"labels": {"gone": null, "mine": "2"}}})
    );
    let applied = apply(&current, &patch, pod()).expect("applies");
    assert_eq!(
        applied,
        json!({"metadata": {"labels": {"mine": "2", "theirs": "1"}}})
    );
}

// ---- property: apply(original, diff(original, modified)) == modified, on random pod specs ----

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(str::to_string)
}

/// Picks distinct values from `pool`, in random order.
fn distinct<T: Clone + std::fmt::Debug + 'static>(
    pool: Vec<T>,
    max: usize,
) -> impl Strategy<Value = Vec<T>> {
    prop::sample::subsequence(pool.clone(), 0..=max.min(pool.len())).prop_shuffle()
}

fn env() -> impl Strategy<Value = Value> {
    distinct(vec!["A", "B", "C", "D"], 4).prop_flat_map(|names| {
        let n = names.len();
        prop::collection::vec(prop::sample::select(vec!["1", "2", "3"]), n).prop_map(
            move |values| {
                Value::Array(
                    names
                        .iter()
                        .zip(values)
                        .map(|(name, value)| json!({"name": name, "value": value}))
                        .collect(),
                )
            },
        )
    })
}

fn ports() -> impl Strategy<Value = Value> {
    distinct(vec![80u16, 443, 8080], 3).prop_flat_map(|ports| {
        let n = ports.len();
        prop::collection::vec(
            prop::option::of(prop::sample::select(vec!["TCP", "UDP"])),
            n,
        )
        .prop_map(move |protos| {
            Value::Array(
                ports
                    .iter()
                    .zip(protos)
                    .map(|(port, proto)| match proto {
                        Some(p) => json!({"containerPort": port, "protocol": p}),
                        None => json!({"containerPort": port}),
                    })
                    .collect(),
            )
        })
    })
}

fn container(name: String) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["nginx", "busybox", "redis:7"]),
        prop::option::of(env()),
        prop::option::of(ports()),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["-v", "--x", "run"]),
            0..3,
        )),
        prop::option::of(distinct(vec!["/data", "/cfg", "/tmp"], 2)),
    )
        .prop_map(move |(image, env, ports, args, mounts)| {
            let mut c = json!({"name": name, "image": image});
            if let Some(env) = env {
                c["env"] = env;
            }
            if let Some(ports) = ports {
                c["ports"] = ports;
            }
            if let Some(args) = args {
                c["args"] = json!(args);
            }
            if let Some(mounts) = mounts {
                c["volumeMounts"] = Value::Array(
                    mounts
                        .iter()
                        .enumerate()
                        .map(|(i, path)| json!({"name": format!("v{i}"), "mountPath": path}))
                        .collect(),
                );
            }
            c
        })
}

fn volume(name: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"emptyDir": {}})),
        prop::sample::select(vec!["cm1", "cm2"]).prop_map(|cm| json!({"configMap": {"name": cm}})),
        prop::sample::select(vec!["s1", "s2"]).prop_map(|s| json!({"secret": {"secretName": s}})),
    ]
    .prop_map(move |mut source| {
        source["name"] = Value::from(name.clone());
        source
    })
}

fn pod_spec() -> impl Strategy<Value = Value> {
    let containers = distinct(vec!["a", "b", "c", "d"], 4)
        .prop_filter("a pod has containers", |n| !n.is_empty())
        .prop_flat_map(|names| {
            names
                .into_iter()
                .map(|n| container(n.to_string()))
                .collect::<Vec<_>>()
        });
    let volumes = distinct(vec!["v0", "v1", "v2"], 3).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|n| volume(n.to_string()))
            .collect::<Vec<_>>()
    });
    (
        containers,
        prop::option::of(volumes),
        prop::option::of(name()),
        prop::option::of(prop::collection::btree_map(name(), name(), 0..3)),
        prop::option::of(distinct(vec!["f1", "f2", "f3"], 3)),
    )
        .prop_map(|(containers, volumes, hostname, labels, finalizers)| {
            let mut spec = json!({"containers": containers});
            if let Some(v) = volumes {
                spec["volumes"] = json!(v);
            }
            if let Some(h) = hostname {
                spec["hostname"] = Value::from(h);
            }
            let mut metadata = json!({"name": "p"});
            if let Some(l) = labels {
                metadata["labels"] = json!(l);
            }
            if let Some(f) = finalizers {
                metadata["finalizers"] = json!(f);
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn applying_the_diff_of_two_pods_yields_the_second(original in pod_spec(), modified in pod_spec()) {
        let patch = diff(&original, &modified, pod()).expect("diff");
        let applied = apply(&original, &patch, pod()).expect("apply");
        prop_assert_eq!(&applied, &modified, "patch was {}", patch);
    }

    #[test]
    fn the_three_way_patch_applied_to_the_live_object_yields_the_new_config(
        original in pod_spec(),
        modified in pod_spec(),
    ) {
        // With the live object equal to the last applied configuration, client-side apply must
        // land exactly on the new configuration.
        let patch = three_way(&original, &modified, &original, pod()).expect("three-way");
        let applied = apply(&original, &patch, pod()).expect("apply");
        prop_assert_eq!(&applied, &modified, "patch was {}", patch);
    }
}
