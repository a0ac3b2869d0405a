"""
Helpers for the end-to-end tests with a real Alertmanager.

L{DocumentedAlertmanager} is the harness's Alertmanager whose webhook
receiver is the one C{docs/operations.md} tells operators to copy (the
block marked C{<!-- snippet: alertmanager-config name=e2e -->}), so the
documented configuration is the tested one.  L{RepeatingAlertmanager} is that
Alertmanager with route timers of the test's choosing (a short C{repeat_interval} makes it re-send a firing
group every few seconds).  L{WebhookRecorder} sits between Alertmanager and
the gateway and keeps every webhook and the gateway's answer to it, which
Alertmanager itself never shows: the answers are where the gateway says
C{new}, C{duplicate} or C{resolved}.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.integration.harness import REPO, AlertmanagerProcess, http_client, reactor, sleep

JSON: dict[bytes | str, list[bytes | str]] = {b"Content-Type": [b"application/json"]}

# Headers that belong to one hop, not to the webhook.
_HOP_HEADERS = frozenset({b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding"})


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


OPERATIONS = REPO / "docs" / "operations.md"
E2E_MARKER = "<!-- snippet: alertmanager-config name=e2e -->"


def documented_alertmanager_config() -> dict[str, Any]:
    """
    The C{alertmanager.yml} of C{docs/operations.md}: the fenced YAML block
    right after its C{<!-- snippet: alertmanager-config name=e2e -->} marker.
    """
    text = OPERATIONS.read_text()
    _, marker, rest = text.partition(E2E_MARKER)
    if not marker:
        raise FailTest(f"{OPERATIONS} has no {E2E_MARKER} marker")
    block = re.match(r"\s*```ya?ml\n(.*?)^```", rest, re.DOTALL | re.MULTILINE)
    if block is None:
        raise FailTest(f"no fenced YAML block follows {E2E_MARKER} in {OPERATIONS}")
    config: dict[str, Any] = yaml.safe_load(block.group(1))
    return config


def documented_webhook_config(webhook_url: str, token_file: str) -> dict[str, Any]:
    """
    The documented receiver's one C{webhook_configs} entry, with its URL
    replaced by C{webhook_url} (whose path must be the documented one: only
    the scheme, host and port are placeholders; no CA to verify with over
    plain HTTP) and its bearer credentials read from C{token_file}.
    """
    config = documented_alertmanager_config()
    receiver = config["route"]["receiver"]
    (documented,) = [r for r in config["receivers"] if r["name"] == receiver]
    (webhook,) = documented["webhook_configs"]
    webhook = copy.deepcopy(webhook)
    if urlsplit(webhook["url"]).path != urlsplit(webhook_url).path:
        raise FailTest(f"the documented receiver posts to {webhook['url']}, the test to {webhook_url}")
    webhook["url"] = webhook_url
    if urlsplit(webhook_url).scheme == "http":
        # The documented CA verifies the gateway's certificate; a test
        # gateway on plain HTTP has none.
        webhook["http_config"].pop("tls_config", None)
    authorization = webhook["http_config"]["authorization"]
    if authorization.get("type", "Bearer") != "Bearer":
        raise FailTest(f"the documented receiver does not send a bearer token: {authorization}")
    authorization.pop("credentials", None)
    authorization["credentials_file"] = token_file
    return dict(webhook)


class DocumentedAlertmanager(AlertmanagerProcess):
    """
    The harness's Alertmanager (clustering off, short group timers, state
    in a temp dir) with the documented webhook receiver, posting to
    C{webhook_url} with the bearer C{token} (written to the file the
    documented C{credentials_file} stands for).
    """

    def __init__(self, binary: str, webhook_url: str, token: str, group_interval: str = "1s") -> None:
        super().__init__(binary, webhook_url, token, group_interval=group_interval)
        token_file = self.directory / "alertgateway-token"
        token_file.write_text(token + "\n")
        config = yaml.safe_load(self.config_path.read_text())
        webhook = documented_webhook_config(webhook_url, str(token_file))
        config["receivers"] = [{"name": config["route"]["receiver"], "webhook_configs": [webhook]}]
        self.config_path.write_text(yaml.safe_dump(config))


class RepeatingAlertmanager(DocumentedAlertmanager):
    """
    L{DocumentedAlertmanager} with the route's C{group_wait},
    C{group_interval} and C{repeat_interval} set by the test.
    """

    def __init__(
        self,
        binary: str,
        webhook_url: str,
        token: str,
        *,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
    ) -> None:
        super().__init__(binary, webhook_url, token, group_interval=group_interval)
        config = yaml.safe_load(self.config_path.read_text())
        config["route"].update(group_wait=group_wait, group_interval=group_interval, repeat_interval=repeat_interval)
        self.config_path.write_text(yaml.safe_dump(config))

    async def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """
        Post alerts to Alertmanager's API (what Prometheus does).
        """
        response = await http_client().post(
            self.url + "/api/v2/alerts", data=json.dumps(list(alerts)).encode(), headers=JSON
        )
        body = await response.content()
        if response.code != 200:
            raise FailTest(f"Alertmanager refused the alerts ({response.code}): {body!r}")

    async def fingerprints(self) -> dict[str, dict[str, str]]:
        """
        The alerts Alertmanager knows: fingerprint → labels.
        """
        response = await http_client().get(self.url + "/api/v2/alerts")
        known: list[dict[str, Any]] = json.loads(await response.content())
        return {a["fingerprint"]: a["labels"] for a in known}


@attrs.frozen
class Exchange:
    """
    One webhook Alertmanager sent and the gateway's answer to it.
    """

    payload: dict[str, Any]
    code: int
    answer: dict[str, Any]

    def results(self) -> dict[str, dict[str, Any]]:
        """
        The gateway's per-alert results, by fingerprint.
        """
        return {r["fingerprint"]: r for r in self.answer.get("alerts", [])}


class _TrackingSite(Site):
    """
    A Site that remembers its open connections, so that stopping can close
    the ones Alertmanager keeps alive.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.noisy = False
        self.open: dict[Protocol, Deferred[None]] = {}

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        assert protocol is not None
        closed: Deferred[None] = Deferred()
        self.open[protocol] = closed
        original = protocol.connectionLost

        def connection_lost(reason: Failure) -> None:
            self.open.pop(protocol, None)
            original(reason)
            closed.callback(None)

        protocol.connectionLost = connection_lost
        return protocol


