"""
The container contract: each overlay's gateway pod run for real, as the
Dockerfile and the Deployment describe it, in bubblewrap (L{tests.deploy.pod}):
the image's exact C{CMD} (and the init containers' commands) as uid 10001
on a read-only root with only the Deployment's writable mounts, the
overlay's rendered configuration and Secrets (values the test makes for
those the overlay expects to exist; a certificate for the Service's names,
as cert-manager would issue it), Redis started for production, in a
network namespace of its own where the services the configuration names
resolve to loopback.

It must: pass the init containers, become live and ready on its probes,
accept a webhook posted over TLS (verified for the Service's name) and
deliver it; once sent SIGTERM, answer readiness and a webhook 503 (with
Retry-After) and exit 0 within the grace period the kubelet leaves after
the preStop pause; and write nothing outside its writable mounts
(the root is read-only: a write anywhere else fails, and is looked for in
its output), within their size limits.

Where bubblewrap cannot run (no user namespaces, say) the tests skip and
say why; bubblewrap missing fails them under C{CI=true}, where
C{make system-deps} installs it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import FailTest, SkipTest, TestCase

from tests.deploy.kustomize import Manifest
from tests.deploy.manifests import REPO, gateway, gateway_config, gateway_yaml, one, rendered, seconds
from tests.deploy.pod import Container, Pod, container_argv, sandbox_problem
from tests.integration._certs import Authority
from tests.integration.harness import fixture, run, source_env

# A sandbox's check of itself, run with the gateway container's mounts
# before anything else: who it runs as, and where it may write.
SANDBOX_CHECK = """
import errno, json, os, sys
result = {"uid": os.getuid(), "gid": os.getgid(), "writes": {}}
for path in json.loads(sys.argv[1]):
    target = os.path.join(path, ".sandbox-check")
    try:
        with open(target, "x"):
            pass
        os.unlink(target)
        result["writes"][path] = "written"
    except OSError as e:
        result["writes"][path] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(result))
