# -*- test-case-name: tests.unit.test_decide -*-
"""
The keys an alert is decided by: its dedup key, its correlation group and
its environment.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence

from alertgateway.core.model import Alert, fingerprint

__all__ = ["GROUP_CACHE_SIZE", "dedup_key", "environment_of", "group_id", "group_labels"]

# Label-set group ids remembered across requests, by fingerprint: about
# 220 bytes each (3.5 MiB in all).
GROUP_CACHE_SIZE = 16_384
_by_labels: dict[tuple[str, tuple[str, ...]], str] = {}


def dedup_key(alert: Alert, ignore_labels: Iterable[str]) -> str:
    """
    The fingerprint, or, when some labels are to be ignored (the C{replica}
    label an HA Prometheus pair adds), the same hash over the others.
    """
    if not ignore_labels:
        return alert.fingerprint
    memo = ("dedup", tuple(ignore_labels))
    known = alert.derived.get(memo)
    if known is not None:
        return known
    ignored = set(ignore_labels)
    if not ignored.intersection(alert.labels):
        key = alert.fingerprint
    else:
        key = fingerprint({k: v for k, v in alert.labels.items() if k not in ignored})
    alert.derived[memo] = key
    return key


def _sender_group(alert: Alert, use_sender_group: bool) -> Mapping[str, object] | None:
    group = alert.extras.get("group")
    if use_sender_group and isinstance(group, Mapping) and isinstance(group.get("groupKey"), str):
        return group
    return None


def group_id(alert: Alert, group_by: Sequence[str], use_sender_group: bool) -> str:
    """
    A stable id for the alert's correlation group: the sender's C{groupKey}
    when asked for and present, else the values of the C{group_by} labels.
    """
    memo = ("group", tuple(group_by), use_sender_group)
    known = alert.derived.get(memo)
    if known is not None:
        return known
    sender = _sender_group(alert, use_sender_group)
    if sender is not None:
        seed = f"sender\x00{sender['groupKey']}"
        known = alert.derived[memo] = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:16]
        return known
    # By labels: the same for every alert of one label set, which a repeat
    # of the alert has (the fingerprint is the dedup identity already).
    by_labels = (alert.fingerprint, memo[1])
    known = _by_labels.get(by_labels)
    if known is None:
        seed = "labels\x00" + "\x00".join(f"{name}={alert.labels.get(name, '')}" for name in group_by)
        known = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:16]
        if len(_by_labels) >= GROUP_CACHE_SIZE:
            # Bounded: forgotten all at once, and found again at the cost
            # of one hash each.
            _by_labels.clear()
        _by_labels[by_labels] = known
    alert.derived[memo] = known
    return known


def group_labels(alert: Alert, group_by: Sequence[str], use_sender_group: bool = False) -> dict[str, str]:
    """
    The labels the group is known by: the sender's C{groupLabels} when the
    group is the sender's, else the C{group_by} labels the alert has.
    """
    sender = _sender_group(alert, use_sender_group)
    if sender is not None:
        # The sender grouped by these: with another group_by, storm events
        # would name the group by labels its members need not share.
        labels = sender.get("groupLabels")
        if isinstance(labels, Mapping):
            return {str(k): str(v) for k, v in labels.items()}
    return {name: alert.labels[name] for name in group_by if name in alert.labels}


def environment_of(
    alert: Alert,
    labels: Sequence[str],
    namespaces: Mapping[str, Sequence[str]],
    default: str,
) -> str:
    """
    The first present label of C{labels}; else the environment whose
    namespace patterns match the alert's C{namespace}; else C{default}.
    """
    for name in labels:
        value = alert.labels.get(name)
        if value:
            return value.lower()
    namespace = alert.labels.get("namespace")
    if namespace:
        for environment, patterns in namespaces.items():
            if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in patterns):
                return environment
    return default
