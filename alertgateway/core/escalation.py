# -*- test-case-name: tests.unit.test_decide -*-
"""
Escalation of repeat offenders.

Each environment has a rule: N duplicates in the episode in total, or M
duplicates within a window, raises the alert to the rule's level.  The
defaults: production 5 in total or 3 within 5 minutes, immediate; staging 8
or 5 within 10 minutes, normal; development 10 or 8 within 15 minutes, low.
An episode escalates at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["DEFAULT_RULES", "Escalation", "EscalationRule", "escalate"]


@attrs.frozen
class EscalationRule:
    level: str
    total: int
    within: int
    window: float


DEFAULT_RULES: Mapping[str, EscalationRule] = {
    "production": EscalationRule("immediate", total=5, within=3, window=300.0),
    "staging": EscalationRule("normal", total=8, within=5, window=600.0),
    "development": EscalationRule("low", total=10, within=8, window=900.0),
}


def _window_text(seconds: float) -> str:
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


@attrs.frozen
class Escalation:
    """
    Why an episode was escalated, as forwarded in the C{escalation} object.
    """

    level: str
    reason: str
    duplicate_count: int
    window: str
    environment: str

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "reason": self.reason,
            "duplicateCount": self.duplicate_count,
            "window": self.window,
            "environment": self.environment,
        }


def escalate(
    rule: EscalationRule, recent: tuple[float, ...], duplicates: int, environment: str, now: float
) -> tuple[tuple[float, ...], Escalation | None]:
    """
    Judge a duplicate seen at C{now} of a not yet escalated episode.

    @param recent: The episode's recent duplicate times, this one included.
    @return: The recent times still within the rule's window (only those
        can still escalate the episode: an alert re-sent within the dedup
        window for weeks must not keep them all), and the escalation if the
        episode crosses the rule now.
    """
    # "Within" as for the dedup window: a duplicate exactly one window ago
    # still counts.
    cutoff = now - rule.window
    lapsed = 0
    while lapsed < len(recent) and recent[lapsed] < cutoff:
        lapsed += 1
    if lapsed:
        recent = recent[lapsed:]
    if len(recent) >= rule.within:
        reason = f"{len(recent)} duplicates within {_window_text(rule.window)}"
    elif duplicates >= rule.total:
        reason = f"{duplicates} duplicates in total"
    else:
        return recent, None
    return recent, Escalation(rule.level, reason, duplicates, _window_text(rule.window), environment)
