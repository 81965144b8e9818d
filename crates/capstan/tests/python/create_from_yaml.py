"""The Python `kubernetes` client's `utils.create_from_yaml` with a multi-document file.

Run as: python3 create_from_yaml.py <kubeconfig> <file.yaml>. Creates every document and
checks what came back; exits non-zero with a message on any mismatch.
"""
import sys

from kubernetes import client, config, utils


def main(kubeconfig: str, path: str) -> None:
    config.load_kube_config(config_file=kubeconfig)
    api = client.ApiClient()
    created = utils.create_from_yaml(api, path)
    kinds = [[type(o).__name__ for o in group] for group in created]
    assert kinds == [["V1Namespace"], ["V1ConfigMap"], ["V1Deployment"], ["V1Service"]], kinds
    deployment = created[2][0]
    assert deployment.metadata.uid, deployment.metadata
    assert deployment.spec.strategy.type == "RollingUpdate", deployment.spec.strategy
    service = created[3][0]
    assert service.spec.cluster_ip, service.spec

    # The same file again: every document already exists, reported as one FailToCreateError.
    try:
        utils.create_from_yaml(api, path)
        raise AssertionError("expected FailToCreateError")
    except utils.FailToCreateError as e:
        assert [err.status for err in e.api_exceptions] == [409, 409, 409, 409], e
    print("create_from_yaml: ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
