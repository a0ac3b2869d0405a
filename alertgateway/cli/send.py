# -*- test-case-name: tests.unit.test_cli_send,tests.unit.test_cli -*-
"""
C{alertgateway send-test}: post a sample alert in a sender's format, with
a sender's credentials, and print the answer.

L{sample_payload} is the alert, L{send_sample} sends it through any treq
client (tests give it C{StubTreq}), L{send_test} through treq on the global
reactor, over HTTPS as L{alertgateway.cli.https} says.  What to send where
is L{alertgateway.cli.target}'s.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from OpenSSL import SSL
from twisted.internet.interfaces import IReactorTime

from alertgateway.cli._common import EXIT_FAILED, EXIT_OK, on_reactor
from alertgateway.cli.target import SendTest

__all__ = ["sample_payload", "send_sample", "send_test"]


def sample_payload(source: str, now: datetime | None = None) -> dict[str, Any]:
    """
    A small, valid webhook body in the given sender's format.
    """
    started = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    alert = {
        "status": "firing",
        # A label of its own per run: with deduplication, a second test
        # within the window would otherwise be a duplicate and go nowhere.
        "labels": {
            "alertname": "AlertGatewayTest",
            "severity": "info",
            "namespace": "alertgateway",
            "test_id": uuid.uuid4().hex[:12],
        },
        "annotations": {"summary": "Test alert sent by alertgateway send-test"},
        "startsAt": started,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
    }
    body: dict[str, Any] = {
        "receiver": "alertgateway-send-test",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "AlertGatewayTest"},
        "commonLabels": alert["labels"],
        "commonAnnotations": {},
        "externalURL": "",
        "groupKey": '{}:{alertname="AlertGatewayTest"}',
        "truncatedAlerts": 0,
    }
    if source == "grafana":
        body.update(version="1", orgId=1, title="[FIRING:1] AlertGatewayTest", state="alerting", message="test")
    else:
        body["version"] = "4"
    return body


def _describe(error: BaseException) -> str:
    """
    What went wrong, in one line: twisted.web wraps the causes of a
    request that failed (a refused connection, a TLS handshake) in a list.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_describe(reason.value) for reason in reasons)
    if isinstance(error, SSL.Error):
        details = [part for arg in error.args for item in arg for part in item if isinstance(part, str) and part]
        return f"TLS: {details[-1] if details else error}"
    return f"{type(error).__name__}: {error}".rstrip(": ")


async def send_sample(client: Any, test: SendTest, out: IO[str], *, clock: IReactorTime) -> int:
    """
    Post L{sample_payload} in C{test.source}'s format to C{test.url} with
    C{test.credentials}, and print the answer.

    @param client: C{treq}, a C{treq.client.HTTPClient} or anything else
        with their C{post} (such as C{treq.testing.StubTreq}).
    @param clock: Times the request out, dates the sample alert and the
        signatures; treq would otherwise reach for the global reactor.
    @return: L{EXIT_OK} for a 2xx answer, L{EXIT_FAILED} otherwise.
    """
    from treq import text_content

    now = clock.seconds()
    body = json.dumps(sample_payload(test.source, datetime.fromtimestamp(now, UTC))).encode("utf-8")
    headers: dict[bytes | str, list[bytes | str]] = {
        "Content-Type": ["application/json"],
        "User-Agent": ["alertgateway-send-test"],
    }
    if test.credentials is not None:
        headers.update((name, [value]) for name, value in test.credentials.headers(body, now).items())
    try:
        response = await client.post(test.url, data=body, headers=headers, timeout=test.timeout, reactor=clock)
        text = await text_content(response, encoding="utf-8")
    except Exception as e:
        print(f"error: {_describe(e)}", file=out)
        return EXIT_FAILED
    print(f"HTTP {response.code}", file=out)
    for name in (b"Content-Type", b"X-Request-ID"):
        for value in response.headers.getRawHeaders(name, []):
            print(f"{name.decode()}: {value.decode('latin-1')}", file=out)
    print(text, file=out)
    return EXIT_OK if 200 <= response.code < 300 else EXIT_FAILED


def send_test(test: SendTest, out: IO[str], err: IO[str]) -> int:
    """
    Run L{send_sample} with treq on the global reactor (the command line's
    entry point; tests call L{send_sample} instead), saying on C{err} what
    is sent.
    """
    from treq.client import HTTPClient
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

    what = test.credentials.scheme if test.credentials is not None else "no credentials"
    print(f"POST {test.url}: a {test.source} sample, {what}", file=err)

    async def _send(reactor: Any) -> int:
        policy = test.tls if test.tls is not None else BrowserLikePolicyForHTTPS()
        agent = Agent(reactor, contextFactory=policy, connectTimeout=test.timeout)
        return await send_sample(HTTPClient(agent), test, out, clock=reactor)

    return on_reactor(_send)
