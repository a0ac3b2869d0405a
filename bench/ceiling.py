"""
The ceiling: the least a Twisted webhook receiver can do.

A bare ``twisted.web`` resource that reads the body, ``json.loads`` it and
answers 202 with a small JSON body: no authentication, validation,
deduplication, queue, metrics or log.  Run under the same conditions as the
gateway (same CPU, same wrk script and payload), its requests/s is what the
gateway's throughput is divided by.

Run: ``python -m bench.ceiling [--port 0]``; prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from twisted.web.resource import Resource

from bench.serve import serve


class Ceiling(Resource):
    """
    Parse the JSON body, answer 202.
    """

    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        payload = json.loads(request.content.read())
        request.setResponseCode(202)
        request.setHeader(b"content-type", b"application/json")
        count = len(payload.get("alerts", ())) if isinstance(payload, dict) else 0
        return b'{"status":"accepted","accepted":%d}' % count


def main() -> None:
    parser = argparse.ArgumentParser(description="The benchmark's ceiling: parse the JSON, answer 202.")
    parser.add_argument("--port", type=int, default=0)
    serve(Ceiling(), parser.parse_args().port)


if __name__ == "__main__":
    main()
