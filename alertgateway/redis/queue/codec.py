# -*- test-case-name: tests.unit.test_redis_queue -*-
"""
An envelope as a Redis stream entry and back: one field, C{e}, holding the
envelope as compact JSON.  An envelope read from a stream knows where it
came from (its partition and entry ID), which is how it is acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from alertgateway.delivery.envelope import Envelope

__all__ = ["Ident", "decode", "encode", "ident_of"]

# An entry of the queue: its partition and its ID in that partition's stream.
Ident = tuple[int, str]


def ident_of(envelope: Envelope) -> Ident | None:
    """
    Where the envelope is in Redis, or C{None} for one that is not (taken
    from the local fallback queue).
    """
    if envelope.entry is None or envelope.partition is None:
        return None
    return (envelope.partition, envelope.entry)


def encode(envelope: Envelope, now: float) -> str:
    """
    The value of the entry's field C{e}; an envelope not yet stamped is
    accepted C{now}.
    """
    document = {
        "key": envelope.key,
        "body": envelope.body,
        "idempotency_key": envelope.idempotency_key,
        "request_id": envelope.request_id,
        "headers": [list(header) for header in envelope.headers],
        "accepted_at": envelope.accepted_at or now,
    }
    return json.dumps(document, separators=(",", ":"))


def decode(partition: int, entry: str, fields: Sequence[str]) -> Envelope:
    """
    The envelope of an entry, given its fields as Redis lists them (name,
    value, name, value...).

    @raise ValueError: If the entry is not an envelope of ours.
    """
    try:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        document = json.loads(values["e"])
        return Envelope(
            str(document["key"]),
            document["body"],
            str(document["idempotency_key"]),
            str(document["request_id"]),
            tuple((str(name), str(value)) for name, value in document["headers"]),
            accepted_at=float(document["accepted_at"]),
            entry=entry,
            partition=partition,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from e
