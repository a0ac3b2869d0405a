# -*- test-case-name: tests.unit.test_cli_queue -*-
"""
L{QueueAdmin}: what C{alertgateway queue list|retry|purge} does with the
Redis queue, beside the replicas that deliver from it.

Pending items are the entries of the partitions' streams, read by a
replica or not yet; their attempts are how often the consumer group handed
them to a replica (C{XPENDING}), since a replica keeps its delivery
attempts to itself.  Dead letters are the entries of the C{dead} stream,
with the reason and the attempts of their burial.  Items are named by
their stream entry: C{<partition>/<entry ID>} for a pending one, the entry
ID for a dead letter.

Retrying a dead letter appends its envelope (the same idempotency key) to
the stream its key now belongs to, behind what is queued for that key,
within C{queue.max_items}: one script each, so a dead letter is either
back in the queue or still dead.  Purging a pending item deletes and
acknowledges its entry; a replica that had already read it may still
deliver it once.

Every listing is bounded (C{limit}), and the commands that act on every
item walk the streams in batches of L{BATCH}.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs

from alertgateway.delivery.journal import QueuedItem
from alertgateway.redis.client import RedisClient, RedisError
from alertgateway.redis.queue.codec import decode
from alertgateway.redis.queue.keys import GROUP, QueueKeys, partition_of
from alertgateway.redis.scripts import load

__all__ = ["BATCH", "QueueAdmin", "Retried", "is_entry_name"]

_REVIVE = load("queue_revive")
_DROP = load("queue_drop")

# Entries read or acted on at once.
BATCH = 100

_ENTRY = r"[0-9]{1,20}-[0-9]{1,20}"
_DEAD_NAME = re.compile(_ENTRY)
_PENDING_NAME = re.compile(rf"([0-9]{{1,6}})/({_ENTRY})")


def is_entry_name(name: str) -> bool:
    """
    Whether C{name} names an item of the Redis queue (pending or dead).
    """
    return bool(_DEAD_NAME.fullmatch(name) or _PENDING_NAME.fullmatch(name))


@attrs.frozen
class Retried:
    """
    What C{retry} did: dead letters put back in the queue, and those left
    dead because the queue was full.
    """

    moved: int = 0
    left: int = 0


def _fields(entry: Any) -> tuple[str, list[str]]:
    entry_id, fields = entry
    return str(entry_id), [str(f) for f in fields]


def _item(name: str, state: str, entry: tuple[str, list[str]], attempts: int, reason: str = "") -> QueuedItem:
    entry_id, fields = entry
    try:
        # The partition is where the entry is, which the name says.
        envelope = decode(0, entry_id, fields)
    except ValueError as e:
        return QueuedItem(name, state, "", "", 0.0, attempts, f"not an envelope ({e})", {})
    body = dict(envelope.body)
    return QueuedItem(name, state, envelope.key, envelope.request_id, envelope.accepted_at, attempts, reason, body)


class QueueAdmin:
    """
    The Redis queue's pending items and dead letters, for an operator.

    @param partitions: C{queue.redis.partitions}: where retried dead
        letters go.
    @param max_items: C{queue.max_items}: retried dead letters stay within
        it.
    """

    def __init__(self, client: RedisClient, *, partitions: int, max_items: int) -> None:
        self._client = client
        self._keys = QueueKeys.of(client, partitions)
        self._partitions = partitions
        self._max_items = max_items

    async def _command(self, *args: Any) -> Any:
        return await self._client.command("queue_admin", *args)

    async def _range(self, stream: str, start: str = "-", count: int = BATCH) -> list[tuple[str, list[str]]]:
        return [_fields(entry) for entry in await self._command("XRANGE", stream, start, "+", "COUNT", count)]

    async def _walk(self, stream: str) -> AsyncIterator[list[tuple[str, list[str]]]]:
        """
        A stream's entries, a batch at a time, each read once the one
        before it was dealt with (and perhaps deleted).
        """
        start = "-"
        while batch := await self._range(stream, start):
            yield batch
            start = "(" + batch[-1][0]

    async def _named(self, stream: str, entry_ids: Sequence[str]) -> list[tuple[str, list[str]]]:
        found: list[tuple[str, list[str]]] = []
        for entry_id in entry_ids:
            found.extend(entry for entry in await self._range(stream, entry_id, 1) if entry[0] == entry_id)
        return found

    # Counting and listing.

    async def count(self, state: str | None) -> int:
        """
        How many items are pending, dead, or either (C{None}).
        """
        streams = {"pending": self._keys.streams, "dead": (self._keys.dead,)}.get(state or "", self.all_streams)
        return sum([int(await self._command("XLEN", stream)) for stream in streams])

    @property
    def all_streams(self) -> tuple[str, ...]:
        return (*self._keys.streams, self._keys.dead)

    async def pending(self, limit: int) -> list[QueuedItem]:
        """
        The oldest pending items, at most C{limit} of them.
        """
        items: list[QueuedItem] = []
        for partition, stream in enumerate(self._keys.streams):
            entries = await self._range(stream, count=limit)
            if not entries:
                continue
            try:
                handed = await self._command("XPENDING", stream, GROUP, entries[0][0], entries[-1][0], len(entries))
            except RedisError:
                # No group yet: no replica ever read this stream.
                handed = []
            attempts = {str(h[0]): int(h[3]) for h in handed}
            items.extend(
                _item(f"{partition}/{entry[0]}", "pending", entry, attempts.get(entry[0], 0)) for entry in entries
            )
        return sorted(items, key=lambda item: item.accepted_at)[:limit]

    async def dead(self, limit: int) -> list[QueuedItem]:
        """
        The oldest dead letters, at most C{limit} of them.
        """
        items = []
        for entry in await self._range(self._keys.dead, count=limit):
            fields = entry[1]
            values = dict(zip(fields[::2], fields[1::2], strict=False))
            items.append(_item(entry[0], "dead", entry, int(values.get("attempts") or 0), values.get("reason", "")))
        return items

    # Acting.

    async def retry(self, names: Sequence[str] = ()) -> Retried:
        """
        Put the named dead letters (every one by default) back in the
        queue, oldest first, until it is full.
        """
        retried = Retried()
        if names:
            retried = await self._revive(retried, await self._named(self._keys.dead, _dead(names)))
        else:
            async for batch in self._walk(self._keys.dead):
                retried = await self._revive(retried, batch)
        return retried

    async def _revive(self, retried: Retried, entries: list[tuple[str, list[str]]]) -> Retried:
        moved, left = retried.moved, retried.left
        for entry_id, fields in entries:
            try:
                key = decode(0, entry_id, fields).key
            except ValueError:
                # Not an envelope: it stays as it was found.
                continue
            if left:
                # The queue is full: the rest stay dead.
                left += 1
                continue
            keys = [self._keys.dead, self._keys.length, self._keys.streams[partition_of(key, self._partitions)]]
            done = int(await self._client.script(_REVIVE, keys, [self._max_items, entry_id]))
            moved += done == 1
            left += done == 0
        return Retried(moved, left)

    async def purge(self, state: str, names: Sequence[str] = ()) -> int:
        """
        Drop the named items in C{state} (every one by default) for good.
        """
        if state == "dead":
            if names:
                dead = _dead(names)
                return int(await self._command("XDEL", self._keys.dead, *dead)) if dead else 0
            dropped = 0
            async for batch in self._walk(self._keys.dead):
                dropped += int(await self._command("XDEL", self._keys.dead, *[entry_id for entry_id, _ in batch]))
            return dropped
        if names:
            return sum([await self._drop(partition, entries) for partition, entries in _pending(names).items()])
        dropped = 0
        for partition, stream in enumerate(self._keys.streams):
            async for batch in self._walk(stream):
                dropped += await self._drop(partition, [entry_id for entry_id, _ in batch])
        return dropped

    async def _drop(self, partition: int, entry_ids: list[str]) -> int:
        if partition >= self._partitions:
            return 0
        keys = [self._keys.streams[partition], self._keys.length]
        dropped = 0
        for start in range(0, len(entry_ids), BATCH):
            dropped += int(await self._client.script(_DROP, keys, [GROUP, *entry_ids[start : start + BATCH]]))
        return dropped


def _dead(names: Sequence[str]) -> list[str]:
    return [name for name in names if _DEAD_NAME.fullmatch(name)]


def _pending(names: Sequence[str]) -> dict[int, list[str]]:
    by_partition: dict[int, list[str]] = {}
    for name in names:
        match = _PENDING_NAME.fullmatch(name)
        if match:
            by_partition.setdefault(int(match.group(1)), []).append(match.group(2))
    return by_partition
