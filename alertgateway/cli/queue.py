# -*- test-case-name: tests.unit.test_cli -*-
"""
C{alertgateway queue list|retry|purge}: the queue's dead letters and
pending items.
"""

from __future__ import annotations

import argparse
import json
from typing import IO

import attrs

from alertgateway.cli._common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_or_report

__all__ = ["queue_command"]


def queue_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """
    C{alertgateway queue list|retry|purge}: work on the queue database the
    configuration names, also while the gateway runs (a running gateway
    picks up retried items within a few seconds).
    """
    from alertgateway.delivery.journal import list_items, open_database, purge, retry_dead

    config = load_or_report(args.config, err)
    if config is None:
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
