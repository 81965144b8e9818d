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

    try:
        v1.read_namespaced_config_map("missing", "default")
        raise AssertionError("expected a 404")
    except client.exceptions.ApiException as e:
        assert e.status == 404, e
    print("python client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
