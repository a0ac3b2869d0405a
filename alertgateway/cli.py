# -*- test-case-name: tests.unit.test_cli -*-
"""
The C{alertgateway} command: C{check-config}, C{send-test}, C{queue} and
C{state}.

C{check-config PATH} validates a configuration file exactly as twistd does
(exit 0 with a summary, 2 with one line per problem).  C{send-test URL}
posts a sample alert in a sender's format and prints the answer.
C{queue list|retry|purge} works on the queue database's dead letters and
pending items; C{state stats} counts what the database keeps of the
decisions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import attrs
from twisted.internet.interfaces import IReactorTime

from alertgateway.config import ConfigError, GatewayConfig, load_config, warnings_for

__all__ = ["build_parser", "check_config", "main", "sample_payload", "send_sample", "send_test"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _summary(path: str, config: GatewayConfig) -> list[str]:
    lines = [f"{path}: OK"]
    shared = " (SO_REUSEPORT, shared with other processes)" if config.service.reuse_port else ""
    lines.append(f"  webhook listeners: {', '.join(config.webhook_listeners())}{shared}")
    if config.service.probe_listen:
        lines.append(f"  probe listeners: {', '.join(config.service.probe_listen)}")
    for endpoint in config.webhook.endpoints:
        # Which kind, since an endpoint may override webhook.auth.
        kind = config.webhook.auth_for(endpoint).type
        auth = f"auth required ({kind})" if endpoint.auth_required else "no auth"
        lines.append(f"  endpoint {endpoint.path} (and /v1{endpoint.path}): {endpoint.source}, {auth}")
    processor = config.alert_processor
    # The URL carries no credential (validation refuses one); the secret
    # itself is never printed.
    credential = f", {processor.auth_header} from its auth_secret" if processor.auth_secret else ""
    lines.append(f"  alert processor: {processor.name} at {processor.endpoint}{credential}")
    lines.append(f"  queue: {config.queue.backend}")
    lines.append(f"  state: {config.state.backend}")
    if "redis" in (config.queue.backend, config.state.backend):
        redis = config.state.redis
        # The host part only: the URL may carry a password.
        from urllib.parse import urlsplit

        url = urlsplit(redis.url)
        lines.append(
            f"  redis: {url.scheme}://{url.hostname}:{url.port or 6379}{url.path}"
            f" (prefix {redis.key_prefix!r}, on failure {redis.on_failure})"
        )
    if config.metrics.enabled:
        where = "webhook port" if config.metrics_on_webhook_port() else ", ".join(config.metrics_listeners())
        lines.append(f"  metrics: {config.metrics.path} on {where}")
    lines.extend(f"  warning: {w}" for w in warnings_for(config))
    return lines


def check_config(path: str, out: IO[str], err: IO[str], environ: Mapping[str, str] | None = None) -> int:
    """
    Validate the file at C{path} as twistd would: a summary on C{out} and
    L{EXIT_OK}, or one line per problem on C{err} and L{EXIT_INVALID}.
    """
    try:
        config = load_config(path, environ)
    except ConfigError as e:
        for problem in e.problems:
            print(str(problem), file=err)
        return EXIT_INVALID
    print("\n".join(_summary(path, config)), file=out)
    return EXIT_OK


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertgateway", description="Alert webhook gateway tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    send = commands.add_parser("send-test", help="post a sample alert to a webhook URL")
    send.add_argument("url")
    send.add_argument("--source", choices=("alertmanager", "grafana"), default="alertmanager")
    send.add_argument("--token", default=None, help="bearer token")
    send.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer")
    queue = commands.add_parser("queue", help="show, re-queue and drop dead letters and pending items")
    actions = queue.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list queued items (dead letters by default)")
    listing.add_argument("--state", choices=("dead", "pending", "all"), default="dead")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    retry = actions.add_parser("retry", help="send dead letters again (all, or the given ids)")
    retry.add_argument("ids", nargs="*", type=int)
    drop = actions.add_parser("purge", help="drop dead letters (or pending items) for good")
    drop.add_argument("--state", choices=("dead", "pending"), default="dead")
    drop.add_argument("ids", nargs="*", type=int)
    state = commands.add_parser("state", help="inspect the decision state the gateway keeps")
    state_actions = state.add_subparsers(dest="action", required=True)
    counts = state_actions.add_parser("stats", help="count episodes, storms, waiting members, replay keys, queue")
    counts.add_argument("--json", action="store_true", help="one JSON object")
    for action in (listing, retry, drop, counts):
        action.add_argument("--config", "-c", required=True, help="the gateway's configuration file")
    return parser


def queue_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """
    C{alertgateway queue list|retry|purge}: work on the queue database the
    configuration names, also while the gateway runs (a running gateway
    picks up retried items within a few seconds).
    """
    from alertgateway.delivery.journal import list_items, open_database, purge, retry_dead

    try:
        config = load_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(str(problem), file=err)
        return EXIT_INVALID
    if config.queue.backend != "sqlite":
        print(f"queue.backend is {config.queue.backend}: there is no queue database to work on", file=err)
        return EXIT_FAILED
    connection = open_database(config.queue.path)
    try:
        if args.action == "list":
            items = list_items(connection, None if args.state == "all" else args.state)
            for item in items:
                if args.json:
                    print(json.dumps(attrs.asdict(item), separators=(",", ":")), file=out)
                else:
                    fingerprint = item.body.get("fingerprint", "-")
                    print(f"{item.id}\t{item.key}\t{fingerprint}\t{item.attempts}\t{item.reason}", file=out)
            print(f"{len(items)} item(s)", file=err)
        elif args.action == "retry":
            print(f"{retry_dead(connection, args.ids)} dead letter(s) marked for another try", file=out)
        else:
            print(f"{purge(connection, args.state, args.ids)} {args.state} item(s) dropped", file=out)
    finally:
        connection.close()
    return EXIT_OK


def state_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """
    C{alertgateway state stats}: what the database of C{state.backend:
    sqlite} holds (it may run beside the gateway: SQLite's WAL lets it
    read while the gateway writes).
    """
    from alertgateway.delivery.journal import open_database
    from alertgateway.state.sqlite import stats

    try:
        config = load_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(str(problem), file=err)
        return EXIT_INVALID
    if config.state.backend != "sqlite":
        where = "nothing is kept between runs" if config.state.backend == "memory" else "see its /metrics gauges"
        print(f"state.backend is {config.state.backend}: {where}", file=err)
        return EXIT_FAILED
    if not os.path.exists(config.queue.path):
        print(f"no database at {config.queue.path}: the gateway has not run with this configuration here", file=err)
        return EXIT_FAILED
    connection = open_database(config.queue.path)
    try:
        counts = stats(connection)
    finally:
        connection.close()
    if args.json:
        print(json.dumps(counts, separators=(",", ":")), file=out)
    else:
        for name, count in counts.items():
            print(f"{name.replace('_', ' ')}: {count}", file=out)
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.command == "check-config":
        return check_config(args.path, out, err)
    if args.command == "queue":
        return queue_command(args, out, err)
    if args.command == "state":
        return state_command(args, out, err)
    return send_test(args.url, args.source, args.token, args.timeout, out)


def entry_point() -> None:
    sys.exit(main())
