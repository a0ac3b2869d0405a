# -*- test-case-name: tests.unit.test_config -*-
"""
The sections that shape what the gateway decides about each alert:
C{dedup}, C{escalation} (with its environments), C{correlation} and
C{storm}.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from alertgateway.config._fields import not_negative, positive
from alertgateway.config._schema import duration

__all__ = ["CorrelationConfig", "DedupConfig", "EnvironmentConfig", "EscalationConfig", "StormConfig"]


@attrs.frozen
class DedupConfig:
    """
    Deduplication: one forward per alert episode.
    """

    enabled: bool = True
    # A repeat within this time of the last sighting is a duplicate.
    window: float = duration(300.0, positive)
    # Labels left out of the dedup key, e.g. replica labels of an HA pair.
    ignore_labels: tuple[str, ...] = ()
    # About 0.7 KiB each (state.max_bytes bounds them too): sized, with
    # state.max_bytes and queue.max_bytes, for the manifests' 128 MiB pod.
    max_tracked: int = attrs.field(default=20_000, metadata={"check": positive})
    # How often lapsed episodes are forgotten and storms flushed.
    expire_interval: float = duration(5.0, positive)


@attrs.frozen
class EnvironmentConfig:
    """
    An environment's namespaces and escalation rule; unset numbers take the
    plan's values for production, staging and development.
    """

    namespaces: tuple[str, ...] = ()
    level: str | None = None
    total: int | None = attrs.field(default=None, metadata={"check": positive})
    within: int | None = attrs.field(default=None, metadata={"check": positive})
    window: float | None = attrs.field(default=None, metadata={"duration": True, "check": positive})


def _distinct_environments(environments: Mapping[str, EnvironmentConfig]) -> str | None:
    # Environment labels are read in lower case, so names are compared so.
    seen: dict[str, str] = {}
    for name in environments:
        if name.lower() in seen:
            return f"{seen[name.lower()]!r} and {name!r} are the same environment (names ignore case)"
        seen[name.lower()] = name
    return None


@attrs.frozen
class EscalationConfig:
    """
    Escalation of alerts that keep repeating, by a rule per environment.
    """

    enabled: bool = True
    # A duplicate closer than this to the last one counted in its episode
    # does not count toward escalation: two copies of one notification
    # (an HA pair of Alertmanagers or Prometheus replicas) count once.
    min_spacing: float = duration(30.0, not_negative)
    environment_labels: tuple[str, ...] = ("environment", "env")
    default_environment: str = "production"
    environments: dict[str, EnvironmentConfig] = attrs.field(
        factory=dict, hash=False, metadata={"check": _distinct_environments}
    )


@attrs.frozen
class CorrelationConfig:
    """
    What makes alerts one correlation group: the values of some labels,
    or the sender's own group.
    """

    group_by: tuple[str, ...] = ("alertname", "namespace")
    use_sender_group: bool = False


@attrs.frozen
class StormConfig:
    """
    When many new alerts of one group are folded into storm events, and
    how often those are sent.
    """

    enabled: bool = True
    # More than this many distinct new fingerprints of one group within the
    # window make a storm.
    threshold: int = attrs.field(default=10, metadata={"check": positive})
    window: float = duration(60.0, positive)
    flush_interval: float = duration(30.0, positive)
    quiet_period: float = duration(300.0, positive)
    max_members_listed: int = attrs.field(default=100, metadata={"check": positive})
    # The JSON of the members one event lists (at least one is listed).
    max_event_bytes: int = attrs.field(default=256 * 1024, metadata={"check": positive})
    # Members of one storm waiting to be listed; past either bound a member
    # is only counted (the events say how many were never listed).
    max_pending: int = attrs.field(default=10_000, metadata={"check": positive})
    max_pending_bytes: int = attrs.field(default=1024 * 1024, metadata={"check": positive})
    # Names and values of the labels a member keeps, the smallest first: a
    # member is named by its fingerprint, its labels only tell it apart.
    max_member_bytes: int = attrs.field(default=1024, metadata={"check": positive})
