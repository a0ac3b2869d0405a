# -*- test-case-name: tests.unit.test_state_behaviour,tests.unit.test_redis_commit -*-
"""
The shared entries the Redis state is made of, as a decision sees them.

Each entry is a hash with a version C{v} and a JSON document C{d}: an
episode (C{EPISODE}), or a correlation group (C{GROUP}) with its recent
members and its storm's header.  The members waiting in a group's storm
are a Redis list of their own beside it (C{<prefix>grp:<id>:w}, oldest
first), so that a storm's document stays the same size however many
members wait; the header counts them.  A group document written by the
previous version keeps its waiting members inline (C{storm.pending}): they
are read as the tail of the waiting list, and moved to the list by the
next write of that group.

A L{Doc} carries the few fields the Lua scripts need beside the document's
text, so that a document is never parsed again to find them.  L{Loaded} is
what one decision loaded: the decider's view, and the writes its changes
make (L{EntryWrite}, with a L{ListWrite} for a group's waiting list).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from alertgateway.core.decision import Changes, WaitingChange
from alertgateway.core.episodes import Delivery, Episode
from alertgateway.core.storms import Group, Member

__all__ = [
    "EPISODE",
    "GROUP",
    "Doc",
    "Entry",
    "EntryWrite",
    "ListWrite",
    "Loaded",
    "Waiting",
    "Written",
    "episode_doc",
    "group_doc",
    "member_text",
    "new_forward",
    "read_group",
    "with_outcome",
]

EPISODE = "e"
GROUP = "g"


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


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
    return Doc(_dumps(episode.to_json()), episode.fingerprint, repr(float(episode.last_seen)), episode.forwarded or "")


def group_doc(group: Group) -> Doc:
    """
    A group's document: its recent members and its storm's header (the
    waiting members counted, not listed).
    """
    return Doc(_dumps(group.to_json()), "1" if group.storm is not None else "0")


def member_text(member: Member) -> str:
    """
    A waiting member as its group's list holds it.
    """
    return _dumps(member.to_json())


@attrs.frozen
class Waiting:
    """
    A group's waiting members as loaded.

    @ivar listed: How many its list holds.
    @ivar head: The first of them, as stored (as many as the load asked for).
    @ivar inline: Those a group document of the previous version keeps
        inline, after the list's.
    """

    listed: int = 0
    head: tuple[str, ...] = ()
    inline: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return self.listed + len(self.inline)

    def known(self) -> tuple[str, ...]:
        """
        The waiting members loaded, oldest first: the list's head, then the
        inline ones if the whole list was read.
        """
        return self.head + self.inline if len(self.head) == self.listed else self.head


def read_group(data: Mapping[str, Any], listed: int, head: Sequence[str]) -> tuple[Group, Waiting]:
    """
    A group document, and its storm's waiting members: C{listed} in its
    list, whose first are C{head}, then any the document keeps inline.
    """
    storm = data.get("storm")
    inline = tuple(_dumps(m) for m in (storm.get("pending") or ())) if storm is not None else ()
    waiting = Waiting(listed, tuple(head), inline)
    return Group.from_json(data, waiting=waiting.count), waiting


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
    document, and for a group its waiting list's key and what it holds.
    """

    redis_key: str
    name: str
    kind: str
    version: str
    document: Doc | None
    waiting_key: str = ""
    waiting: Waiting = Waiting()


@attrs.frozen
class ListWrite:
    """
    What a write does to a group's waiting list, in this order: delete it
    (C{drop}), take C{trim} members from its head, append C{push}.

    @ivar removed: The members it takes away from the head, oldest first
        (to put back if the write is taken back).
    """

    drop: bool = False
    trim: int = 0
    push: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.drop or bool(self.trim or self.push)


@attrs.frozen
class EntryWrite:
    """
    One entry as a decision writes it: its new document (C{None} deletes
    it) and, for a group, what happens to its waiting list.
    """

    entry: Entry
    document: Doc | None
    waiting: ListWrite = ListWrite()

    @property
    def changed(self) -> bool:
        return self.document != self.entry.document or bool(self.waiting)


@attrs.frozen
class Written:
    """
    One entry as a decision wrote it: the version it got, and the write.
    """

    entry: Entry
    version: str
    write: EntryWrite


def _list_write(entry: Entry, change: WaitingChange, deleted: bool) -> ListWrite:
    """
    A group's waiting list after C{change}, the members a previous version
    kept inline moved to it.
    """
    w = entry.waiting
    if deleted:
        return ListWrite(drop=entry.document is not None, removed=w.head)
    added = tuple(member_text(m) for m in change.added)
    if change.cleared or entry.document is None:
        return ListWrite(drop=True, push=added, removed=w.head)
    if change.taken <= w.listed:
        return ListWrite(trim=change.taken, push=w.inline + added, removed=w.head[: change.taken])
    # Taken past the list, into the inline members: all of the list goes.
    return ListWrite(drop=True, push=w.inline[change.taken - w.listed :] + added, removed=w.head)


class Loaded:
    """
    The entries a decision needs, as loaded: the decider's view.
    """

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.episodes: dict[str, Episode] = {}
        self.groups: dict[str, Group] = {}
        self._members: dict[str, list[Member]] = {}

    def episode(self, key: str) -> Episode | None:
        return self.episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        members = self._members.get(group_id)
        if members is None:
            entry = next((e for e in self.entries if e.kind == GROUP and e.name == group_id), None)
            known = entry.waiting.known() if entry is not None else ()
            members = self._members[group_id] = [Member.from_json(json.loads(m)) for m in known]
        return members[offset : offset + count]

    def storm_groups(self) -> Iterable[str]:
        return [g for g, group in self.groups.items() if group.storm is not None]

    def writes(self, changes: Changes) -> list[EntryWrite]:
        """
        The entries the changes touch, with what is written to each (those
        it leaves as they were left out).
        """
        writes: list[EntryWrite] = []
        for entry in self.entries:
            if entry.kind == EPISODE and entry.name in changes.episodes:
                episode = changes.episodes[entry.name]
                writes.append(EntryWrite(entry, episode_doc(episode) if episode is not None else None))
            elif entry.kind == GROUP and (entry.name in changes.groups or entry.name in changes.waiting):
                name = entry.name
                group = changes.groups[name] if name in changes.groups else self.groups.get(name)
                change = changes.waiting.get(name, WaitingChange())
                document = group_doc(group) if group is not None else None
                writes.append(EntryWrite(entry, document, _list_write(entry, change, group is None)))
        return [w for w in writes if w.changed]


def new_forward(written: Written) -> str:
    """
    The idempotency key of what the decision newly forwarded for an
    episode, or C{""}: an episode only counted as a duplicate is not worth
    taking back (and taking it back could erase another replica's count).
    """
    document = written.write.document
    after = document.forwarded if document is not None else ""
    before = written.entry.document.forwarded if written.entry.document is not None else ""
    return after if after and after != before else ""
