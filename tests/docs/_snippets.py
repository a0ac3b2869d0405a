"""
Turn the documentation's gateway configuration snippets into files the
gateway can load, as an operator's machine would have them.

A snippet shows the sections it is about; the rest take their defaults.
It is merged into L{BASE} (mappings key by key, anything else replaced by
the snippet's value), which only gives C{webhook.auth} a token, so that a
snippet about rate limits does not also need credentials to load without a
warning. Every file a snippet names (C{*_file}: secrets, certificates) is
written to a directory of the test's with what such a file holds, and the
snippet is pointed at it; every environment variable it names (C{*_env})
is set, from L{SNIPPET_ENV} when the documentation's shell snippets use it
too. A C{template} snippet's C{@NAME@} placeholders become C{1}.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.docs._markdown import Block
from tests.integration._certs import Authority, write_pem

TOKEN = "docs-token-6b1f0c"
PASSWORD = "docs-password-3e9a41"
HMAC_SECRET = "docs-hmac-secret-d52c7e"
# The Standard Webhooks specification's example secret.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# Variables the documentation's snippets read, on the gateway's side and the
# sender's: the same secret under both names.
SNIPPET_ENV: Mapping[str, str] = {
    "TOKEN": TOKEN,
    "WEBHOOK_TOKEN": TOKEN,
    "ALERTMANAGER_PASSWORD": PASSWORD,
    "REDIS_PASSWORD": PASSWORD,
    "GRAFANA_HMAC_SECRET": HMAC_SECRET,
    "ALERTGATEWAY_HMAC_SECRET": HMAC_SECRET,
}

BASE: Mapping[str, Any] = {"webhook": {"auth": {"token": TOKEN}}}

_TLS_KEYS = ("cert_file", "key_file", "chain_file", "client_ca_file", "ca_file")


def merged(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """
    C{overlay} over C{base}: mappings merged key by key, any other value of
    C{overlay} replacing C{base}'s.
    """
    result = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def snippet_yaml(block: Block) -> dict[str, Any]:
    """
    The snippet's YAML, its template placeholders filled in.
    """
    text = re.sub(r"@[A-Z_]+@", "1", block.text) if "template" in block.flags else block.text
    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"{block.where}: not a YAML mapping")
    return loaded


class Supplier:
    """
    Writes the files a configuration names into C{directory} and collects
    the environment it needs.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.environ: dict[str, str] = dict(SNIPPET_ENV)
        self._count = 0
        self._ca: Authority | None = None
        self._pair: tuple[bytes, bytes] | None = None

    def gateway_config(self, block: Block) -> dict[str, Any]:
        """
        The snippet merged into L{BASE}, with its files supplied.
        """
        config = merged(BASE, snippet_yaml(block))
        self.supply(config, scheme=None)
        return config

    def supply(self, node: Any, scheme: str | None) -> None:
        if isinstance(node, list):
            for item in node:
                self.supply(item, scheme)
            return
        if not isinstance(node, dict):
            return
        scheme = node.get("scheme", scheme)
        for key, value in list(node.items()):
            if key.endswith("_file") and isinstance(value, str):
                node[key] = str(self._write(key, value, scheme))
            elif key.endswith("_env") and isinstance(value, str):
                default = STANDARD_SECRET if scheme == "standard" else HMAC_SECRET
                self.environ.setdefault(value, default)
            else:
                self.supply(value, scheme)

    def _write(self, key: str, original: str, scheme: str | None) -> Path:
        self._count += 1
        path = self.directory / f"{self._count}-{Path(original).name}"
        if key in ("cert_file", "key_file"):
            certificate, private_key = self._server()
            return write_pem(path, certificate if key == "cert_file" else private_key)
        if key in _TLS_KEYS:
            return write_pem(path, self._authority().cert_pem)
        if key == "password_file":
            path.write_text(PASSWORD + "\n")
        elif key == "secret_file":
            path.write_text((STANDARD_SECRET if scheme == "standard" else HMAC_SECRET) + "\n")
        else:
            path.write_text(TOKEN + "\n")
        return path

    def _authority(self) -> Authority:
        if self._ca is None:
            self._ca = Authority("docs-ca")
        return self._ca

    def _server(self) -> tuple[bytes, bytes]:
        """
        One server certificate and key per configuration, so the two files
        match.
        """
        if self._pair is None:
            server = self._authority().server()
            self._pair = (server.cert_pem, server.key_pem)
        return self._pair
