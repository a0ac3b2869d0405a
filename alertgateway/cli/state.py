# -*- test-case-name: tests.unit.test_cli -*-
"""
C{alertgateway state stats}: what the database of C{state.backend: sqlite}
keeps of the decisions.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import IO

from alertgateway.cli._common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, load_or_report

__all__ = ["state_command"]


def state_command(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """
    C{alertgateway state stats}: what the database of C{state.backend:
    sqlite} holds (it may run beside the gateway: SQLite's WAL lets it
    read while the gateway writes).
    """
    from alertgateway.delivery.journal import open_database
    from alertgateway.state.sqlite import stats

    config = load_or_report(args.config, err)
    if config is None:
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
