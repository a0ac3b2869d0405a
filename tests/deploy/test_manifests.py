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

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SkipTest, TestCase

from alertgateway.config import ConfigError, parse_config, warnings_for
from tests.deploy.kustomize import Manifest, load_documents
from tests.deploy.manifests import (
    CONFIG_MAP,
    CONFIG_PATH,
    DEPLOY,
    KUBERNETES_VERSION,
    MONITORING,
    OVERLAYS,
    PLACEHOLDER,
    REPO,
    config_map,
    environment,
    find,
    gateway,
    gateway_config,
    gateway_container,
    gateway_yaml,
    kubernetes_validate,
    mount_of,
    mounts,
    one,
    pod_containers,
    rendered,
    seconds,
    shipped_secret_values,
    writable,
)
from tests.integration.harness import require_binary


def _check_custom_resource(manifest: Manifest) -> list[str]:
    """
    A structural check of a Prometheus Operator or cert-manager resource,
    whose schema (a CRD) kubernetes-validate does not ship.
    """
    kind = manifest["kind"]
    where = f"{kind} {manifest.get('metadata', {}).get('name')}"
    problems = []
    group = "cert-manager.io/v1" if kind in ("Certificate", "Issuer") else "monitoring.coreos.com/v1"
    if manifest.get("apiVersion") != group:
        problems.append(f"{where}: apiVersion must be {group}")
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
    elif kind == "Certificate":
        problems += _check_certificate(where, spec)
    elif kind == "Issuer":
        if len({"selfSigned", "ca", "acme", "vault", "venafi"} & set(spec)) != 1:
            problems.append(f"{where}: spec needs exactly one issuer type")
        if "ca" in spec and not isinstance(spec["ca"].get("secretName"), str):
            problems.append(f"{where}: spec.ca.secretName is required")
    else:
        problems.append(f"{where}: unexpected kind")
    return problems


def _check_certificate(where: str, spec: dict[str, Any]) -> list[str]:
    problems = []
    if not isinstance(spec.get("secretName"), str):
        problems.append(f"{where}: spec.secretName is required")
    reference = spec.get("issuerRef")
    if not isinstance(reference, dict) or not isinstance(reference.get("name"), str):
        problems.append(f"{where}: spec.issuerRef.name is required")
    elif reference.get("kind", "Issuer") not in ("Issuer", "ClusterIssuer"):
        problems.append(f"{where}: spec.issuerRef.kind must be Issuer or ClusterIssuer")
    if not spec.get("isCA") and not spec.get("dnsNames"):
        problems.append(f"{where}: a serving certificate needs spec.dnsNames")
    for key in ("duration", "renewBefore"):
        if key in spec and not re.fullmatch(r"(\d+h)?(\d+m)?(\d+s)?", str(spec[key])):
            problems.append(f"{where}: spec.{key} must be a Go duration such as 2160h")
    known = {"server auth", "client auth", "digital signature", "key encipherment", "cert sign", "crl sign"}
    for usage in spec.get("usages", []):
        if usage not in known:
            problems.append(f"{where}: unknown usage {usage!r}")
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
                if manifest["apiVersion"].startswith(("monitoring.coreos.com/", "cert-manager.io/")):
                    problems += [f"{overlay}: {p}" for p in _check_custom_resource(manifest)]
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
        The structural check of custom resources refuses a rule without an
        expression, a ServiceMonitor without endpoints, and a serving
        Certificate without names and with a duration Go cannot read.
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
        certificate: Manifest = {
            "apiVersion": "cert-manager.io/v1",
            "kind": "Certificate",
            "metadata": {"name": "x"},
            "spec": {"secretName": "x", "issuerRef": {"name": "ca"}, "duration": "90d"},
        }
        self.assertEqual(len(_check_custom_resource(rule)), 1)
        self.assertEqual(len(_check_custom_resource(monitor)), 1)
        self.assertEqual(len(_check_custom_resource(certificate)), 2)

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
            [init] = [c for c in spec["initContainers"] if c["name"] == "check-config"]
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
            self.assertEqual(source["name"], config_map(manifests)["metadata"]["name"])
            self.assertTrue(source["name"].startswith(f"{CONFIG_MAP}-"), "a name kustomize generated")
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
        Liveness asks /health/live and readiness /health/ready, over HTTPS
        (the kubelet does not verify the certificate) on the port the
        webhook listener binds with TLS.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            config = gateway_config(manifests)
            container = gateway_container(manifests)
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            self.assertEqual(config.service.listen, ())
            self.assertTrue(config.security.tls_enabled)
            for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                check = container[probe]["httpGet"]
                self.assertEqual(check["path"], path)
                self.assertEqual(check.get("scheme", "HTTP"), "HTTPS")
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
            self.assertEqual(container_ports, {"https": config.service.port, "metrics": config.metrics.port})
            self.assertEqual((config.service.port, config.metrics.port), (8080, 9090))
            service = one(manifests, "Service", "alertgateway")
            service_ports = {p["name"]: p for p in service["spec"]["ports"]}
            self.assertEqual({n: p["port"] for n, p in service_ports.items()}, {"https": 8080, "metrics": 9090})
            for name, port in service_ports.items():
                self.assertIn(port["targetPort"], (name, container_ports[name]))
            for monitor in find(manifests, "ServiceMonitor"):
                [endpoint] = monitor["spec"]["endpoints"]
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
            service_labels = one(manifests, "Service", "alertgateway")["metadata"]["labels"]
            for monitor in find(manifests, "ServiceMonitor"):
                self.assertLessEqual(monitor["spec"]["selector"]["matchLabels"].items(), service_labels.items())
            for other in find(manifests, "Service"):
                if other["metadata"]["name"] != "alertgateway":
                    self.assertNotEqual(other["metadata"]["labels"], service_labels)
            config = gateway_config(manifests)
            for hpa in find(manifests, "HorizontalPodAutoscaler"):
                target = hpa["spec"]["scaleTargetRef"]
                self.assertEqual((target["kind"], target["name"]), ("Deployment", "alertgateway"))
                self.assertLessEqual(hpa["spec"]["maxReplicas"], config.queue.redis.partitions)
                self.assertEqual(config.state.backend, "redis", "replicas need shared state")

    def test_resources(self) -> None:
        """
        Every container has requests and limits (the gateway's are sized
        in L{tests.deploy.test_platform}).
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
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
        certificates = ("gateway-tls", "alertgateway-tls")
        self.assertEqual(set(values), {k for k in shipped_secret_values(rendered("base")) if k[0] not in certificates})
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
        self.assertEqual(one(manifests, "HorizontalPodAutoscaler")["spec"]["minReplicas"], 3)
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

        [volume] = [v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        self.assertTrue(volume["configMap"]["name"].startswith("alertgateway-redis-"), "a generated name")
        conf = one(manifests, "ConfigMap", volume["configMap"]["name"])["data"]["redis.conf"]
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
        self.assertEqual(found["/etc/redis"][1]["configMap"]["name"], volume["configMap"]["name"])
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
        promtool = require_binary("promtool", "prometheus")
        [rule] = load_documents(MONITORING / "prometheusrule.yaml")
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
