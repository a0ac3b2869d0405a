"""
The container and Kubernetes manifests of C{deploy/} (issue 8), checked
offline: each overlay is rendered as C{kustomize build} would (by
L{tests.deploy.kustomize}, compared with C{kubectl kustomize} where kubectl
is installed), every manifest is validated against the Kubernetes API
schemas of L{KUBERNETES_VERSION} (C{kubernetes-validate}) or, for the
Prometheus Operator's resources, structurally; the gateway's own
configuration validation accepts each overlay's C{gateway.yaml} with the
environment the Deployment gives it; and the Deployment provides what that
configuration needs.
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import yaml
from twisted.trial.unittest import FailTest, SkipTest, TestCase

from alertgateway.config import ConfigError, GatewayConfig, parse_config, warnings_for
from tests.deploy.kustomize import Manifest, build
from tests.integration.harness import require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MONITORING = DEPLOY / "monitoring"
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


def _missing_monitoring() -> str | None:
    if (MONITORING / "kustomization.yaml").is_file() and (MONITORING / "prometheusrule.yaml").is_file():
        return None
    return (
        "deploy/monitoring/kustomization.yaml or prometheusrule.yaml is missing (written with the dashboard"
        " and alert rules); the production overlay includes it"
    )


@functools.cache
def _rendered(overlay: str) -> tuple[Manifest, ...]:
    if overlay == "production":
        missing = _missing_monitoring()
        if missing is not None:
            raise SkipTest(missing)
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


def environment(manifests: list[Manifest], container: dict[str, Any]) -> dict[str, str]:
    """
    The environment the container gets, its Secret references resolved
    against the overlay's Secrets.
    """
    secrets = secret_values(manifests)
    environ = {}
    for variable in container.get("env", []):
        if "value" in variable:
            environ[variable["name"]] = str(variable["value"])
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        key = (reference["name"], reference["key"])
        if key not in secrets:
            raise FailTest(f"{variable['name']} refers to {key}, which no Secret of the overlay holds")
        environ[variable["name"]] = secrets[key]
    return environ


def gateway_yaml(manifests: list[Manifest]) -> str:
    text = one(manifests, "ConfigMap", CONFIG_MAP)["data"]["gateway.yaml"]
    assert isinstance(text, str)
    return text


def gateway_config(manifests: list[Manifest]) -> GatewayConfig:
    """
    The overlay's gateway.yaml, through the gateway's own validation, with
    the environment of the Deployment.
    """
    environ = environment(manifests, gateway_container(manifests))
    try:
        return parse_config(gateway_yaml(manifests), environ, origin=f"ConfigMap {CONFIG_MAP}")
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


def _check_monitoring_resource(manifest: Manifest) -> list[str]:
    """
    A structural check of a Prometheus Operator resource, whose schema
    (a CRD) kubernetes-validate does not ship.
    """
    kind = manifest["kind"]
    where = f"{kind} {manifest.get('metadata', {}).get('name')}"
    problems = []
    if manifest.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{where}: apiVersion must be monitoring.coreos.com/v1")
    unknown = set(manifest) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        problems.append(f"{where}: unknown top-level keys {sorted(unknown)}")
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        problems.append(f"{where}: metadata.name is required")
    for key in ("labels", "annotations"):
        values = (metadata or {}).get(key) or {}
        if not all(isinstance(v, str) for v in values.values()):
            problems.append(f"{where}: metadata.{key} values must be strings")
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return [*problems, f"{where}: spec is required"]
    if kind == "ServiceMonitor":
        if not isinstance(spec.get("selector"), dict):
            problems.append(f"{where}: spec.selector is required")
        endpoints = spec.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            problems.append(f"{where}: spec.endpoints must list at least one endpoint")
        for index, endpoint in enumerate(endpoints or []):
            if not isinstance(endpoint, dict) or not ({"port", "targetPort"} & set(endpoint)):
                problems.append(f"{where}: spec.endpoints[{index}] needs port or targetPort")
    elif kind == "PrometheusRule":
        groups = spec.get("groups")
        if not isinstance(groups, list) or not groups:
            problems.append(f"{where}: spec.groups must list at least one group")
        for index, group in enumerate(groups or []):
            if not isinstance(group, dict) or not isinstance(group.get("name"), str):
                problems.append(f"{where}: spec.groups[{index}].name is required")
                continue
            for number, rule in enumerate(group.get("rules") or []):
                if not isinstance(rule, dict) or not isinstance(rule.get("expr"), str | int):
                    problems.append(f"{where}: spec.groups[{index}].rules[{number}].expr is required")
                elif ("alert" in rule) == ("record" in rule):
                    problems.append(f"{where}: spec.groups[{index}].rules[{number}] needs alert or record")
    else:
        problems.append(f"{where}: unexpected monitoring.coreos.com kind")
    return problems


class RenderingTests(TestCase):
    """
    The overlays render, and the renderer agrees with kustomize itself.
    """

    def test_matches_kubectl_kustomize(self) -> None:
        """
        Where kubectl is installed, C{kubectl kustomize} renders exactly the
        manifests the Python renderer does, for the base and each overlay.
        """
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise SkipTest("kubectl not installed: the Python renderer is checked by tests.deploy.test_kustomize")
        for overlay, directory in OVERLAYS.items():
            if overlay == "production" and _missing_monitoring() is not None:
                continue
            result = subprocess.run(
                [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
            )
            self.assertEqual(result.returncode, 0, f"{overlay}: {result.stderr}")
            theirs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
            self.assertEqual(rendered(overlay), theirs, overlay)

    def test_one_namespace(self) -> None:
        """
        Each overlay puts everything namespaced in one namespace, the one
        its Namespace object creates.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            [namespace] = [m["metadata"]["name"] for m in find(manifests, "Namespace")]
            for manifest in manifests:
                if manifest["kind"] != "Namespace":
                    self.assertEqual(manifest["metadata"].get("namespace"), namespace, manifest["metadata"])


