# -*- test-case-name: tests.unit.test_storm_bytes -*-
"""
A storm member, and what it costs in bytes.

A member is kept from the moment its group is watched for a storm until an
event lists it: by its fingerprint and the labels that tell it apart within
its group, never the whole alert.  Those labels are kept within a byte
budget (C{storm.max_member_bytes}), the smallest first, so that one huge
label cannot make a member (and the events listing it) huge; the member
says how many it left out.  L{Member.size} is what the member adds to the
JSON of an event listing it, which the storm's byte bounds count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from alertgateway.core.model import Alert
from alertgateway.core.timefmt import rfc3339

__all__ = ["MEMBER_OVERHEAD", "Member", "text_bytes"]

# What a member adds to an event's JSON beside its labels: its fingerprint,
# status and time with their keys, the braces and commas.
MEMBER_OVERHEAD = 100
# What one label adds beside its name and value: quotes, colon and comma.
LABEL_OVERHEAD = 6


def text_bytes(text: str) -> int:
    """
    The UTF-8 length of C{text}, without encoding it when it is ASCII
    (nearly always).
    """
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _label_bytes(name: str, value: str) -> int:
    return text_bytes(name) + text_bytes(value)


def _within(labels: Mapping[str, str], budget: int) -> tuple[dict[str, str], int]:
    """
    The labels that fit in C{budget} bytes of names and values, the
    smallest first (the ones that tell pods, instances and containers
    apart are short), in name order; and how many were left out.
    """
    sizes = sorted((_label_bytes(name, value), name) for name, value in labels.items())
    kept: list[str] = []
    used = 0
    for size, name in sizes:
        if used + size > budget:
            break
        kept.append(name)
        used += size
    return {name: labels[name] for name in sorted(kept)}, len(sizes) - len(kept)


@attrs.frozen
class Member:
    """
    A storm member as events list it: what tells it apart within its group
    (its labels without the group's own), not the whole alert, whose
    annotations can be big.

    @ivar omitted: Labels left out to keep within the member byte budget.
    """

    fingerprint: str
    labels: Mapping[str, str]
    status: str
    seen_at: float
    omitted: int = 0

    @classmethod
    def of(cls, alert: Alert, group_labels: Mapping[str, str], seen_at: float, max_bytes: int | None = None) -> Member:
        """
        The member C{alert} makes, keeping at most C{max_bytes} of label
        names and values (all of them with C{None}).
        """
        labels = {k: v for k, v in alert.labels.items() if k not in group_labels}
        omitted = 0
        if max_bytes is not None and sum(_label_bytes(k, v) for k, v in labels.items()) > max_bytes:
            labels, omitted = _within(labels, max_bytes)
        return cls(alert.fingerprint, labels, alert.status, seen_at, omitted)

    @property
    def size(self) -> int:
        """
        About what the member adds to the JSON of an event listing it.
        """
        return MEMBER_OVERHEAD + sum(_label_bytes(k, v) + LABEL_OVERHEAD for k, v in self.labels.items())

    def to_json(self) -> dict[str, Any]:
        """
        The member as a store keeps it (its time in seconds).
        """
        data: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "status": self.status,
            "seenAt": self.seen_at,
        }
        if self.omitted:
            data["omitted"] = self.omitted
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        """
        Read what L{to_json} wrote (or an older gateway did: without
        C{omitted}, every label was kept).
        """
        return cls(
            str(data["fingerprint"]),
            dict(data["labels"]),
            str(data["status"]),
            float(data["seenAt"]),
            int(data.get("omitted") or 0),
        )

    def event_json(self) -> dict[str, Any]:
        """
        The member as an event lists it.
        """
        data: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
            "status": self.status,
            "seenAt": rfc3339(self.seen_at),
        }
        if self.omitted:
            data["labelsOmitted"] = self.omitted
        return data
