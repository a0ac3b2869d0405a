"""
A plain C{pip install <repo>} into a fresh virtualenv gives a working
package: twistd finds the plugin, the console script validates the shipped
configuration, and the plugin module installs no reactor.

Everything runs in the new virtualenv, from a directory outside the
repository and without PYTHONPATH, so only the installed copy is used.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.integration.harness import REPO

# Creating the virtualenv and installing the dependencies from PyPI takes
# about a minute; the first test pays for it, the others reuse it.
INSTALL_TIMEOUT = 300.0
COMMAND_TIMEOUT = 60.0


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(args: Sequence[str], cwd: Path, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@functools.cache
def _installed() -> tuple[Path, Path]:
    """
    A fresh virtualenv with the repository pip-installed into it, and a
    scratch directory outside the repository to run commands from.

    @raise AssertionError: If creating or installing fails (cached, so every
        test reports the same failure instead of retrying for minutes).
    """
    root = Path(tempfile.mkdtemp(prefix="alertgateway-install-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    venv, scratch = root / "venv", root / "scratch"
    scratch.mkdir()
    # The interpreter that runs the tests may itself be in a virtualenv; the
    # new one must be based on the real installation, not nested in ours.
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = str(base if base.exists() else sys.executable)
    created = _run([python, "-m", "venv", str(venv)], scratch)
    if created.returncode != 0:
        raise AssertionError(f"venv creation failed:\n{created.stdout}{created.stderr}")
    installed = _run([str(venv / "bin" / "pip"), "install", str(REPO)], scratch, INSTALL_TIMEOUT)
    if installed.returncode != 0:
        raise AssertionError(f"pip install {REPO} failed:\n{installed.stdout}{installed.stderr}")
    return venv, scratch


class InstalledPackageTests(TestCase):
    timeout = INSTALL_TIMEOUT + 2 * COMMAND_TIMEOUT

    def test_twistd_lists_the_plugin(self) -> None:
        """
        After `pip install <repo>`, the virtualenv's `twistd --help` lists
        the alertgateway command (the plugin file is installed under
        twisted/plugins and found by twistd).
        """
        venv, scratch = _installed()
        result = _run([str(venv / "bin" / "twistd"), "--help"], scratch)
        self.assertEqual(result.returncode, 0, result.stderr)
        commands = result.stdout[result.stdout.index("Commands:") :]
        self.assertIn("alertgateway", [line.split()[0] for line in commands.splitlines()[1:] if line.strip()])
        help_text = _run([str(venv / "bin" / "twistd"), "alertgateway", "--help"], scratch)
        self.assertEqual(help_text.returncode, 0, help_text.stderr)
        self.assertIn("--config", help_text.stdout)

    def test_console_script_checks_the_shipped_config(self) -> None:
        """
        The installed `alertgateway check-config` accepts the repository's
        etc/alertgateway.yaml (exit 0, summary on stdout).
        """
        venv, scratch = _installed()
        result = _run(
            [str(venv / "bin" / "alertgateway"), "check-config", str(REPO / "etc" / "alertgateway.yaml")], scratch
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("OK", result.stdout)

    def test_plugin_module_installs_no_reactor(self) -> None:
        """
        Importing the installed twisted.plugins.alertgateway_plugin (which
        twistd does for every command just to list plugins) leaves
        twisted.internet.reactor unimported, and the module comes from the
        virtualenv, not the source tree.
        """
        venv, scratch = _installed()
        code = (
            "import sys, twisted.plugins.alertgateway_plugin as plugin, alertgateway\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'plugin module installed a reactor'\n"
            "print(plugin.__file__)\n"
            "print(alertgateway.__file__)\n"
        )
        result = _run([str(venv / "bin" / "python"), "-c", code], scratch)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for path in result.stdout.split():
            self.assertTrue(Path(path).resolve().is_relative_to(venv.resolve()), path)

    def test_lua_scripts_installed(self) -> None:
        """
        The Redis backends' Lua scripts are installed with the package
        (package_data): the installed modules load every one of them, from
        the virtualenv.
        """
        venv, scratch = _installed()
        code = (
            "from importlib import resources\n"
            "import alertgateway.redis.queue, alertgateway.redis.queue.admin, alertgateway.redis.decisions\n"
            "from alertgateway.redis import scripts\n"
            "files = [f for f in resources.files(scripts.__name__).iterdir() if f.name.endswith('.lua')]\n"
            "print(len(files), scripts.load('queue_put').name, scripts.LOAD.name)\n"
            "print(files[0])\n"
        )
        result = _run([str(venv / "bin" / "python"), "-c", code], scratch)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        summary, path = result.stdout.splitlines()
        self.assertEqual(summary, "17 queue_put state_load")
        self.assertTrue(Path(path).resolve().is_relative_to(venv.resolve()), path)
