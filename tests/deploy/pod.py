"""
A gateway pod of a rendered overlay, run for real in bubblewrap (C{bwrap}):
each container's command (the main one's is the Dockerfile's C{CMD}) as
the pod's user, on a read-only root, with only the Deployment's volumes
writable, in a private network namespace where the pod's service names
resolve to loopback.

L{Pod} reads what the Deployment and the Dockerfile say (command, user,
environment, working directory, mounts, probes, grace period) and lays the
volumes out in a directory: the ConfigMap's files, the Secrets' values,
an empty directory for each C{emptyDir}.  L{container_argv} is the
C{bwrap} command line of one container; L{sandbox_problem} says why
bubblewrap cannot run here, if it cannot.

The root is the host's, read-only, rebuilt from its top-level directories
so that mount points the image has and the host does not
(C{/etc/alertgateway}, C{/var/lib/alertgateway}) can be made on the
sandbox's own (read-only) root rather than on the host.  The virtualenv
stands in for the image's site-packages: C{PATH} leads to its C{twistd}
and C{python}, C{PYTHONPATH} to this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from tests.deploy.kustomize import Manifest
from tests.deploy.manifests import REPO, environment, gateway, one

__all__ = ["Container", "Pod", "container_argv", "dockerfile", "sandbox_problem"]


def dockerfile() -> dict[str, list[str]]:
    """
    The Dockerfile's instructions by name, continuation lines joined,
    comments left out, each instruction's arguments as written.
    """
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = [" ".join(i.split()) for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]
    found: dict[str, list[str]] = {}
    for line in joined:
        name, _, rest = line.partition(" ")
        found.setdefault(name, []).append(rest)
    return found


def _image_environment() -> dict[str, str]:
    """
    The Dockerfile's C{ENV} (C{KEY=value} pairs).
    """
    environ = {}
    for instruction in dockerfile().get("ENV", []):
        for pair in shlex.split(instruction):
            key, _, value = pair.partition("=")
            environ[key] = value
    return environ


@attrs.frozen
class Mount:
    """
    A volume mount: the host directory laid out for it, where the
    container sees it, and whether it may write there.
    """

    source: Path
    destination: str
    writable: bool
    size_limit: str | None = None


@attrs.frozen
class Container:
    """
    One container of the pod, as it will run.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]


class Pod:
    """
    The gateway pod of an overlay's manifests, its volumes laid out under
    C{directory}.

    @param secrets: Values for the Secrets the overlay expects to exist
        (by name, then key) and does not ship.
    """

    def __init__(self, manifests: list[Manifest], directory: Path, secrets: Mapping[str, Mapping[str, bytes]]) -> None:
        self.manifests = manifests
        self.deployment = gateway(manifests)
        self.namespace: str = self.deployment["metadata"]["namespace"]
        self.spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        self.uid: int = self.spec["securityContext"]["runAsUser"]
        self.gid: int = self.spec["securityContext"]["runAsGroup"]
        self.directory = directory
        self.secrets = secrets
        self.volumes = {v["name"]: self._lay_out(v) for v in self.spec["volumes"]}
        [workdir] = dockerfile()["WORKDIR"][-1:]
        self.workdir = workdir

    def _lay_out(self, volume: dict[str, Any]) -> tuple[Path, bool, str | None]:
        """
        The host directory holding a volume's files, whether containers
        may write to it, and its size limit.
        """
        path = self.directory / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "configMap" in volume:
            data = one(self.manifests, "ConfigMap", volume["configMap"]["name"])["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (path / item["path"]).write_text(data[item["key"]], encoding="utf-8")
            return self._owned(path, files_mode=volume["configMap"].get("defaultMode", 0o644)), False, None
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            values = self.secrets.get(name) or self._shipped_secret(name)
            for key, value in values.items():
                (path / key).write_bytes(value)
            return self._owned(path, files_mode=volume["secret"].get("defaultMode", 0o644)), False, None
        if "emptyDir" in volume:
            return path, True, volume["emptyDir"].get("sizeLimit")
        raise AssertionError(f"volume type not laid out here: {volume}")

    def _shipped_secret(self, name: str) -> dict[str, bytes]:
        secret = one(self.manifests, "Secret", name)
        return {k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()}

    def _owned(self, path: Path, files_mode: int) -> Path:
        # The modes the kubelet gives ConfigMap and Secret files.
        for file in path.iterdir():
            file.chmod(files_mode)
        return path

    def containers(self) -> Iterator[Container]:
        """
        The init containers in order, then the gateway container, each with
        its command (the image's CMD when it has none), environment and
        mounts.
        """
        for spec in [*self.spec.get("initContainers", []), *self.spec["containers"]]:
            argv = spec.get("command") or json.loads(dockerfile()["CMD"][-1])
            env = {
                **_image_environment(),
                "HOSTNAME": f"{self.deployment['metadata']['name']}-test",
                "HOME": self.workdir,
                **environment(self.manifests, spec, self.secrets),
            }
            mounts = []
            for mount in spec.get("volumeMounts", []):
                source, writable, size_limit = self.volumes[mount["name"]]
                mounts.append(Mount(source, mount["mountPath"], writable and not mount.get("readOnly"), size_limit))
            yield Container(spec["name"], argv, env, mounts)

    def image_directories(self) -> list[str]:
        """
        The directories the Dockerfile makes (C{install -d}) and works in.
        """
        made = [self.workdir]
        for instruction in dockerfile()["RUN"]:
            made += re.findall(r"\binstall -d(?: -\w \S+)* (/\S+)", instruction)
        return list(dict.fromkeys(made))

    def hosts(self) -> str:
        """
        An C{/etc/hosts} where the services the gateway names (Redis, the
        Alert Processor) and its own Service resolve to loopback.
        """
        names = ["localhost", "alertgateway", f"alertgateway.{self.namespace}.svc", "alert-processor"]
        names += [s["metadata"]["name"] for s in self.manifests if s["kind"] == "Service"]
        return "127.0.0.1 " + " ".join(dict.fromkeys(names)) + "\n"

    def passwd(self) -> tuple[str, str]:
        """
        The image's C{/etc/passwd} and C{/etc/group} entries for its user,
        after the host's.
        """
        home = self.workdir
        passwd = Path("/etc/passwd").read_text() + f"alertgateway:x:{self.uid}:{self.gid}::{home}:/usr/sbin/nologin\n"
        group = Path("/etc/group").read_text() + f"alertgateway:x:{self.gid}:\n"
        return passwd, group


def _under_tmp() -> list[str]:
    """
    What the container needs of the host (this checkout, the virtualenv,
    the interpreter) that lies under /tmp, which the sandbox's root leaves
    out.
    """
    needed = {str(REPO), sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parents[1])}
    return sorted(path for path in needed if path == "/tmp" or path.startswith("/tmp/"))


