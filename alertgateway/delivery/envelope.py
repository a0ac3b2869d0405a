# -*- test-case-name: tests.unit.test_queue -*-
"""
One thing on its way to the Alert Processor, as the queues keep it and the
sinks send it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from alertgateway.core.model import Alert

__all__ = ["Envelope"]


@attrs.frozen
class Envelope:
    """
    One thing on its way to the processor (an alert, an escalation, a storm
    event), with the request that brought it.

    @ivar key: Envelopes of one key are delivered in order, one at a time:
        an alert's fingerprint, or C{storm:<groupId>}.
    @ivar body: The JSON object to send.
    @ivar idempotency_key: The same for every delivery of this thing.
    @ivar headers: Headers to send with it (webhook.forward_headers,
        add_headers).
    """

    key: str
    body: Mapping[str, Any]
    idempotency_key: str
    request_id: str
    headers: tuple[tuple[str, str], ...] = ()
    # The row in the durable queue, once written there.
    id: int | None = None
    # When the gateway accepted it (seconds since the epoch).
    accepted_at: float = 0.0
    # The body as compact JSON, made once: sized by the queue, written by
    # the journal and sent by the sink, all from the same text.
    _json: str | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def json_body(self) -> str:
        """
        The body as compact JSON text.
        """
        if self._json is None:
            object.__setattr__(self, "_json", json.dumps(self.body, separators=(",", ":")))
        assert self._json is not None
        return self._json

    # The Redis Streams entry it was read from, and that stream's partition
    # (the Redis queue; None elsewhere).
    entry: str | None = None
    partition: int | None = None

    def stored(self, id: int | None, accepted_at: float) -> Envelope:
        """
        This envelope as a queue stored it: with its row and time, and the
        JSON text already made (an C{attrs.evolve} would make it again).
        """
        copy = attrs.evolve(self, id=id, accepted_at=accepted_at)
        object.__setattr__(copy, "_json", self._json)
        return copy

    @classmethod
    def for_alert(cls, alert: Alert, request_id: str, headers: tuple[tuple[str, str], ...] = ()) -> Envelope:
        return cls(alert.fingerprint, alert.to_json(), alert.idempotency_key, request_id, headers)
