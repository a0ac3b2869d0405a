# -*- test-case-name: tests.unit.test_state_behaviour -*-
"""
The shared entries the Redis state is made of, as a decision sees them.

Each entry is a hash with a version C{v} and a JSON document C{d}: an
episode (C{EPISODE}), or a correlation group (C{GROUP}) with its recent
members and its storm, waiting members included.  A L{Doc} carries the few
fields the Lua scripts need beside the document's text, so that a document
is never parsed again to find them.  L{Loaded} is what one decision loaded:
the decider's view, and the documents its changes write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from alertgateway.core.decision import Changes, WaitingChange
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.storms import Group, Member, Storm

__all__ = [
    "EPISODE",
    "GROUP",
    "Doc",
    "Entry",
    "Loaded",
    "Written",
    "episode_doc",
    "group_doc",
    "new_forward",
    "read_group",
    "with_outcome",
]

EPISODE = "e"
GROUP = "g"


@attrs.frozen
class Doc:
    """
    A shared entry's JSON document, with the few fields the scripts need
    taken out when it is made or loaded (so it is never parsed again).

    @ivar extra: An episode's fingerprint, or C{1}/C{0}: whether a group is
        in a storm.
    @ivar score: An episode's last sighting (its rank for expiry).
    @ivar forwarded: The idempotency key of what an episode last forwarded.
    """

    text: str
    extra: str = ""
    score: str = "0"
    forwarded: str = ""


def episode_doc(episode: Episode) -> Doc:
    text = json.dumps(episode.to_json(), separators=(",", ":"), sort_keys=True)
    return Doc(text, episode.fingerprint, repr(float(episode.last_seen)), episode.forwarded or "")


def _storm_json(storm: Storm, waiting: Sequence[Member]) -> dict[str, Any]:
    return {
        "id": storm.id,
        "group_id": storm.group_id,
        "group_labels": dict(storm.group_labels),
        "first_seen": storm.first_seen,
        "last_seen": storm.last_seen,
        "last_flush": storm.last_flush,
        "members": storm.members,
        "listed": storm.listed,
        "pending": [member.to_json() for member in waiting],
        "sequence": storm.sequence,
    }


def group_doc(group: Group, waiting: Sequence[Member]) -> Doc:
    data = {
        "recent": [member.to_json() for member in group.recent],
        "storm": _storm_json(group.storm, waiting) if group.storm is not None else None,
    }
    return Doc(json.dumps(data, separators=(",", ":"), sort_keys=True), "1" if group.storm is not None else "0")


def read_group(data: Mapping[str, Any]) -> tuple[Group, list[Member]]:
    recent = tuple(Member.from_json(m) for m in data.get("recent") or ())
    storm_data = data.get("storm")
    if storm_data is None:
        return Group(recent=recent), []
    waiting = [Member.from_json(m) for m in storm_data.get("pending") or ()]
    storm = Storm(
        id=storm_data["id"],
        group_id=storm_data["group_id"],
        group_labels=dict(storm_data["group_labels"]),
        first_seen=float(storm_data["first_seen"]),
        last_seen=float(storm_data["last_seen"]),
        last_flush=float(storm_data["last_flush"]),
        members=int(storm_data["members"]),
        listed=int(storm_data["listed"]),
        waiting=len(waiting),
        sequence=int(storm_data["sequence"]),
    )
    return Group(recent=recent, storm=storm), waiting


def with_outcome(episode: Episode, outcome: str | None) -> Episode:
    """
    The episode with the delivery outcome recorded beside it, if that is of
    what the episode last forwarded.
    """
    if not outcome:
        return episode
    forwarded, _, result = outcome.partition("\n")
    try:
        return episode.delivered(forwarded, Delivery(result))
    except ValueError:
        return episode


@attrs.define
class Entry:
    """
    One shared entry as loaded: its Redis key, name, kind, version and
    document.
    """

    redis_key: str
    name: str
    kind: str
    version: str
    document: Doc | None


@attrs.frozen
class Written:
    """
    One entry as a decision wrote it: the version it got and the document.
    """

    entry: Entry
    version: str
    document: Doc | None


class Loaded:
    """
    The entries a decision needs, as loaded: the decider's view.
    """

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.episodes: dict[str, Episode] = {}
        self.groups: dict[str, Group] = {}
        self.members: dict[str, list[Member]] = {}

    def episode(self, key: str) -> Episode | None:
        return self.episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        return self.members.get(group_id, [])[offset : offset + count]

    def storm_groups(self) -> Iterable[str]:
        return [g for g, group in self.groups.items() if group.storm is not None]

    def documents(self, changes: Changes) -> list[tuple[Entry, Doc | None]]:
        """
        The entries the changes touch, with their new documents.
        """
        written: list[tuple[Entry, Doc | None]] = []
        for entry in self.entries:
            if entry.kind == EPISODE and entry.name in changes.episodes:
                episode = changes.episodes[entry.name]
                written.append((entry, episode_doc(episode) if episode is not None else None))
            elif entry.kind == GROUP and (entry.name in changes.groups or entry.name in changes.waiting):
                written.append((entry, self._group_document(entry.name, changes)))
        return written

    def _group_document(self, name: str, changes: Changes) -> Doc | None:
        group = changes.groups[name] if name in changes.groups else self.groups.get(name)
        if group is None:
            return None
        members = list(self.members.get(name, []))
        change = changes.waiting.get(name, WaitingChange())
        if change.cleared:
            members = []
        del members[: change.taken]
        members.extend(change.added)
        return group_doc(group, members)


def new_forward(written: Written) -> str:
    """
    The idempotency key of what the decision newly forwarded for an
    episode, or C{""}: an episode only counted as a duplicate is not worth
    taking back (and taking it back could erase another replica's count).
    """
    after = written.document.forwarded if written.document is not None else ""
    before = written.entry.document.forwarded if written.entry.document is not None else ""
    return after if after and after != before else ""