def _virtualenv_path() -> str:
    return f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


def _root(destinations: list[str], replaced: Mapping[str, Path], made: list[str]) -> list[str]:
    """
    bwrap arguments rebuilding the host's root read-only: each top-level
    directory bound as it is, except those on the way to a mount point the
    host does not have (or to a file replaced, or to a directory the image
    C{made}), which are made on the sandbox's root and filled entry by
    entry.
    """
    arguments: list[str] = []
    wanted = [*destinations, *replaced, *made]
    needed = {str(parent) for d in wanted for parent in PurePosixPath(d).parents}

    def fill(directory: str) -> None:
        for entry in sorted(os.listdir(directory)):
            path = os.path.join(directory, entry)
            if path in ("/proc", "/dev", "/tmp") or path in destinations:
                continue
            if path in replaced:
                arguments.extend(["--ro-bind", str(replaced[path]), path])
            elif os.path.islink(path):
                arguments.extend(["--symlink", os.readlink(path), path])
            elif path in needed and os.path.isdir(path):
                arguments.extend(["--dir", path])
                fill(path)
            elif os.path.isdir(path) or os.path.isfile(path):
                arguments.extend(["--ro-bind", path, path])

    fill("/")
    for directory in made:
        if directory not in destinations:
            arguments.extend(["--dir", directory])
    return arguments


def container_argv(pod: Pod, container: Container, status_fd: str) -> list[str]:
    """
    The bwrap command running C{container}: the pod's user in a user
    namespace of its own (mapped to whoever runs the tests: the files they
    own, the volumes, are its own there), its own process (C{PID} 1, as in a container),
    IPC and host name namespaces, the network of whoever runs it (the
    test's private one), a read-only root, the container's mounts, its
    environment only, and its working directory.  bwrap writes the
    container's pid and exit status, as JSON, to C{status_fd} (a number,
    or a placeholder the caller replaces with one).
    """
    hosts = pod.directory / "etc-hosts"
    hosts.write_text(pod.hosts())
    passwd, group = pod.passwd()
    (pod.directory / "etc-passwd").write_text(passwd)
    (pod.directory / "etc-group").write_text(group)
    for path in ("etc-hosts", "etc-passwd", "etc-group"):
        (pod.directory / path).chmod(0o644)
    replaced = {
        "/etc/hosts": hosts,
        "/etc/passwd": pod.directory / "etc-passwd",
        "/etc/group": pod.directory / "etc-group",
    }
    destinations = [m.destination for m in container.mounts]
    argv = ["bwrap", "--unshare-user", "--uid", str(pod.uid), "--gid", str(pod.gid)]
    argv += ["--unshare-pid", "--as-pid-1", "--unshare-ipc", "--unshare-uts", "--hostname", container.env["HOSTNAME"]]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--json-status-fd", status_fd]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += _root([*destinations, "/tmp"], replaced, pod.image_directories())
    if "/tmp" not in destinations:
        argv += ["--dir", "/tmp"]
    for mount in container.mounts:
        argv += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.destination]
    for path in _under_tmp():
        # The checkout and its virtualenv stand in for the image; in a
        # checkout under /tmp they would be hidden by the pod's own /tmp.
        argv += ["--ro-bind", path, path]
    argv += ["--remount-ro", "/", "--clearenv", "--chdir", pod.workdir]
    env = {**container.env, "PATH": _virtualenv_path(), "PYTHONPATH": str(REPO)}
    for key, value in sorted(env.items()):
        argv += ["--setenv", key, value]
    return [*argv, "--", *container.argv]


_SPECIAL = ("--proc", "/proc", "--dev", "/dev", "--")


def sandbox_problem(search: str | None = None) -> str | None:
    """
    Why bubblewrap cannot run a container here (not installed, no user
    namespaces, …), or C{None} when it can.

    @param search: Where to look for C{bwrap} (default: C{PATH}).
    """
    bwrap = shutil.which("bwrap", path=search)
    if bwrap is None:
        return "bwrap not installed: apt-get install bubblewrap (make system-deps)"
    try:
        done = subprocess.run(
            [bwrap, "--unshare-user", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/", *_SPECIAL, "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap cannot run: {e}"
    if done.returncode != 0:
        return f"bwrap cannot make the namespaces a container needs here: {done.stderr.strip()}"
    return None