"""
# What a refused write looks like in a log.
WRITE_ERRORS = ("Read-only file system", "Permission denied", "Unable to write")
SIZE_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _bytes(quantity: str) -> int:
    number, unit = quantity[:-2], quantity[-2:]
    return int(float(number) * SIZE_UNITS[unit])


def _expected_secrets(manifests: list[Manifest], directory: Path) -> dict[str, dict[str, bytes]]:
    """
    Values for the Secrets the gateway pod uses and the overlay does not
    ship: random ones for its environment, and for a certificate volume
    what cert-manager would write for the overlay's Certificate (and the
    CA, in C{directory}/ca.pem, for the senders).
    """
    shipped = {m["metadata"]["name"] for m in manifests if m["kind"] == "Secret"}
    spec = gateway(manifests)["spec"]["template"]["spec"]
    made: dict[str, dict[str, bytes]] = {}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference and reference["name"] not in shipped:
                made.setdefault(reference["name"], {})[reference["key"]] = secrets.token_hex(16).encode()
    certificates = {c["spec"]["secretName"]: c for c in manifests if c["kind"] == "Certificate"}
    for volume in spec["volumes"]:
        name = volume.get("secret", {}).get("secretName")
        if name is None or name in shipped:
            continue
        if name not in certificates:
            raise FailTest(f"the pod mounts the Secret {name}, which nothing in the overlay ships or issues")
        authority = Authority("alertgateway-ca")
        issued = authority.issue("alertgateway", dns=certificates[name]["spec"]["dnsNames"])
        made[name] = {"tls.crt": issued.cert_pem, "tls.key": issued.key_pem, "ca.crt": authority.cert_pem}
        (directory / "ca.pem").write_bytes(authority.cert_pem)
    return made


def _sandbox_check(pod: Pod, gateway_container: Container) -> Container:
    paths = ["/", "/etc", "/usr", "/var", str(Path(sys.executable).parents[1]), str(REPO)]
    paths += [m.destination for m in gateway_container.mounts]
    return Container(
        "sandbox-check",
        ["python", "-c", SANDBOX_CHECK, json.dumps(paths)],
        gateway_container.env,
        gateway_container.mounts,
    )


class SandboxProblemTests(TestCase):
    """
    Where bubblewrap cannot run, the contract tests skip with the reason;
    they never pass without running.
    """

    def test_not_installed(self) -> None:
        """
        Without bwrap the reason says what installs it.
        """
        problem = sandbox_problem(search=self.mktemp())
        assert problem is not None
        self.assertIn("apt-get install bubblewrap", problem)

    def test_cannot_make_namespaces(self) -> None:
        """
        A bwrap that cannot make the namespaces (user namespaces off) gives
        its own error as the reason.
        """
        directory = Path(self.mktemp())
        directory.mkdir()
        fake = directory / "bwrap"
        fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
        fake.chmod(0o755)
        problem = sandbox_problem(search=str(directory))
        assert problem is not None
        self.assertIn("No permissions to create new namespace", problem)


class ContainerContractTests(TestCase):
    """
    Each overlay's pod, run as Kubernetes would run it.
    """

    timeout = 240

    def setUp(self) -> None:
        problem = sandbox_problem()
        if problem is None:
            return
        if "not installed" in problem and os.environ.get("CI") == "true":
            raise FailTest(f"{problem} (required when CI=true)")
        raise SkipTest(problem)

    async def run_pod(self, overlay: str) -> tuple[Pod, dict[str, Any]]:
        """
        Lay the overlay's pod out, run it in a network namespace of its
        own (an outer bwrap running L{tests.deploy.pod_run}), and return
        the pod and what happened.
        """
        manifests = rendered(overlay)
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        for parent in [directory, *directory.parents]:
            if parent == REPO:
                break
            parent.chmod(parent.stat().st_mode | 0o755)
        pod = Pod(manifests, directory, _expected_secrets(manifests, directory))
        containers = list(pod.containers())
        main = containers[-1]
        config = gateway_config(manifests)
        spec: dict[str, Any] = {
            "containers": [
                {"name": c.name, "argv": container_argv(pod, c, status_fd="{status_fd}")}
                for c in [_sandbox_check(pod, main), *containers]
            ],
            "probes": self.probes(manifests),
            "webhook": self.webhook(pod, main, directory),
            "stop_within": self.stop_within(manifests),
        }
        endpoint = config.alert_processor.endpoint
        if endpoint.startswith("file:"):
            spec["delivered_file"] = str(self.host_path(main, endpoint[len("file:") :]))
        else:
            spec["processor_port"] = int(endpoint.rsplit(":", 1)[1].split("/")[0])
        if config.state.backend == "redis":
            password = main.env[config.state.redis.password_env or ""]
            spec["redis"] = {"port": int(config.state.redis.url.rsplit(":", 1)[1].split("/")[0]), "password": password}
        (directory / "body.json").write_bytes(fixture("alertmanager-firing.json"))
        spec["webhook"]["body_file"] = str(directory / "body.json")
        (directory / "spec.json").write_text(json.dumps(spec))
        # As the Dockerfile does at build time: Twisted's plugin cache,
        # which the read-only root would not let twistd write.
        cache = await run(
            [sys.executable, "-c", "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"],
            env=source_env(),
        )
        self.assertEqual(cache.code, 0, cache.output)
        outer = ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--unshare-net", "--die-with-parent", "--"]
        outer += [
            sys.executable,
            "-m",
            "tests.deploy.pod_run",
            str(directory / "spec.json"),
            str(directory / "report.json"),
        ]
        done = await run(outer, env=source_env(), timeout=200)
        self.assertEqual(done.code, 0, done.output)
        report: dict[str, Any] = json.loads((directory / "report.json").read_text())
        return pod, report

    def probes(self, manifests: list[Manifest]) -> dict[str, Any]:
        container = gateway(manifests)["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
        self.assertEqual((live["scheme"], ready["scheme"]), ("HTTPS", "HTTPS"))
        self.assertEqual(live["port"], ready["port"])
        return {"port": ports.get(live["port"], live["port"]), "live": live["path"], "ready": ready["path"]}

    def webhook(self, pod: Pod, main: Container, directory: Path) -> dict[str, Any]:
        config = gateway_config(pod.manifests)
        ca_file = directory / "ca.pem"
        if not ca_file.exists():
            # A self-signed certificate, made in the pod: trusted as it is.
            cert_file = yaml.safe_load(gateway_yaml(pod.manifests))["security"]["cert_file"]
            ca_file = self.host_path(main, cert_file)
        service = one(pod.manifests, "Service", "alertgateway")["metadata"]["name"]
        return {
            "port": config.service.port,
            "path": "/webhook/prometheus",
            "token": main.env["WEBHOOK_TOKEN"],
            "server_name": f"{service}.{pod.namespace}.svc",
            "ca_file": str(ca_file),
        }

    def stop_within(self, manifests: list[Manifest]) -> float:
        """
        What the kubelet leaves the container after its preStop pause,
        before it kills it.
        """
        spec = gateway(manifests)["spec"]["template"]["spec"]
        pause = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        self.assertEqual(pause[0], "sleep")
        return float(spec["terminationGracePeriodSeconds"]) - seconds(pause[1])

    def host_path(self, container: Container, path: str) -> Path:
        """
        Where a path of the container is on the host: under the mount that
        holds it.
        """
        for mount in sorted(container.mounts, key=lambda m: -len(m.destination)):
            if path.startswith(mount.destination.rstrip("/") + "/"):
                return mount.source / path[len(mount.destination) :].lstrip("/")
        raise FailTest(f"{path} is on no mount of {container.name}")

    def check(self, pod: Pod, report: dict[str, Any]) -> None:
        containers = report["containers"]
        main = list(pod.containers())[-1]
        check = containers["sandbox-check"]
        self.assertEqual(check["exit"], 0, check["output"])
        seen = json.loads(check["output"].strip().splitlines()[-1])
        self.assertEqual((seen["uid"], seen["gid"]), (pod.uid, pod.gid))
        for path, outcome in seen["writes"].items():
            writable = any(m.destination == path and m.writable for m in main.mounts)
            self.assertEqual(outcome == "written", writable, f"{path}: {outcome}")
        for name, result in containers.items():
            self.assertIn(name, ["sandbox-check", *(c.name for c in pod.containers())])
            where = f"{name}:\n{result.get('output', '')}"
            if name != main.name:
                self.assertEqual(result["exit"], 0, where)
            for error in WRITE_ERRORS:
                self.assertNotIn(error, result.get("output", ""), where)
        gateway_result = containers[main.name]
        where = json.dumps(gateway_result, indent=1)
        self.assertIsNotNone(gateway_result["live after"], where)
        self.assertIsNotNone(gateway_result["ready after"], where)
        self.assertEqual(gateway_result["webhook"].get("status"), 202, where)
        self.assertIsNotNone(gateway_result["delivered after"], where)
        self.assertIsNotNone(gateway_result["drained after"], where)
        # Stopping: not ready, and a webhook still routed here gets a 503
        # with Retry-After, which the sender retries (elsewhere).
        stopping = gateway_result["webhook while stopping"]
        self.assertEqual(gateway_result["ready while stopping"], 503, where)
        self.assertEqual((stopping.get("status"), stopping.get("retry-after") is not None), (503, True), where)
        self.assertEqual(gateway_result["exit"], 0, where)
        self.assertLess(gateway_result["stopped after"], self.stop_within(pod.manifests), where)
        for mount in main.mounts:
            if mount.writable and mount.size_limit:
                used = sum(p.stat().st_size for p in mount.source.rglob("*") if p.is_file())
                self.assertLess(used, _bytes(mount.size_limit), f"{mount.destination}: {used} bytes")

    async def test_dev(self) -> None:
        """
        The dev overlay's pod: its self-signed certificate made by the
        first init container, SQLite state and queue on the queue volume,
        the accepted alert appended to the file the configuration names
        there.
        """
        pod, report = await self.run_pod("dev")
        self.check(pod, report)
        self.assertEqual(list(report["containers"]), ["sandbox-check", "self-signed-tls", "check-config", "gateway"])

    async def test_production(self) -> None:
        """
        The production overlay's pod: the certificate cert-manager would
        issue for the Certificate's names, Redis state and queue (a local
        Redis with the password of the Secret), the alert delivered to the
        Alert Processor the configuration names.
        """
        pod, report = await self.run_pod("production")
        self.check(pod, report)
        self.assertEqual(report["containers"]["gateway"]["deliveries"], ["/api/v1/alerts"] * 2)
        self.assertNotIn("still queued", report["containers"]["gateway"]["output"])
