# -*- test-case-name: tests.unit.test_cli,tests.unit.test_cli_send,tests.unit.test_cli_queue -*-
"""
The C{alertgateway} command: C{check-config}, C{send-test}, C{queue} and
C{state}.

C{check-config PATH} validates a configuration file exactly as twistd does
(exit 0 with a summary, 2 with one line per problem).  C{send-test} posts
a sample alert in a sender's format, with a sender's credentials (given,
or an endpoint's in the gateway's configuration), and prints the answer.
C{queue list|retry|purge} works on the dead letters and pending items of
the queue, in its database or in Redis; C{state stats} counts what the
database keeps of the decisions.

One module a command: L{check}, L{send} (with L{target}, L{credentials}
and L{https}), L{queue}, L{state}; what they share in L{_common}.  This
module parses the command line and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import IO

from alertgateway.cli import queue, send, target
from alertgateway.cli._common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, CommandError
from alertgateway.cli.check import check_config
from alertgateway.cli.send import sample_payload, send_sample, send_test
from alertgateway.cli.state import state_command

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "build_parser",
    "check_config",
    "main",
    "sample_payload",
    "send_sample",
    "send_test",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertgateway", description="Alert webhook gateway tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    target.add_arguments(commands.add_parser("send-test", help="post a sample alert as a sender would"))
    queue_actions = queue.add_arguments(
        commands.add_parser("queue", help="show, re-queue and drop dead letters and pending items")
    )
    state = commands.add_parser("state", help="inspect the decision state the gateway keeps")
    state_actions = state.add_subparsers(dest="action", required=True)
    counts = state_actions.add_parser("stats", help="count episodes, storms, waiting members, replay keys, queue")
    counts.add_argument("--json", action="store_true", help="one JSON object")
    for action in (*queue_actions, counts):
        action.add_argument("--config", "-c", required=True, help="the gateway's configuration file")
    return parser


def main(argv: Sequence[str] | None = None, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.command == "check-config":
        return check_config(args.path, out, err)
    if args.command == "queue":
        return queue.queue_command(args, out, err)
    if args.command == "state":
        return state_command(args, out, err)
    try:
        test = target.prepare(args, err)
    except CommandError as e:
        print(f"alertgateway send-test: {e}", file=err)
        return EXIT_INVALID
    if test is None:
        return EXIT_INVALID
    return send.send_test(test, out, err)


def entry_point() -> None:
    sys.exit(main())
