"""The Python `kubernetes` client against a capstan server: list, create, watch.

Run as: python3 client_check.py <kubeconfig>. Exits non-zero with a message on any mismatch.
"""
import sys
import threading
import time

from kubernetes import client, config, watch


def main(kubeconfig: str) -> None:
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()
    apps = client.AppsV1Api()

    namespaces = [ns.metadata.name for ns in v1.list_namespace().items]
    assert "default" in namespaces and "kube-system" in namespaces, namespaces

    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"k": "v"})
    created = v1.create_namespaced_config_map("default", cm)
    assert created.metadata.uid, created
    assert created.metadata.resource_version, created

    listed = v1.list_namespaced_config_map("default", label_selector="from=python")
    assert [c.metadata.name for c in listed.items] == ["py-cm"], listed.items

    seen = []
    w = watch.Watch()

    def make_later():
        time.sleep(1.0)
        v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm-2", labels={"from": "python"})))
        v1.patch_namespaced_config_map("py-cm", "default", {"data": {"k": "changed"}})

    t = threading.Thread(target=make_later)
    t.start()
    for event in w.stream(v1.list_namespaced_config_map, "default", label_selector="from=python",
                          resource_version=listed.metadata.resource_version, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) >= 2:
            w.stop()
    t.join()
    assert ("ADDED", "py-cm-2") in seen, seen
    assert ("MODIFIED", "py-cm") in seen, seen

    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-deploy"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "py"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    d = apps.create_namespaced_deployment("default", dep)
    assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
    assert d.spec.template.spec.containers[0].image_pull_policy == "Always"

    check_deletes(v1)
    check_component_statuses(v1)

    try:
        v1.read_namespaced_config_map("missing", "default")
        raise AssertionError("expected a 404")
    except client.exceptions.ApiException as e:
        assert e.status == 404, e
    print("python client: ok")


def check_deletes(v1) -> None:
    """Kinds whose registry returns deleted objects answer DELETE with the typed object, which
    the generated client parses as such; the others with a success Status."""
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-svc"),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], selector={"app": "py"}),
    )
    v1.create_namespaced_service("default", svc)
    deleted = v1.delete_namespaced_service("py-svc", "default")
    assert isinstance(deleted, client.V1Service), type(deleted)
    assert deleted.metadata.name == "py-svc" and deleted.spec.ports[0].port == 80, deleted

    sa = v1.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="py-sa")))
    deleted = v1.delete_namespaced_service_account("py-sa", "default")
    assert isinstance(deleted, client.V1ServiceAccount), type(deleted)
    assert deleted.metadata.uid == sa.metadata.uid, deleted

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-pod"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    v1.create_namespaced_pod("default", pod)
    deleted = v1.delete_namespaced_pod("py-pod", "default", grace_period_seconds=0)
    assert isinstance(deleted, client.V1Pod), type(deleted)
    assert deleted.metadata.name == "py-pod", deleted

    v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-gone")))
    status = v1.delete_namespaced_config_map("py-gone", "default")
    assert isinstance(status, client.V1Status) and status.status == "Success", status
    assert status.details.name == "py-gone" and status.details.kind == "configmaps", status


def check_component_statuses(v1) -> None:
    """componentstatuses (deprecated, still served): the three entries, each with a condition."""
    names = {}
    deadline = time.time() + 20
    while time.time() < deadline:
        listed = v1.list_component_status()
        names = {c.metadata.name: c.conditions[0].status for c in listed.items}
        if set(names) == {"scheduler", "controller-manager", "etcd-0"} and all(s == "True" for s in names.values()):
            break
        time.sleep(0.2)
    assert set(names) == {"scheduler", "controller-manager", "etcd-0"}, names
    assert all(s == "True" for s in names.values()), names
    one = v1.read_component_status("etcd-0")
    assert one.conditions[0].type == "Healthy" and one.conditions[0].message == "ok", one


if __name__ == "__main__":
    main(sys.argv[1])
