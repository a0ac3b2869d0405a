"""
The deduplication state: one episode per dedup key, bounded and expiring.

An episode starts with a firing (or an unknown resolved) alert and lasts
while sightings keep coming within the window; a resolved alert closes it
but it is remembered until the window lapses, so a repeated resolved is
still a duplicate.  L{MemoryEpisodes} is the in-memory store: least
recently seen first out when C{max_tracked} is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Protocol

import attrs

__all__ = ["Episode", "EpisodeStore", "MemoryEpisodes"]


@attrs.define
class Episode:
    """
    What the gateway knows of one dedup key.

    @ivar duplicates: Sightings after the first, in this episode.
    @ivar recent: Times of recent duplicates, for rules "N within W".
    @ivar escalation: The escalation level, once escalated in this episode.
    @ivar delivery: How the delivery of what was last forwarded for it
        went: C{queued}, then the forwarder's outcome.  One folded into a
        storm stays C{queued}: storm events are not followed per member.
    @ivar forwarded: The idempotency key of what was last forwarded for it,
        so that the outcome of an earlier envelope (of this key's previous
        episode, say) is not taken for the latest one's.
    """

    key: str
    fingerprint: str
    status: str
    first_seen: float
    last_seen: float
    group_id: str
    environment: str
    source: str
    duplicates: int = 0
    # A list, not a deque: it holds a few times at most, and an empty deque
    # costs ten times an empty list, for every one of 100,000 episodes.
    recent: list[float] = attrs.field(factory=list)
    escalation: str | None = None
    storm_id: str | None = None
    delivery: str = "queued"
    forwarded: str | None = None

    def copy(self) -> Episode:
        """
        An independent copy (its only mutable field is the list of recent
        sightings), made field by field: this runs for every webhook.
        """
        return Episode(
            self.key,
            self.fingerprint,
            self.status,
            self.first_seen,
            self.last_seen,
            self.group_id,
            self.environment,
            self.source,
            self.duplicates,
            list(self.recent),
            self.escalation,
            self.storm_id,
            self.delivery,
            self.forwarded,
        )

    def to_json(self) -> dict[str, Any]:
        """
        The episode as JSON-ready data, for shared state.
        """
        return {**attrs.asdict(self), "recent": list(self.recent)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Episode:
        return cls(**{**data, "recent": list(data.get("recent") or ())})


class EpisodeStore(Protocol):
    """
    Where episodes live: memory here, shared storage for replicas later.
    """

    def get(self, key: str) -> Episode | None: ...

    def put(self, episode: Episode) -> None: ...

    def discard(self, key: str) -> None: ...

    def expire(self, older_than: float) -> int: ...

    def by_fingerprint(self, fingerprint: str) -> Episode | None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Episode]: ...


class MemoryEpisodes:
    """
    Episodes in memory, ordered by last sighting.

    @ivar evictions: Episodes dropped to respect C{max_tracked}.
    """

    def __init__(self, max_tracked: int) -> None:
        self.max_tracked = max_tracked
        self._episodes: OrderedDict[str, Episode] = OrderedDict()
        self._by_fingerprint: dict[str, str] = {}
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(list(self._episodes.values()))

    def get(self, key: str) -> Episode | None:
        return self._episodes.get(key)

    def by_fingerprint(self, fingerprint: str) -> Episode | None:
        key = self._by_fingerprint.get(fingerprint)
        return self._episodes.get(key) if key is not None else None

    def put(self, episode: Episode) -> None:
        replaced = self._episodes.get(episode.key)
        if replaced is not None and replaced.fingerprint != episode.fingerprint:
            # A new episode of the key seen first under another fingerprint
            # (another replica): the old one's entry would otherwise outlive
            # the key and grow without bound.
            self._forget(replaced)
        self._episodes[episode.key] = episode
        self._episodes.move_to_end(episode.key)
        self._by_fingerprint[episode.fingerprint] = episode.key
        while len(self._episodes) > self.max_tracked:
            _, evicted = self._episodes.popitem(last=False)
            self._forget(evicted)
            self.evictions += 1

    def discard(self, key: str) -> None:
        """
        Forget the episode of C{key}, if any.
        """
        episode = self._episodes.pop(key, None)
        if episode is not None:
            self._forget(episode)

    def _forget(self, episode: Episode) -> None:
        if self._by_fingerprint.get(episode.fingerprint) == episode.key:
            del self._by_fingerprint[episode.fingerprint]

    def expire(self, older_than: float) -> int:
        """
        Forget episodes last seen before C{older_than}.

        @return: How many were forgotten.
        """
        expired = 0
        while self._episodes:
            key, episode = next(iter(self._episodes.items()))
            if episode.last_seen >= older_than:
                break
            del self._episodes[key]
            self._forget(episode)
            expired += 1
        return expired
