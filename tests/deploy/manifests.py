"""
The manifests of C{deploy/} as the tests read them: each overlay rendered
(L{tests.deploy.kustomize}), and what its gateway gets in a pod: the
configuration its volume mounts, the environment its Secrets give, the
files its certificate volume holds, its mounts.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

from twisted.trial.unittest import FailTest, SkipTest

from alertgateway.config import ConfigError, GatewayConfig, parse_config
from tests.deploy.kustomize import Manifest, build
from tests.integration._certs import Authority, write_pem

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MONITORING = DEPLOY / "monitoring"
CERT_MANAGER = DEPLOY / "cert-manager"
OVERLAYS = {
    "base": DEPLOY / "base",
    "dev": DEPLOY / "overlays" / "dev",
    "production": DEPLOY / "overlays" / "production",
}
# Shipped by kubernetes-validate (it bundles 1.25 to 1.37); the oldest
# Kubernetes release the manifests are meant for.
KUBERNETES_VERSION = "1.30.0"
CONFIG_MAP = "alertgateway-config"
CONFIG_PATH = "/etc/alertgateway/gateway.yaml"
PLACEHOLDER = "REPLACE_ME"


@functools.cache
def _rendered(overlay: str) -> tuple[Manifest, ...]:
    return tuple(build(OVERLAYS[overlay]))


def rendered(overlay: str) -> list[Manifest]:
    """
    The manifests of an overlay (or the base), as kustomize renders them: a
    copy each test may change.
    """
    return copy.deepcopy(list(_rendered(overlay)))


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    if len(found) != 1:
        raise FailTest(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def gateway(manifests: list[Manifest]) -> Manifest:
    return one(manifests, "Deployment", "alertgateway")


def gateway_container(manifests: list[Manifest]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = gateway(manifests)["spec"]["template"]["spec"]["containers"]
    [container] = [c for c in containers if c["name"] == "gateway"]
    return container


def pod_containers(workload: Manifest) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def shipped_secret_values(manifests: list[Manifest]) -> dict[tuple[str, str], str]:
    """
    Every value of the Secrets the manifests hold, by (secret name, key),
    from C{stringData}.
    """
    values = {}
    for secret in find(manifests, "Secret"):
        for key, value in (secret.get("stringData") or {}).items():
            values[(secret["metadata"]["name"], key)] = str(value)
    return values


def secret_values(manifests: list[Manifest]) -> dict[tuple[str, str], str]:
    """
    The Secret values pods of these manifests get: their own Secrets', else
    the base's examples (which document the Secrets an overlay expects to
    be created beforehand, as production does).
    """
    return shipped_secret_values(rendered("base")) | shipped_secret_values(manifests)


def environment(
    manifests: list[Manifest], container: dict[str, Any], given: Mapping[str, Mapping[str, bytes]] | None = None
) -> dict[str, str]:
    """
    The environment the container gets, its Secret references resolved
    against the Secrets C{given} (by name, then key), else the overlay's.
    """
    secrets = secret_values(manifests) | {
        (name, key): value.decode() for name, values in (given or {}).items() for key, value in values.items()
    }
    environ = {}
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = str(variable["value"])
            continue
        if "fieldRef" in variable["valueFrom"]:
            # The downward API: only the pod's namespace is used here.
            assert variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", variable
            environ[variable["name"]] = gateway(manifests)["metadata"]["namespace"]
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        key = (reference["name"], reference["key"])
        if key not in secrets:
            raise FailTest(f"{variable['name']} refers to {key}, which no Secret of the overlay holds")
        environ[variable["name"]] = secrets[key]
    return environ


def config_map(manifests: list[Manifest]) -> Manifest:
    """
    The ConfigMap the gateway's configuration volume mounts (its generated,
    hash-suffixed name).
    """
    [volume] = [v for v in gateway(manifests)["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    return one(manifests, "ConfigMap", volume["configMap"]["name"])


def gateway_yaml(manifests: list[Manifest]) -> str:
    text = config_map(manifests)["data"]["gateway.yaml"]
    assert isinstance(text, str)
    return text


def tls_mount(manifests: list[Manifest]) -> str:
    """
    Where the gateway container mounts its certificate (the tls volume).
    """
    [mount] = [m for m in gateway_container(manifests)["volumeMounts"] if m["name"] == "tls"]
    path: str = mount["mountPath"]
    return path


@functools.cache
def _pod_certificate() -> Path:
    """
    A directory holding what the tls volume holds in a pod (C{tls.crt},
    C{tls.key}, C{ca.crt}), made by a test CA, for reading the
    configuration where no pod runs.
    """
    directory = Path(tempfile.mkdtemp(prefix="alertgateway-pod-tls-"))
    authority = Authority("alertgateway-ca")
    issued = authority.issue("alertgateway", dns=["alertgateway"])
    write_pem(directory / "tls.crt", issued.cert_pem)
    write_pem(directory / "tls.key", issued.key_pem)
    write_pem(directory / "ca.crt", authority.cert_pem)
    return directory


def gateway_config(manifests: list[Manifest]) -> GatewayConfig:
    """
    The overlay's gateway.yaml, through the gateway's own validation, with
    the environment of the Deployment and, where it names its certificate,
    the files a test CA made (the Secret or the init container makes them
    in a pod).
    """
    environ = environment(manifests, gateway_container(manifests))
    text = gateway_yaml(manifests).replace(tls_mount(manifests) + "/", f"{_pod_certificate()}/")
    try:
        return parse_config(text, environ, origin=f"ConfigMap {config_map(manifests)['metadata']['name']}")
    except ConfigError as e:
        raise FailTest("\n".join(str(problem) for problem in e.problems)) from None


def mounts(workload: Manifest, container: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """
    A container's mounts by path: the mount and the pod's volume (or the
    StatefulSet's claim template) it mounts.
    """
    spec = workload["spec"]
    volumes = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
    for claim in spec.get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": claim}
    found = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in volumes:
            raise FailTest(f"{container['name']} mounts {mount['name']}, which is not a volume of the pod")
        found[mount["mountPath"]] = (mount, volumes[mount["name"]])
    return found


def mount_of(path: str, found: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """
    The mount holding C{path}: the deepest mount path above it.
    """
    above = [m for m in found if PurePosixPath(path).is_relative_to(m)]
    if not above:
        raise FailTest(f"{path} is on no mounted volume (the root filesystem is read-only)")
    deepest = max(above, key=len)
    return deepest, found[deepest][0] | {"volume": found[deepest][1]}


def writable(path: str, workload: Manifest, container: dict[str, Any]) -> dict[str, Any]:
    mount_path, mount = mount_of(path, mounts(workload, container))
    if mount.get("readOnly"):
        raise FailTest(f"{path} is on {mount_path}, mounted read-only")
    volume: dict[str, Any] = mount["volume"]
    if not ({"emptyDir", "persistentVolumeClaim", "ephemeral"} & set(volume)):
        raise FailTest(f"{path} is on {mount_path}, which is not a writable volume: {volume}")
    return volume


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", value)
    if match is None:
        raise FailTest(f"not a duration: {value}")
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * factor


def kubernetes_validate() -> ModuleType:
    """
    The kubernetes-validate package (a test dependency).
    """
    try:
        return importlib.import_module("kubernetes_validate")
    except ImportError:
        message = "kubernetes-validate not installed: pip install '.[test]'"
        if os.environ.get("CI") == "true":
            raise FailTest(f"{message} (required when CI=true)") from None
        raise SkipTest(message) from None
