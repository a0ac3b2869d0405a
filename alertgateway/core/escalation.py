"""
Escalation of repeat offenders (BR-ALERT-006).

Each environment has a rule: N duplicates in the episode in total, or M
duplicates within a window, raises the alert to the rule's level.  The
plan's defaults: production 5 in total or 3 within 5 minutes, immediate;
staging 8 or 5 within 10 minutes, normal; development 10 or 8 within 15
minutes, low.  An episode escalates at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from alertgateway.core.episodes import Episode

__all__ = ["DEFAULT_RULES", "EscalationRule", "check_escalation"]


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


def check_escalation(rule: EscalationRule, episode: Episode, now: float) -> dict[str, Any] | None:
    """
    Record nothing; say whether C{episode}, which has just seen a duplicate
    at C{now}, crosses C{rule} for the first time.

    @return: The C{escalation} object to forward, or C{None}.
    """
    # "Within" as for the dedup window: a duplicate exactly one window ago
    # still counts.
    cutoff = now - rule.window
    lapsed = 0
    while lapsed < len(episode.recent) and episode.recent[lapsed] < cutoff:
        lapsed += 1
    del episode.recent[:lapsed]
    if episode.escalation is not None:
        return None
    if len(episode.recent) >= rule.within:
        reason = f"{len(episode.recent)} duplicates within {_window_text(rule.window)}"
    elif episode.duplicates >= rule.total:
        reason = f"{episode.duplicates} duplicates in total"
    else:
        return None
    return {
        "level": rule.level,
        "reason": reason,
        "duplicateCount": episode.duplicates,
        "window": _window_text(rule.window),
        "environment": episode.environment,
    }
