"""
The twistd options: the configuration is validated while options are parsed.
"""

from __future__ import annotations

from pathlib import Path

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.app.tap import Options


class OptionsTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        path = Path(self.mktemp())
        path.write_text(text)
        return str(path)

    def test_valid_config_loaded(self) -> None:
        """
        --config names a file that is loaded into the options.
        """
        options = Options()
        options.parseOptions(["--config", self.write("service:\n  port: 8181\n")])
        self.assertEqual(options.config.service.port, 8181)

    def test_short_option(self) -> None:
        """
        -c is the short form of --config.
        """
        options = Options()
        options.parseOptions(["-c", self.write("service:\n  port: 8182\n")])
        self.assertEqual(options.config.service.port, 8182)

    def test_invalid_config_refused_with_problems(self) -> None:
        """
        An invalid file stops twistd with one block, which Python prints on
        standard error with exit status 1: a first line naming the file,
        then one line per problem, naming the key path.  It is no usage
        error, so twistd prints no usage text before it.
        """
        options = Options()
        path = self.write("service:\n  prot: 1\nwebhook:\n  endpoints:\n    - path: nope\n")
        error = self.assertRaises(SystemExit, options.parseOptions, ["--config", path])
        self.assertNotIsInstance(error, UsageError)
        assert isinstance(error.code, str)
        first, unknown, path_problem = error.code.splitlines()
        self.assertEqual(first, f"twistd alertgateway: invalid configuration in {path}, not started:")
        self.assertTrue(unknown.startswith("service.prot: unknown key (known keys: "), unknown)
        self.assertEqual(path_problem, "webhook.endpoints[0].path: must start with /")

    def test_config_required(self) -> None:
        """
        Without --config twistd refuses to start.
        """
        error = self.assertRaises(UsageError, Options().parseOptions, [])
        self.assertIn("--config FILE is required", str(error))