class WebhookRecorder(Resource):
    """
    A pass-through in front of the gateway: every request is relayed with
    its headers (Alertmanager's token and User-Agent included) and the
    gateway's answer is returned unchanged and kept in L{exchanges}.
    """

    isLeaf = True

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.exchanges: list[Exchange] = []
        self._port: IListeningPort | None = None
        self._site: _TrackingSite | None = None
        self._relays: set[Deferred[None]] = set()

    def render_POST(self, request: Any) -> int:
        relay = Deferred.fromCoroutine(self._relay(request))
        self._relays.add(relay)
        relay.addBoth(lambda _: self._relays.discard(relay))
        return NOT_DONE_YET

    async def _relay(self, request: Any) -> None:
        body: bytes = request.content.read()
        headers: dict[bytes | str, list[bytes | str]] = {
            name: list(values)
            for name, values in request.requestHeaders.getAllRawHeaders()
            if name.lower() not in _HOP_HEADERS
        }
        try:
            response = await http_client().post(
                self.target + request.uri.decode(), data=body, headers=headers, timeout=5
            )
            answer: bytes = await response.content()
            code: int = response.code
        except Exception as e:
            code, answer = 502, json.dumps({"relayError": repr(e)}).encode()
        try:
            decoded = json.loads(answer)
        except ValueError:
            decoded = {"raw": answer.decode("utf-8", "replace")}
        self.exchanges.append(Exchange(json.loads(body), code, decoded))
        if not request.finished and not request._disconnected:
            request.setResponseCode(code)
            request.setHeader(b"Content-Type", b"application/json")
            request.write(answer)
            request.finish()

    def sent_by(self, alertmanager: AlertmanagerProcess) -> list[Exchange]:
        """
        The webhooks one Alertmanager sent (its external URL names its port).
        """
        suffix = f":{alertmanager.port}"
        return [e for e in self.exchanges if e.payload.get("externalURL", "").rstrip("/").endswith(suffix)]

    def results_for(self, fingerprint: str) -> list[dict[str, Any]]:
        """
        The gateway's results for one alert, webhook after webhook.
        """
        return [e.results()[fingerprint] for e in self.exchanges if fingerprint in e.results()]

    async def settled(self) -> None:
        """
        Wait for the webhooks being relayed now to be answered and kept.
        """
        await DeferredList(list(self._relays))

    async def start(self) -> str:
        self._site = _TrackingSite(self)
        self._port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(self._site)
        address: Any = self._port.getHost()
        return f"http://127.0.0.1:{address.port}"

    async def stop(self) -> None:
        if self._port is not None:
            await maybeDeferred(self._port.stopListening)
        if self._site is not None:
            closing = list(self._site.open.values())
            for protocol in list(self._site.open):
                assert protocol.transport is not None
                protocol.transport.abortConnection()  # type: ignore[attr-defined]
            await DeferredList(closing)
        await self.settled()


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 10.0, interval: float = 0.2
) -> None:
    """
    Poll C{check} until it holds; past C{timeout} the test fails saying
    C{what} it was waiting for.
    """
    deadline = reactor.seconds() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if reactor.seconds() >= deadline:
            raise FailTest(f"timed out after {timeout}s waiting for {what}")
        await sleep(interval)