class SchemaTests(TestCase):
    """
    Every rendered manifest is one the Kubernetes API accepts.
    """

    def test_kubernetes_schemas(self) -> None:
        """
        Every manifest of every overlay validates, strictly (no unknown
        fields), against the Kubernetes OpenAPI schemas; Prometheus
        Operator resources are checked structurally instead.
        """
        validator = kubernetes_validate()
        problems = []
        for overlay in OVERLAYS:
            for manifest in rendered(overlay):
                where = f"{overlay}: {manifest['kind']} {manifest['metadata']['name']}"
                if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
                    problems += [f"{overlay}: {p}" for p in _check_monitoring_resource(manifest)]
                    continue
                try:
                    validator.validate(manifest, KUBERNETES_VERSION, strict=True)
                except validator.ValidationError as e:
                    path = ".".join(str(part) for part in e.path)
                    problems.append(f"{where}: {path}: {e.message}")
                except validator.SchemaNotFoundError:
                    problems.append(f"{where}: {manifest['apiVersion']} is not in Kubernetes {KUBERNETES_VERSION}")
        self.assertEqual(problems, [])

    def test_structural_check_catches_mistakes(self) -> None:
        """
        The structural check of Prometheus Operator resources refuses a
        rule without an expression and a ServiceMonitor without endpoints.
        """
        rule: Manifest = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": "x"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]},
        }
        monitor: Manifest = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": "x"},
            "spec": {"selector": {}, "endpoints": []},
        }
        self.assertEqual(len(_check_monitoring_resource(rule)), 1)
        self.assertEqual(len(_check_monitoring_resource(monitor)), 1)

    def test_kubernetes_schemas_catch_mistakes(self) -> None:
        """
        The schema validation is strict: a misspelt security setting in the
        Deployment is refused.
        """
        validator = kubernetes_validate()
        deployment = gateway(rendered("base"))
        deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
        self.assertRaises(validator.ValidationError, validator.validate, deployment, KUBERNETES_VERSION, True)
        # The cached rendering is untouched.
        self.assertNotIn("readOnlyRootFilesytem", gateway_container(rendered("base"))["securityContext"])


