# -*- test-case-name: tests.unit.test_footprint -*-
"""
What the decision state costs in this process's memory, estimated, and the
members a decision may add to storms within a byte budget.

The estimates are CPython 3.11's object sizes as C{tracemalloc} measured
them for each kind of entry, with the store's own dictionary entries: an
episode (about 700 bytes, whatever its alert's size: it keeps no labels), a
member of a storm (its fingerprint, its labels, a dictionary of them) and a
correlation group (its recent members, its storm's header).  They are
within about 10 % of what those entries really take; resident memory adds
the allocator's own share on top (see docs/operations.md, "Capacity
planning").
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from alertgateway.core.decision import Changes, WaitingChange
from alertgateway.core.episodes import Episode
from alertgateway.core.members import Member, text_bytes
from alertgateway.core.storms import Group

__all__ = ["admit_waiting", "episode_bytes", "group_bytes", "member_bytes"]

# An episode with its key, fingerprint, group id and idempotency key
# strings, and its entries in the store's two dictionaries.
EPISODE_BYTES = 700
# One (fingerprint, last seen) pair of an episode followed across copies.
COPY_BYTES = 150
# A member without labels: the object, its fingerprint, an empty dict.
MEMBER_BYTES = 250
# One label beside its text: two string headers and a dictionary slot.
LABEL_BYTES = 130
# A correlation group, its id and the store's dictionary entry.
GROUP_BYTES = 300
# A storm's header: its id strings and the group labels' dictionary.
STORM_BYTES = 800


def _labels_bytes(labels: Mapping[str, str]) -> int:
    return sum(LABEL_BYTES + text_bytes(name) + text_bytes(value) for name, value in labels.items())


def episode_bytes(episode: Episode) -> int:
    return EPISODE_BYTES + COPY_BYTES * len(episode.copies) + 8 * len(episode.recent)


def member_bytes(member: Member) -> int:
    return MEMBER_BYTES + _labels_bytes(member.labels)


def group_bytes(group: Group) -> int:
    """
    A group with its recent members and its storm's header (its waiting
    members apart).
    """
    size = GROUP_BYTES + sum(member_bytes(member) for member in group.recent)
    if group.storm is not None:
        size += STORM_BYTES + _labels_bytes(group.storm.group_labels)
    return size


def admit_waiting(changes: Changes, room: int) -> tuple[Changes, int]:
    """
    C{changes} with the members they append to storms' waiting lists cut
    to those that fit in C{room} bytes (in order, per group in turn): the
    storms only count the others, as past their own bounds.

    @return: The changes, and the bytes of the members they still add.
    """
    used = 0
    waiting = dict(changes.waiting)
    groups = dict(changes.groups)
    for group_id, change in changes.waiting.items():
        admitted = 0
        for member in change.added:
            cost = member_bytes(member)
            if used + cost > room:
                break
            used += cost
            admitted += 1
        dropped = change.added[admitted:]
        group = groups.get(group_id)
        if not dropped:
            continue
        if group is None or group.storm is None:
            # Members are only ever added to a storm the decision writes;
            # without one to count them, they are kept.
            used += sum(member_bytes(member) for member in dropped)
            continue
        storm = group.storm
        groups[group_id] = attrs.evolve(
            group,
            storm=attrs.evolve(
                storm,
                waiting=storm.waiting - len(dropped),
                waiting_bytes=max(0, storm.waiting_bytes - sum(member.size for member in dropped)),
            ),
        )
        waiting[group_id] = WaitingChange(change.cleared, change.taken, change.added[:admitted])
    return Changes(changes.episodes, groups, waiting), used
