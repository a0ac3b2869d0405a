"""
What a platform team rendering and applying C{deploy/} needs of it,
checked offline on the rendered overlays: a configuration change rolls the
pods out, the autoscaler alone owns the replica count and scales at a CPU
figure that means something, the dev overlay applies on a bare cluster,
memory limits fit the worst case the configuration allows, senders in the
cluster reach the pods over TLS only, the NetworkPolicy admits only the
monitoring namespace and the ingress controller and lets DNS through
NodeLocal DNSCache, and the gateway believes the controller's
C{X-Forwarded-For}.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from twisted.trial.unittest import TestCase

from tests.deploy.kustomize import Manifest, build, config_map_hash
from tests.deploy.manifests import (
    CERT_MANAGER,
    CONFIG_MAP,
    DEPLOY,
    MONITORING,
    OVERLAYS,
    config_map,
    find,
    gateway,
    gateway_config,
    gateway_container,
    mounts,
    one,
    rendered,
    tls_mount,
)

# Peak resident set of the gateway at the worst case each overlay's
# configuration allows (dedup.max_tracked episodes tracked, then the queue
# filled to queue.max_items or queue.max_bytes with the processor failing),
# in MB, measured with `python -m tests.deploy.worst_case_memory OVERLAY`:
# dev (SQLite) 318; production 141 with Redis up, and while Redis is
# unreachable (fail_open) its decisions and queue fall back to this process
# and SQLite as dev's do, so production is held to dev's figure.  Measure
# again after changing those bounds or how the state is held.
WORST_CASE_MIB = {"dev": 318.0, "production": 318.0}
# What the limit must leave above that peak: Python's allocator does not
# give memory back evenly, and the measure is of one machine.
HEADROOM = 1.25
# The CPU (millicores) at which the autoscaler adds a gateway must be well
# above what an idle one spends (probes, scrapes, periodic tasks: a few
# millicores) and below the limit, where it would be throttled first.
AUTOSCALE_FLOOR_MILLICORES = 100

# Who sends to the gateways, as a NetworkPolicy sees them: namespace
# labels, pod labels.
ALERTMANAGER = ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "alertmanager"})
CONTROLLER = (
    {"kubernetes.io/metadata.name": "ingress-nginx"},
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
)
ADMISSION = (
    {"kubernetes.io/metadata.name": "ingress-nginx"},
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "admission-webhook"},
)
ELSEWHERE = ({"kubernetes.io/metadata.name": "default"}, {"app": "curl"})
KUBE_DNS = ({"kubernetes.io/metadata.name": "kube-system"}, {"k8s-app": "kube-dns"})
# NodeLocal DNSCache answers from the node's network: an address, no pod.
NODE_LOCAL_DNS = "169.254.20.10"


def quantity(value: str) -> float:
    """
    A Kubernetes quantity: CPU in millicores, memory in MiB.
    """
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Mi|Gi|Ki)?", str(value))
    assert match is not None, value
    number, unit = float(match.group(1)), match.group(2)
    return {"m": number, None: number * 1000, "Mi": number, "Gi": number * 1024, "Ki": number / 1024}[unit]


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    assert set(selector) <= {"matchLabels"}, f"only matchLabels are read here: {selector}"
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def admits(
    policy: Manifest,
    port: int,
    peer: tuple[dict[str, str], dict[str, str]] | None = None,
    *,
    address: str | None = None,
    protocol: str = "TCP",
    direction: str = "ingress",
) -> bool:
    """
    Whether a NetworkPolicy lets traffic through on C{port}, to or from a
    pod (C{peer}: its namespace's labels and its own) or an C{address}
    outside any pod (a node's, the Internet's).
    """
    key = "from" if direction == "ingress" else "to"
    own = policy["metadata"]["namespace"]
    for rule in policy["spec"].get(direction, []):
        ports = rule.get("ports")
        if ports is not None and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports):
            continue
        peers = rule.get(key)
        if peers is None:
            return True
        for candidate in peers:
            if "ipBlock" in candidate:
                block = candidate["ipBlock"]
                if address is None:
                    continue
                ip = ipaddress.ip_address(address)
                if ip in ipaddress.ip_network(block["cidr"]) and not any(
                    ip in ipaddress.ip_network(e) for e in block.get("except", [])
                ):
                    return True
                continue
            if peer is None:
                continue
            namespace, labels = peer
            if "namespaceSelector" in candidate:
                in_namespace = selects(candidate["namespaceSelector"], namespace)
            else:
                in_namespace = namespace.get("kubernetes.io/metadata.name") == own
            if in_namespace and selects(candidate.get("podSelector"), labels):
                return True
    return False


class RolloutTests(TestCase):
    """
    A changed configuration reaches the pods with C{kubectl apply -k}.
    """

    def test_generated_names(self) -> None:
        """
        The gateway's and Redis's ConfigMaps are generated: named after
        the hash of their content, the name the pod templates mount; no
        ConfigMap of the bare name is applied.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            generated = config_map(manifests)
            self.assertEqual(generated["metadata"]["name"], f"{CONFIG_MAP}-{config_map_hash(generated)}")
            self.assertEqual(find(manifests, "ConfigMap", CONFIG_MAP), [])
        redis = one(rendered("production"), "StatefulSet", "alertgateway-redis")
        [volume] = [v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        conf = one(rendered("production"), "ConfigMap", volume["configMap"]["name"])
        self.assertEqual(volume["configMap"]["name"], f"alertgateway-redis-{config_map_hash(conf)}")

    def test_change_rolls_out(self) -> None:
        """
        Editing an overlay's gateway.yaml (or Redis's redis.conf) changes
        the pod template of its workload, and only the name of the
        ConfigMap it mounts: C{kubectl apply -k} starts a rollout, with
        nothing else to do.
        """
        copy = Path(self.mktemp()) / "deploy"
        shutil.copytree(DEPLOY, copy)
        edits = {
            "production": (copy / "base" / "gateway.yaml", "Deployment", "alertgateway"),
            "dev": (copy / "overlays" / "dev" / "gateway.yaml", "Deployment", "alertgateway"),
            "redis": (copy / "overlays" / "production" / "redis.conf", "StatefulSet", "alertgateway-redis"),
        }
        for what, (path, kind, name) in edits.items():
            overlay = "dev" if what == "dev" else "production"
            before = one(build(copy / "overlays" / overlay), kind, name)["spec"]["template"]
            path.write_text(path.read_text() + "\n# changed\n")
            after = one(build(copy / "overlays" / overlay), kind, name)["spec"]["template"]
            self.assertNotEqual(before, after, what)
            changed = [
                (old["configMap"]["name"], new["configMap"]["name"])
                for old, new in zip(before["spec"]["volumes"], after["spec"]["volumes"], strict=True)
                if old != new
            ]
            self.assertEqual(len(changed), 1, what)
            for old, new in zip(before["spec"]["volumes"], after["spec"]["volumes"], strict=True):
                if old != new:
                    old["configMap"]["name"] = new["configMap"]["name"]
            self.assertEqual(before, after, f"{what}: only the ConfigMap's name changes")


class ScalingTests(TestCase):
    """
    The autoscaler owns the replica count, and scales on a CPU figure that
    is one.
    """

    def test_no_replicas_under_an_autoscaler(self) -> None:
        """
        A Deployment an autoscaler scales has no C{replicas} (each apply
        would reset the autoscaler's count to it); dev, without an
        autoscaler, sets one replica.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            for hpa in find(manifests, "HorizontalPodAutoscaler"):
                target = hpa["spec"]["scaleTargetRef"]
                self.assertNotIn("replicas", one(manifests, target["kind"], target["name"])["spec"], overlay)
        self.assertEqual(find(rendered("dev"), "HorizontalPodAutoscaler"), [])
        self.assertEqual(gateway(rendered("dev"))["spec"]["replicas"], 1)

    def test_cpu_target(self) -> None:
        """
        The autoscaler's target is a utilization of the CPU request: that
        share of the request is far above an idle gateway's use and below
        its CPU limit, and the request is what the target is reasoned
        from (so it is at most the limit).
        """
        manifests = rendered("production")
        [metric] = one(manifests, "HorizontalPodAutoscaler")["spec"]["metrics"]
        self.assertEqual((metric["type"], metric["resource"]["name"]), ("Resource", "cpu"))
        target = metric["resource"]["target"]
        self.assertEqual(target["type"], "Utilization")
        resources = gateway_container(manifests)["resources"]
        request, limit = quantity(resources["requests"]["cpu"]), quantity(resources["limits"]["cpu"])
        scale_at = request * target["averageUtilization"] / 100
        self.assertGreaterEqual(scale_at, AUTOSCALE_FLOOR_MILLICORES)
        self.assertLess(scale_at, limit)
        self.assertLessEqual(request, limit)


class BareClusterTests(TestCase):
    """
    What needs CRDs is in components, which only production includes.
    """

    def test_dev_needs_no_custom_resources(self) -> None:
        """
        Every resource of the dev overlay is of a built-in Kubernetes API
        (no ServiceMonitor, PrometheusRule or Certificate), so
        C{kubectl apply -k deploy/overlays/dev} works on a bare cluster.
        """
        builtin = re.compile(
            r"^(v1|(apps|policy|autoscaling|networking\.k8s\.io|batch|rbac\.authorization\.k8s\.io)/v\d+)$"
        )
        for manifest in rendered("dev"):
            self.assertRegex(manifest["apiVersion"], builtin, manifest["kind"])

    def test_components(self) -> None:
        """
        The monitoring resources and the certificate are kustomize
        Components; production includes both, and so gets the
        ServiceMonitor, the rules and the Certificate.
        """
        for directory in (MONITORING, CERT_MANAGER):
            spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
            self.assertEqual((spec["apiVersion"], spec["kind"]), ("kustomize.config.k8s.io/v1alpha1", "Component"))
        production = yaml.safe_load((OVERLAYS["production"] / "kustomization.yaml").read_text())
        self.assertEqual(set(production["components"]), {"../../monitoring", "../../cert-manager"})
        manifests = rendered("production")
        for kind in ("ServiceMonitor", "PrometheusRule", "Certificate"):
            self.assertTrue(find(manifests, kind), kind)


class MemoryTests(TestCase):
    """
    The memory limit holds the worst case the configuration allows.
    """

    def test_limit_fits_worst_case(self) -> None:
        """
        The gateway's memory limit is at least the measured worst-case
        peak with headroom, plus the in-memory emptyDirs it writes (they
        count against the same limit); the request is at most the limit.
        """
        for overlay in ("dev", "production"):
            manifests = rendered(overlay)
            container = gateway_container(manifests)
            limit = quantity(container["resources"]["limits"]["memory"])
            in_memory = sum(
                quantity(volume["emptyDir"].get("sizeLimit", "0Mi"))
                for _, volume in mounts(gateway(manifests), container).values()
                if volume.get("emptyDir", {}).get("medium") == "Memory"
            )
            self.assertGreater(WORST_CASE_MIB[overlay], 0, "measure it")
            self.assertGreaterEqual(limit, WORST_CASE_MIB[overlay] * HEADROOM + in_memory, overlay)
            self.assertLessEqual(quantity(container["resources"]["requests"]["memory"]), limit)

    def test_measured_bounds_cover_the_configured_ones(self) -> None:
        """
        The figures were measured at bounds at least as large as each
        overlay configures: C{dedup.max_tracked} 100,000, C{queue.max_bytes}
        64 MiB, C{queue.max_items} 10,000 (the defaults are lower now: a
        worst case measured above them holds for them).
        """
        for overlay in ("dev", "production"):
            config = gateway_config(rendered(overlay))
            self.assertLessEqual(config.dedup.max_tracked, 100_000, overlay)
            self.assertLessEqual(config.queue.max_bytes, 64 * 2**20, overlay)
            self.assertLessEqual(config.queue.max_items, 10_000, overlay)


class TLSTests(TestCase):
    """
    The webhook listener serves HTTPS with a certificate each overlay
    provides, for the names senders in the cluster use.
    """

    def test_certificate_files_on_the_tls_volume(self) -> None:
        """
        Every overlay's gateway serves TLS, its certificate and key on the
        read-only mount of the tls volume.
        """
        for overlay in OVERLAYS:
            manifests = rendered(overlay)
            security = gateway_config(manifests).security
            self.assertTrue(security.tls_enabled, overlay)
            text = yaml.safe_load(config_map(manifests)["data"]["gateway.yaml"])["security"]
            for key in ("cert_file", "key_file"):
                self.assertTrue(text[key].startswith(tls_mount(manifests) + "/"), f"{overlay}: {key}")
            [mount] = [m for m in gateway_container(manifests)["volumeMounts"] if m["name"] == "tls"]
            self.assertTrue(mount["readOnly"])

    def test_production_certificate(self) -> None:
        """
        In production the tls volume is the Secret a cert-manager
        Certificate fills, for the Service's names in the namespace, from
        an Issuer of the overlay whose CA is itself a Certificate there; the
        Ingress controller re-encrypts to the pods and checks them with
        that Secret's CA for one of those names.
        """
        manifests = rendered("production")
        namespace = gateway(manifests)["metadata"]["namespace"]
        [volume] = [v for v in gateway(manifests)["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
        secret = volume["secret"]["secretName"]
        certificates = {c["spec"]["secretName"]: c for c in find(manifests, "Certificate")}
        serving = certificates[secret]["spec"]
        service = one(manifests, "Service", "alertgateway")["metadata"]["name"]
        self.assertLessEqual(
            {f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"}, set(serving["dnsNames"])
        )
        self.assertIn("server auth", serving["usages"])
        issuer = one(manifests, "Issuer", serving["issuerRef"]["name"])
        self.assertTrue(certificates[issuer["spec"]["ca"]["secretName"]]["spec"]["isCA"])
        self.assertEqual(find(manifests, "Secret", secret), [], "cert-manager owns it")
        annotations = one(manifests, "Ingress")["metadata"]["annotations"]
        prefix = "nginx.ingress.kubernetes.io/"
        self.assertEqual(annotations[prefix + "backend-protocol"], "HTTPS")
        self.assertEqual(annotations[prefix + "proxy-ssl-secret"], f"{namespace}/{secret}")
        self.assertEqual(annotations[prefix + "proxy-ssl-verify"], "on")
        self.assertIn(annotations[prefix + "proxy-ssl-name"], serving["dnsNames"])

    def test_dev_self_signed(self) -> None:
        """
        In dev the tls volume is an emptyDir in memory that the first init
        container writes (before check-config reads it); its script makes
        a certificate for the Service's names in the pod's namespace, and
        a key only its owner may read.
        """
        manifests = rendered("dev")
        spec = gateway(manifests)["spec"]["template"]["spec"]
        [volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
        self.assertEqual(volume["emptyDir"]["medium"], "Memory")
        first, *rest = spec["initContainers"]
        self.assertEqual([c["name"] for c in rest], ["check-config"])
        [mount] = [m for m in first["volumeMounts"] if m["name"] == "tls"]
        self.assertFalse(mount.get("readOnly", False))
        directory = Path(self.mktemp())
        directory.mkdir()
        script = first["command"][2].replace(mount["mountPath"], str(directory))
        environ = {"PATH": os.environ.get("PATH", ""), "POD_NAMESPACE": "kubernaut-dev"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        certificate = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertIn("alertgateway.kubernaut-dev.svc", names.get_values_for_type(x509.DNSName))
        self.assertEqual((directory / "tls.key").stat().st_mode & 0o777, 0o600)
        self.assertEqual((directory / "ca.crt").read_bytes(), (directory / "tls.crt").read_bytes())


class NetworkPolicyTests(TestCase):
    """
    Who may reach the gateways, and whom they may reach.
    """

    def policy(self, overlay: str = "production") -> Manifest:
        return one(rendered(overlay), "NetworkPolicy", "alertgateway")

    def test_webhooks_from_monitoring_and_the_controller_only(self) -> None:
        """
        Port 8080 admits the monitoring namespace (Alertmanager) and the
        ingress controller's pods, and no one else: not another pod of the
        controller's namespace, not a pod elsewhere, not a pod beside the
        gateway.
        """
        for overlay in OVERLAYS:
            policy = self.policy(overlay)
            namespace = policy["metadata"]["namespace"]
            beside = ({"kubernetes.io/metadata.name": namespace}, {"app.kubernetes.io/name": "alert-processor"})
            self.assertTrue(admits(policy, 8080, ALERTMANAGER))
            self.assertTrue(admits(policy, 8080, CONTROLLER))
            for peer in (ADMISSION, ELSEWHERE, beside):
                self.assertFalse(admits(policy, 8080, peer), peer)
            self.assertFalse(admits(policy, 8080, address="203.0.113.7"))

    def test_metrics_from_monitoring_only(self) -> None:
        """
        Port 9090 admits the monitoring namespace only.
        """
        policy = self.policy()
        self.assertTrue(admits(policy, 9090, ALERTMANAGER))
        self.assertFalse(admits(policy, 9090, CONTROLLER))

    def test_dns_with_node_local_cache(self) -> None:
        """
        DNS (UDP and TCP 53) goes out to CoreDNS pods and to NodeLocal
        DNSCache's node address; other traffic to the outside does not.
        """
        policy = self.policy()
        for protocol in ("UDP", "TCP"):
            self.assertTrue(admits(policy, 53, KUBE_DNS, protocol=protocol, direction="egress"))
            self.assertTrue(admits(policy, 53, address=NODE_LOCAL_DNS, protocol=protocol, direction="egress"))
        self.assertFalse(admits(policy, 443, address="198.51.100.1", direction="egress"))
        redis = ({"kubernetes.io/metadata.name": "kubernaut"}, {"app.kubernetes.io/name": "alertgateway-redis"})
        self.assertTrue(admits(policy, 6379, redis, direction="egress"))
        self.assertFalse(admits(policy, 6379, ELSEWHERE, direction="egress"))

    def test_evaluator(self) -> None:
        """
        The evaluator reads a rule's pod selector alone as "this
        namespace", and an C{ipBlock} with its exceptions.
        """
        policy: Manifest = {
            "metadata": {"namespace": "a"},
            "spec": {
                "ingress": [
                    {"from": [{"podSelector": {}}]},
                    {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
                ]
            },
        }
        self.assertTrue(admits(policy, 1, ({"kubernetes.io/metadata.name": "a"}, {})))
        self.assertFalse(admits(policy, 1, ({"kubernetes.io/metadata.name": "b"}, {})))
        self.assertTrue(admits(policy, 1, address="10.2.0.1"))
        self.assertFalse(admits(policy, 1, address="10.1.0.1"))


class ForwardedForTests(TestCase):
    """
    Behind the Ingress, the gateway sees the sender, not the controller.
    """

    def test_controller_trusted_in_production(self) -> None:
        """
        production's C{security.trusted_proxies} holds the pod networks an
        ingress controller's address comes from (the usual pod CIDRs), and
        only private ones: an address on the Internet is never believed.
        """
        proxies = [ipaddress.ip_network(p) for p in gateway_config(rendered("production")).security.trusted_proxies]
        self.assertTrue(proxies)
        for pod in ("10.244.1.17", "10.8.0.5", "172.20.3.4", "192.168.12.9"):
            self.assertTrue(any(ipaddress.ip_address(pod) in network for network in proxies), pod)
        for network in proxies:
            self.assertTrue(network.is_private, network)
        self.assertTrue(gateway_config(rendered("production")).security.tls_enabled)
