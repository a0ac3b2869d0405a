# -*- test-case-name: tests.unit.test_cli -*-
"""
C{alertgateway send-test URL}: post a sample alert in a sender's format and
print the answer.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime

from alertgateway.cli._common import EXIT_FAILED, EXIT_OK

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


async def send_sample(
    client: Any,
    url: str,
    source: str,
    token: str | None,
    timeout: float,
    out: IO[str],
    *,
    clock: IReactorTime,
) -> int:
    """
    Post L{sample_payload} for C{source} to C{url} and print the answer.

    @param client: C{treq}, a C{treq.client.HTTPClient} or anything else
        with their C{post} (such as C{treq.testing.StubTreq}).
    @param clock: Times the request out, and dates the sample alert; treq
        would otherwise reach for the global reactor.
    @return: L{EXIT_OK} for a 2xx answer, L{EXIT_FAILED} otherwise.
    """
    from treq import text_content

    headers: dict[bytes | str, list[bytes | str]] = {
        "Content-Type": ["application/json"],
        "User-Agent": ["alertgateway-send-test"],
    }
    if token:
        headers["Authorization"] = [f"Bearer {token}"]
    now = datetime.fromtimestamp(clock.seconds(), UTC)
    body = json.dumps(sample_payload(source, now)).encode("utf-8")
    try:
        response = await client.post(url, data=body, headers=headers, timeout=timeout, reactor=clock)
        text = await text_content(response, encoding="utf-8")
    except Exception as e:
        print(f"error: {type(e).__name__}: {e}", file=out)
        return EXIT_FAILED
    print(f"HTTP {response.code}", file=out)
    for name in (b"Content-Type", b"X-Request-ID"):
        for value in response.headers.getRawHeaders(name, []):
            print(f"{name.decode()}: {value.decode('latin-1')}", file=out)
    print(text, file=out)
    return EXIT_OK if 200 <= response.code < 300 else EXIT_FAILED


def send_test(url: str, source: str, token: str | None, timeout: float, out: IO[str]) -> int:
    """
    Run L{send_sample} with treq on the global reactor (the command line's
    entry point; tests call L{send_sample} instead).
    """
    import treq
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    result: list[int] = []

    async def _send(reactor: Any) -> None:
        result.append(await send_sample(treq, url, source, token, timeout, out, clock=reactor))

    # react() ends with sys.exit(); the exit code is ours to choose.
    with contextlib.suppress(SystemExit):
        react(lambda reactor: ensureDeferred(_send(reactor)))
    return result[0] if result else EXIT_FAILED