class GatewayConfigTests(TestCase):
    """
    Each overlay's gateway.yaml is one the gateway starts with, and the
    Deployment provides what it needs.
    """

    def test_config_valid(self) -> None:
        """
        C{parse_config} accepts every overlay's gateway.yaml with the
        environment the Deployment gives the gateway (its Secret references
        resolved), and finds nothing to warn about.
        """
        for overlay in OVERLAYS:
            config = gateway_config(rendered(overlay))
            self.assertEqual(warnings_for(config), [], overlay)

    def test_every_secret_variable_used(self) -> None:
        """
        The init container checks the configuration with the same
        environment as the gateway, and every variable the configuration
        names (C{*_env}) is set from a Secret.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            spec = gateway(manifests)["spec"]["template"]["spec"]
            [init] = spec["initContainers"]
            self.assertEqual(init["env"], gateway_container(manifests)["env"], overlay)
            named = set(re.findall(r"_env:\s*(\w+)", gateway_yaml(manifests)))
            self.assertLessEqual(named, set(environment(manifests, init)), overlay)

    def test_command_and_config_mount(self) -> None:
        """
        The gateway runs the image's command, on the configuration file
        the ConfigMap holds, mounted read-only at /etc/alertgateway.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            container = gateway_container(manifests)
            command = container["command"]
            self.assertEqual(command[:4], ["twistd", "-n", "--pidfile=", "alertgateway"])
            self.assertEqual(command[command.index("--config") + 1], CONFIG_PATH)
            path, mount = mount_of(CONFIG_PATH, mounts(gateway(manifests), container))
            self.assertEqual(path, "/etc/alertgateway")
            self.assertTrue(mount["readOnly"])
            source = mount["volume"]["configMap"]
            self.assertEqual(source["name"], CONFIG_MAP)
            [item] = source.get("items", [{"key": "gateway.yaml", "path": "gateway.yaml"}])
            self.assertEqual((item["key"], item["path"]), ("gateway.yaml", "gateway.yaml"))

    def test_writable_paths(self) -> None:
        """
        Everything the configuration writes (the SQLite queue, a file
        sink) is on a writable volume, since the root filesystem is
        read-only.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            config = gateway_config(manifests)
            paths = [config.queue.path]
            if config.alert_processor.endpoint.startswith("file:"):
                paths.append(config.alert_processor.endpoint[len("file:") :])
            for path in paths:
                self.assertTrue(path.startswith("/"), f"{overlay}: {path} depends on the working directory")
                writable(path, gateway(manifests), gateway_container(manifests))

    def test_termination_grace(self) -> None:
        """
        The kubelet waits longer than the preStop pause plus
        C{service.shutdown_grace}, so the queue drains before it kills.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            config = gateway_config(manifests)
            container = gateway_container(manifests)
            pause = 0.0
            command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
            if command:
                self.assertEqual(command[0], "sleep")
                pause = seconds(command[1])
            grace = gateway(manifests)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            self.assertGreater(grace, pause + config.service.shutdown_grace, overlay)

    def test_probes(self) -> None:
        """
        Liveness asks /health/live and readiness /health/ready, over plain
        HTTP on the port the webhook listener binds.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            config = gateway_config(manifests)
            container = gateway_container(manifests)
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            self.assertEqual(config.service.listen, ())
            self.assertFalse(config.security.tls_enabled)
            for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                check = container[probe]["httpGet"]
                self.assertEqual(check["path"], path)
                self.assertEqual(check.get("scheme", "HTTP"), "HTTP")
                self.assertEqual(ports.get(check["port"], check["port"]), config.service.port, overlay)

    def test_ports(self) -> None:
        """
        The Service exposes 8080 (webhooks) and 9090 (metrics), the
        container ports the configuration listens on; the ServiceMonitor
        scrapes the metrics port at the configured path; the Ingress sends
        to the Service's webhook port.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            config = gateway_config(manifests)
            container_ports = {p["name"]: p["containerPort"] for p in gateway_container(manifests)["ports"]}
            self.assertEqual(container_ports, {"http": config.service.port, "metrics": config.metrics.port})
            self.assertEqual((config.service.port, config.metrics.port), (8080, 9090))
            service = one(manifests, "Service", "alertgateway")
            service_ports = {p["name"]: p for p in service["spec"]["ports"]}
            self.assertEqual({n: p["port"] for n, p in service_ports.items()}, {"http": 8080, "metrics": 9090})
            for name, port in service_ports.items():
                self.assertIn(port["targetPort"], (name, container_ports[name]))
            [endpoint] = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
            self.assertIn(endpoint["port"], service_ports)
            self.assertEqual(endpoint["path"], config.metrics.path)
            for ingress in find(manifests, "Ingress"):
                self.assertTrue(ingress["spec"]["tls"])
                for secret in ingress["spec"]["tls"]:
                    one(rendered("base"), "Secret", secret["secretName"])
                for rule in ingress["spec"]["rules"]:
                    for path in rule["http"]["paths"]:
                        backend = path["backend"]["service"]
                        self.assertEqual(backend["name"], "alertgateway")
                        self.assertEqual(backend["port"]["number"], 8080)
                        self.assertTrue(any(e.path.startswith(path["path"]) for e in config.webhook.endpoints))

    def test_selectors(self) -> None:
        """
        The Service, PodDisruptionBudget, NetworkPolicy and ServiceMonitor
        select the gateway pods (and the Service only those); the
        autoscaler scales the Deployment, never past the queue's partitions.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            deployment = gateway(manifests)
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            selector = deployment["spec"]["selector"]["matchLabels"]
            self.assertLessEqual(selector.items(), labels.items())
            chosen = [
                one(manifests, "Service", "alertgateway")["spec"]["selector"],
                one(manifests, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                one(manifests, "NetworkPolicy", "alertgateway")["spec"]["podSelector"]["matchLabels"],
            ]
            for matched in chosen:
                self.assertLessEqual(matched.items(), labels.items(), overlay)
            monitor = one(manifests, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
            service_labels = one(manifests, "Service", "alertgateway")["metadata"]["labels"]
            self.assertLessEqual(monitor.items(), service_labels.items())
            for other in find(manifests, "Service"):
                if other["metadata"]["name"] != "alertgateway":
                    self.assertNotEqual(other["metadata"]["labels"], service_labels)
            config = gateway_config(manifests)
            for hpa in find(manifests, "HorizontalPodAutoscaler"):
                target = hpa["spec"]["scaleTargetRef"]
                self.assertEqual((target["kind"], target["name"]), ("Deployment", "alertgateway"))
                self.assertGreaterEqual(hpa["spec"]["minReplicas"], deployment["spec"]["replicas"])
                self.assertLessEqual(hpa["spec"]["maxReplicas"], config.queue.redis.partitions)
                self.assertEqual(config.state.backend, "redis", "replicas need shared state")

    def test_resources(self) -> None:
        """
        The gateway has the work plan's requests and limits (64Mi/50m,
        128Mi/200m); every container has requests and limits.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            self.assertEqual(
                gateway_container(manifests)["resources"],
                {"requests": {"memory": "64Mi", "cpu": "50m"}, "limits": {"memory": "128Mi", "cpu": "200m"}},
            )
            for workload in find(manifests, "Deployment") + find(manifests, "StatefulSet"):
                for container in pod_containers(workload):
                    self.assertEqual(set(container["resources"]), {"requests", "limits"}, container["name"])

    def test_security_context(self) -> None:
        """
        Every container of every workload runs as non-root, with a
        read-only root filesystem, no privilege escalation and no
        capabilities.
        """
        for overlay in OVERLAYS:
            for workload in find(rendered(overlay), "Deployment") + find(rendered(overlay), "StatefulSet"):
                pod = workload["spec"]["template"]["spec"]
                self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
                self.assertNotEqual(pod["securityContext"].get("runAsUser"), 0)
                for container in pod_containers(workload):
                    context = container["securityContext"]
                    where = f"{overlay}: {workload['metadata']['name']}/{container['name']}"
                    self.assertTrue(context["readOnlyRootFilesystem"], where)
                    self.assertTrue(context.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot")), where)
                    self.assertFalse(context["allowPrivilegeEscalation"], where)
                    self.assertEqual(context["capabilities"], {"drop": ["ALL"]}, where)
                self.assertFalse(pod["automountServiceAccountToken"])


class SecretTests(TestCase):
    """
    Example secrets are marked, and pods refuse to start with them.
    """

    def test_base_secrets_are_placeholders(self) -> None:
        """
        Every value of the base's Secrets is an example marked REPLACE_ME.
        """
        values = shipped_secret_values(rendered("base"))
        self.assertTrue(values)
        for key, value in values.items():
            self.assertIn(PLACEHOLDER, value, key)

    def test_init_container_refuses_placeholders(self) -> None:
        """
        The init container's script exits non-zero, naming the variables,
        while a Secret still holds REPLACE_ME; otherwise it runs
        C{alertgateway check-config} on the mounted configuration.
        """
        [init] = gateway(rendered("base"))["spec"]["template"]["spec"]["initContainers"]
        self.assertEqual(init["command"][:2], ["python", "-c"])
        script = init["command"][2]
        self.assertIn(f'"alertgateway", "check-config", "{CONFIG_PATH}"', script)
        environ = environment(rendered("base"), init) | {"PATH": os.environ.get("PATH", "")}
        result = subprocess.run(
            [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=30, check=False
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("GRAFANA_HMAC_SECRET, REDIS_PASSWORD, WEBHOOK_TOKEN", result.stderr)

    def test_dev_secrets_pass(self) -> None:
        """
        The dev overlay's (public, development-only) secrets are not
        placeholders, so its pods start; it has no Ingress to expose them.
        """
        manifests = rendered("dev")
        values = shipped_secret_values(manifests)
        self.assertEqual(set(values), {k for k in shipped_secret_values(rendered("base")) if k[0] != "gateway-tls"})
        for key, value in values.items():
            self.assertNotIn(PLACEHOLDER, value, key)
        self.assertEqual(find(manifests, "Ingress"), [])

    def test_production_ships_no_secrets(self) -> None:
        """
        production applies no Secret, so C{kubectl apply -k} never replaces
        the real ones (created beforehand) with the base's examples.
        """
        self.assertEqual(find(rendered("production"), "Secret"), [])


class OverlayTests(TestCase):
    """
    What distinguishes dev from production.
    """

    def test_dev(self) -> None:
        """
        dev: one replica with its state and queue in SQLite on an
        emptyDir, no autoscaler (which would add replicas).
        """
        manifests = rendered("dev")
        config = gateway_config(manifests)
        self.assertEqual(gateway(manifests)["spec"]["replicas"], 1)
        self.assertEqual((config.state.backend, config.queue.backend), ("sqlite", "sqlite"))
        volume = writable(config.queue.path, gateway(manifests), gateway_container(manifests))
        self.assertIn("emptyDir", volume)
        self.assertEqual(find(manifests, "HorizontalPodAutoscaler"), [])
        self.assertFalse(gateway_container(manifests)["image"].endswith(":latest"))

    def test_production(self) -> None:
        """
        production: three replicas sharing Redis state and queue; the
        Redis they name runs in the overlay, on a persistent volume with
        append-only persistence (the same redis.conf as deploy/redis), with
        the password the gateways use.
        """
        manifests = rendered("production")
        config = gateway_config(manifests)
        self.assertEqual(gateway(manifests)["spec"]["replicas"], 3)
        self.assertEqual((config.state.backend, config.queue.backend), ("redis", "redis"))
        url = re.fullmatch(r"redis://([\w.-]+):(\d+)/\d+", config.state.redis.url)
        assert url is not None, config.state.redis.url
        service = one(manifests, "Service", url.group(1))
        self.assertIn(int(url.group(2)), [p["port"] for p in service["spec"]["ports"]])
        redis = one(manifests, "StatefulSet", "alertgateway-redis")
        self.assertLessEqual(
            service["spec"]["selector"].items(), redis["spec"]["template"]["metadata"]["labels"].items()
        )
        self.assertEqual(redis["spec"]["replicas"], 1)
        self.assertEqual(redis["spec"]["serviceName"], "alertgateway-redis-headless")
        one(manifests, "Service", "alertgateway-redis-headless")

        conf = one(manifests, "ConfigMap", "alertgateway-redis")["data"]["redis.conf"]
        self.assertEqual(conf, (DEPLOY / "redis" / "redis.conf").read_text(encoding="utf-8"))
        directives = [line.split() for line in conf.splitlines() if line.strip() and not line.startswith("#")]
        self.assertIn(["appendonly", "yes"], directives)
        self.assertIn(["maxmemory-policy", "noeviction"], directives)

        [container] = redis["spec"]["template"]["spec"]["containers"]
        script = container["command"][-1]
        self.assertIn("include /etc/redis/redis.conf", script)
        self.assertIn("dir /data", script)
        self.assertIn('requirepass %s\\n\' "$REDIS_PASSWORD"', script)
        found = mounts(redis, container)
        self.assertIn("persistentVolumeClaim", found["/data"][1])
        self.assertEqual(found["/etc/redis"][1]["configMap"]["name"], "alertgateway-redis")
        writable("/run/redis/redis.conf", redis, container)
        self.assertEqual(
            environment(manifests, container)["REDIS_PASSWORD"],
            environment(manifests, gateway_container(manifests))["REDIS_PASSWORD"],
        )
        self.assertNotIn(":", gateway_container(manifests)["image"].rpartition("/")[0])
        self.assertTrue(gateway_container(manifests)["image"].startswith("registry.example.com/"))

    def test_production_monitoring(self) -> None:
        """
        production includes the gateway's PrometheusRule (named
        alertgateway) and the Grafana dashboard from deploy/monitoring.
        """
        manifests = rendered("production")
        rule = one(manifests, "PrometheusRule", "alertgateway")
        self.assertTrue(rule["spec"]["groups"])
        self.assertTrue(any("dashboard" in m["metadata"]["name"] for m in find(manifests, "ConfigMap")))

    def test_promtool_check_rules(self) -> None:
        """
        C{promtool check rules} accepts the PrometheusRule's groups.
        """
        missing = _missing_monitoring()
        if missing is not None:
            raise SkipTest(missing)
        promtool = require_binary("promtool", "prometheus")
        [rule] = [m for m in build(MONITORING) if m["kind"] == "PrometheusRule"]
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "rules.yaml"
            path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
            result = subprocess.run(
                [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
            )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class ContainerTests(TestCase):
    """
    The Dockerfile agrees with the manifests (it is not built here: no
    Docker engine in CI).
    """

    def dockerfile(self) -> list[str]:
        """
        The Dockerfile's instructions, continuation lines joined, comments
        left out.
        """
        text = (REPO / "Dockerfile").read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        return [" ".join(i.split()) for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]

    def instruction(self, name: str) -> list[str]:
        return [line[len(name) + 1 :] for line in self.dockerfile() if line.startswith(f"{name} ")]

    def test_dockerfile(self) -> None:
        """
        The image: python 3.11 slim bookworm, the command the Deployment
        runs, ports 8080 and 9090, the non-root user the pods run as, a
        HEALTHCHECK on /health/live and the plugin cache written at build.
        """
        self.assertEqual(self.instruction("FROM"), ["python:3.11-slim-bookworm"])
        command = yaml.safe_load(self.instruction("CMD")[0])
        self.assertEqual(command, gateway_container(rendered("base"))["command"])
        self.assertEqual(self.instruction("EXPOSE"), ["8080 9090"])
        [user] = self.instruction("USER")
        pod = gateway(rendered("base"))["spec"]["template"]["spec"]["securityContext"]
        self.assertEqual(user, f"{pod['runAsUser']}:{pod['runAsGroup']}")
        [healthcheck] = self.instruction("HEALTHCHECK")
        self.assertIn("http://127.0.0.1:8080/health/live", healthcheck)
        lines = self.dockerfile()
        [cache] = [i for i, line in enumerate(lines) if "list(getPlugins(IPlugin))" in line]
        self.assertTrue(lines[cache].startswith("RUN pip install . "), "the cache is written after installing")
        self.assertLess(cache, lines.index(f"USER {user}"), "the cache is written as root")
        self.assertIn("/var/lib/alertgateway", " ".join(self.instruction("RUN")))

    def test_healthcheck_script(self) -> None:
        """
        The HEALTHCHECK's Python exits 0 on a 200 from /health/live and
        non-zero when nothing answers.
        """
        [healthcheck] = self.instruction("HEALTHCHECK")
        script = yaml.safe_load(healthcheck[healthcheck.index("CMD ") + 4 :])[2]
        self.assertIn("urlopen", script)
        refused = subprocess.run(
            [sys.executable, "-c", script.replace("127.0.0.1:8080", "127.0.0.1:9")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        self.assertNotEqual(refused.returncode, 0)

    def test_image_config(self) -> None:
        """
        The configuration baked into the image is valid (given the token
        it requires) and writes only under /var/lib/alertgateway.
        """
        text = (DEPLOY / "docker" / "gateway.yaml").read_text(encoding="utf-8")
        config = parse_config(text, {"WEBHOOK_TOKEN": "t"})
        self.assertEqual(warnings_for(config), [])
        self.assertTrue(config.queue.path.startswith("/var/lib/alertgateway/"))
        self.assertTrue(config.alert_processor.endpoint.startswith("file:/var/lib/alertgateway/"))
        with self.assertRaises(ConfigError):
            parse_config(text, {})

    def test_dockerignore(self) -> None:
        """
        The build context holds what C{pip install .} reads and the
        image's configuration, and leaves the virtualenv and tests out.
        """
        rules = [
            line.strip()
            for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        self.assertEqual(rules[0], "*")
        copied = {path for line in self.dockerfile() if line.startswith("COPY ") for path in line.split()[1:-1]}
        for path in copied:
            self.assertIn(f"!{path.rstrip('/')}", rules)
        for needed in ("pyproject.toml", "setup.cfg", "README.md", "alertgateway", "twisted"):
            self.assertIn(f"!{needed}", rules)
