# -*- test-case-name: tests.unit.test_cli_send -*-
"""
What C{alertgateway send-test} is to send where: L{prepare} turns its
options into a L{SendTest}.

With a URL and explicit credentials (C{--token}, C{--basic},
C{--api-key}, C{--grafana-secret}, C{--standard-secret}), it sends those.
With C{--config FILE}, it sends what a sender configured from that file
sends to one endpoint: the endpoint's own credentials (or
C{webhook.auth}'s) and its sender format.  The endpoint is C{--endpoint
PATH}, or the path of the URL; without a URL the address is the gateway's
own webhook listener, as the file says (C{https} when TLS is on, the
loopback address when it listens on every address).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import IO
from urllib.parse import urlsplit

import attrs

from alertgateway.cli._common import CommandError, load_or_report
from alertgateway.cli.credentials import GRAFANA_SIGNATURE_HEADER, Credentials, from_auth, from_options
from alertgateway.cli.https import ClientTLS
from alertgateway.config import EndpointConfig, GatewayConfig

__all__ = ["SendTest", "add_arguments", "prepare"]

# A listener description's parts are separated by unescaped colons.
_PARTS = re.compile(r"(?<!\\):")
_ANY_ADDRESS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 -- read, not bound


@attrs.frozen
class SendTest:
    """
    One sample to send.

    @ivar tls: The TLS of an C{https} URL: trusted authorities and client
        certificate; C{None} for the system's authorities and none.
    """

    url: str
    source: str
    credentials: Credentials | None
    timeout: float
    tls: ClientTLS | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """
    The options of C{send-test}, which L{prepare} reads.
    """
    parser.add_argument("url", nargs="?", help="the webhook's URL (with --endpoint: the gateway's scheme://host:port)")
    parser.add_argument(
        "--source", choices=("alertmanager", "grafana"), help="the sender format (default: the endpoint's)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    config = parser.add_argument_group("as the gateway's configuration says")
    config.add_argument("--config", "-c", help="send the endpoint's own credentials, read from this file")
    config.add_argument("--endpoint", help="the endpoint's path (default: the URL's); the URL defaults to the listener")
    given = parser.add_argument_group("explicit credentials (one at most)").add_mutually_exclusive_group()
    given.add_argument("--token", help="a bearer token")
    given.add_argument("--basic", metavar="USER:PASSWORD", help="HTTP Basic credentials")
    given.add_argument("--api-key", metavar="HEADER:KEY", help="an API key and the header it goes in")
    given.add_argument("--grafana-secret", metavar="SECRET", help="sign as Grafana does (HMAC-SHA256)")
    given.add_argument("--standard-secret", metavar="whsec_...", help="sign as Standard Webhooks says")
    signed = parser.add_argument_group("Grafana signatures")
    signed.add_argument("--signature-header", default=GRAFANA_SIGNATURE_HEADER, help="where the signature goes")
    signed.add_argument("--timestamp-header", help="send the time in this header, and sign it (default: none)")
    tls = parser.add_argument_group("HTTPS")
    tls.add_argument("--cacert", metavar="FILE", help="trust the certificate authorities of this PEM file only")
    tls.add_argument("--cert", metavar="FILE", help="a client certificate (PEM), with its key unless --key")
    tls.add_argument("--key", metavar="FILE", help="the client certificate's private key (PEM)")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def listener_url(config: GatewayConfig) -> str:
    """
    The base URL of the gateway's (first) webhook listener, as seen from
    the same host.

    @raise CommandError: If the configuration does not tell (a port chosen
        by the system, a listener that is not TCP).
    """
    description = config.webhook_listeners()[0]
    kind, *parts = _PARTS.split(description)
    named = dict(part.split("=", 1) for part in parts if "=" in part)
    positional = [part for part in parts if "=" not in part]
    port = named.get("port") or (positional[0] if positional else "0")
    if kind not in ("tcp", "tcp6", "ssl") or not port.isdigit() or int(port) == 0:
        raise CommandError(f"cannot tell the gateway's address from the listener {description!r}: give its URL")
    interface = _unescape(named.get("interface", ""))
    host = _ANY_ADDRESS.get(interface, interface)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if kind == "ssl" or config.security.tls_enabled else "http"
    return f"{scheme}://{host}:{port}"


def _endpoint(config: GatewayConfig, path: str, origin: str) -> tuple[int, EndpointConfig]:
    for index, endpoint in enumerate(config.webhook.endpoints):
        if path in endpoint.served_paths():
            return index, endpoint
    known = ", ".join(e.path for e in config.webhook.endpoints)
    raise CommandError(f"{path or '/'} is not a webhook endpoint of {origin} (its endpoints: {known})")


def _from_config(args: argparse.Namespace, config: GatewayConfig) -> tuple[str, str, Credentials | None]:
    """
    The URL, the sender format and the credentials of the endpoint the
    options name.
    """
    if args.endpoint is not None:
        base = args.url if args.url is not None else listener_url(config)
        if urlsplit(base).path not in ("", "/"):
            raise CommandError("with --endpoint, the URL is the gateway's address only (scheme://host:port)")
        url, path = base.rstrip("/") + args.endpoint, args.endpoint
    elif args.url is not None:
        url, path = args.url, urlsplit(args.url).path
    else:
        raise CommandError("name the endpoint to test: --endpoint PATH, or its URL")
    index, endpoint = _endpoint(config, path, args.config)
    credentials = None
    if endpoint.auth_required:
        where = f"webhook.endpoints[{index}].auth" if endpoint.auth is not None else "webhook.auth"
        credentials = from_auth(config.webhook.auth_for(endpoint), where)
    return url, args.source or endpoint.source or "alertmanager", credentials


def prepare(args: argparse.Namespace, err: IO[str], environ: Mapping[str, str] | None = None) -> SendTest | None:
    """
    The sample C{send-test}'s options ask for, or C{None} once what is
    wrong with the configuration they name is printed on C{err}.

    @param environ: Where the configuration's C{*_env} secrets are read.
    @raise CommandError: If the options cannot be followed.
    """
    explicit = from_options(
        token=args.token,
        basic=args.basic,
        api_key=args.api_key,
        grafana_secret=args.grafana_secret,
        standard_secret=args.standard_secret,
        signature_header=args.signature_header,
        timestamp_header=args.timestamp_header,
    )
    if args.config is None:
        if args.endpoint is not None:
            raise CommandError("--endpoint reads the endpoint from the configuration: give --config FILE too")
        if args.url is None:
            raise CommandError("give the webhook's URL, or --config FILE and --endpoint PATH")
        url, source, credentials = args.url, args.source or "alertmanager", explicit
    else:
        if explicit is not None:
            raise CommandError("--config sends the endpoint's own credentials: leave out the credential options")
        config = load_or_report(args.config, err, environ)
        if config is None:
            return None
        url, source, credentials = _from_config(args, config)
    if urlsplit(url).scheme not in ("http", "https"):
        raise CommandError(f"{url} is not an http:// or https:// URL")
    tls = ClientTLS(args.cacert, args.cert, args.key) if args.cacert or args.cert or args.key else None
    return SendTest(url, source, credentials, args.timeout, tls)
