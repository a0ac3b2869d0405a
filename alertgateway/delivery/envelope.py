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


@attrs.frozen(eq=False)
class Envelope:
    """
    One thing on its way to the processor (an alert, an escalation, a storm
    event), with the request that brought it.

    @ivar key: Envelopes of one key are delivered in order, one at a time:
        an alert's fingerprint, or C{storm:<groupId>}.
    @ivar body: The JSON object to send.  A queue keeps it as JSON text
        only (L{compact}): read, it is parsed again.
    @ivar idempotency_key: The same for every delivery of this thing.
    @ivar headers: Headers to send with it (webhook.forward_headers,
        add_headers).
    """

    key: str
    # Compared as the body it stands for (a compact envelope has none).
    _body: Mapping[str, Any] | None
    idempotency_key: str
    request_id: str
    headers: tuple[tuple[str, str], ...] = ()
    # The row in the durable queue, once written there.
    id: int | None = None
    # When the gateway accepted it (seconds since the epoch).
    accepted_at: float = 0.0
    # The body as compact JSON, made once: sized by the queue, written by
    # the journal and sent by the sink, all from the same text.  Given (an
    # envelope read back from a queue, or a copy of one), it must be the
    # body's: evolve(body=...) passes json_text=None with it.
    _json: str | None = attrs.field(default=None, repr=False, alias="json_text")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self._fields() == other._fields() and self.body == other.body

    def __hash__(self) -> int:
        return hash(self._fields())

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.key,
            self.idempotency_key,
            self.request_id,
            self.headers,
            self.id,
            self.accepted_at,
            self.entry,
            self.partition,
        )

    @property
    def body(self) -> Mapping[str, Any]:
        if self._body is not None:
            return self._body
        assert self._json is not None
        value: Mapping[str, Any] = json.loads(self._json)
        return value

    def json_body(self) -> str:
        """
        The body as compact JSON text.
        """
        if self._json is None:
            object.__setattr__(self, "_json", json.dumps(self._body, separators=(",", ":")))
        assert self._json is not None
        return self._json

    def compact(self, **changes: Any) -> Envelope:
        """
        This envelope (with C{changes}) keeping its body as JSON text only,
        as queues hold it: for an alert, well under half the memory of the
        decoded object, and the text is what the journal writes and the
        sink sends anyway.
        """
        return attrs.evolve(self, body=None, json_text=self.json_body(), **changes)

    @classmethod
    def from_text(cls, key: str, text: str, idempotency_key: str, request_id: str, **fields: Any) -> Envelope:
        """
        An envelope whose body is already JSON text (read back from a
        queue).
        """
        return cls(key, None, idempotency_key, request_id, json_text=text, **fields)

    # The Redis Streams entry it was read from, and that stream's partition
    # (the Redis queue; None elsewhere).
    entry: str | None = None
    partition: int | None = None

    @classmethod
    def for_alert(cls, alert: Alert, request_id: str, headers: tuple[tuple[str, str], ...] = ()) -> Envelope:
        return cls(alert.fingerprint, alert.to_json(), alert.idempotency_key, request_id, headers)
