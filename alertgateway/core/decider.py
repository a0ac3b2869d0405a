# -*- test-case-name: tests.unit.test_decide -*-
"""
The decider: a pure function from (the state it needs, alerts, now) to
(state changes, a verdict per alert, things to forward).

Per dedup key, the forwarded stream is: new → (escalated)? → resolved → new
…  A firing alert is new when its key is unknown, its last sighting is older
than the window, or its episode was resolved; otherwise it is a duplicate,
counted, and escalated once when it crosses its environment's rule.  A
resolved alert is forwarded once and closes the episode (a repeat is a
duplicate); one for an unknown key is forwarded too, as the processor may
know it.  A new alert of a group in a storm is folded into the storm's
events instead of being forwarded on its own.

Nothing here keeps state, parses or stores: L{decide} and L{tick} read a
L{StateView} and return a L{Decision}, which the store commits with the
queued forwards, or does not commit at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import partial

import attrs

from alertgateway.core.decision import (
    Changes,
    Decision,
    Outgoing,
    Ruling,
    StateView,
    Verdict,
    WaitingChange,
)
from alertgateway.core.episodes import NO_COPIES, Delivery, Episode
from alertgateway.core.escalation import DEFAULT_RULES, Escalation, EscalationRule, escalate
from alertgateway.core.keys import dedup_key, environment_of, group_id, group_labels
from alertgateway.core.model import FIRING, RESOLVED, Alert
from alertgateway.core.storms import Group, Member, StormEvent, StormSettings, flush, sight
from alertgateway.core.timefmt import rfc3339

# Copies of one episode followed at most (an HA pair has two).
MAX_COPIES = 8

__all__ = ["DeciderSettings", "decide", "occurrence_key", "tick", "touched"]


@attrs.frozen
class DeciderSettings:
    """
    @ivar dedup: With C{False}, every alert is forwarded (firing ones as
        new), though still correlated.
    @ivar escalate: With C{False}, duplicates are never escalated.
    @ivar min_spacing: A duplicate closer than this to the last counted
        sighting of its episode does not count toward escalation (two
        copies of one notification, from an HA pair, count once).
    @ivar rules: Escalation rules by (lower-case) environment.
    @ivar storms: C{None} when storms are not detected.
    """

    dedup: bool = True
    escalate: bool = True
    min_spacing: float = 30.0
    window: float = 300.0
    ignore_labels: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("alertname", "namespace")
    use_sender_group: bool = False
    environment_labels: tuple[str, ...] = ("environment", "env")
    environment_namespaces: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    default_environment: str = "production"
    rules: Mapping[str, EscalationRule] = attrs.field(factory=lambda: dict(DEFAULT_RULES))
    storms: StormSettings | None = attrs.field(factory=StormSettings)

    def rule(self, environment: str) -> EscalationRule:
        rules = self.rules
        return rules.get(environment) or rules.get(self.default_environment) or DEFAULT_RULES["production"]


def occurrence_key(alert: Alert, episode_started: float) -> str:
    """
    The idempotency key of an alert forwarded in the episode that started
    at C{episode_started}.
    """
    seed = f"{alert.idempotency_key}\x00{episode_started!r}"
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


class _Draft:
    """
    The view with this decision's own changes on top: later alerts of a
    batch see what earlier ones did.
    """

    def __init__(self, view: StateView) -> None:
        self.view = view
        self.episodes: dict[str, Episode | None] = {}
        self.groups: dict[str, Group | None] = {}
        self.waiting: dict[str, WaitingChange] = {}

    def episode(self, key: str) -> Episode | None:
        if key in self.episodes:
            return self.episodes[key]
        return self.view.episode(key)

    def group(self, group: str) -> Group | None:
        if group in self.groups:
            return self.groups[group]
        return self.view.group(group)

    def put(self, episode: Episode) -> None:
        # Moved to the end: the store keeps episodes in the order they were
        # last seen, and evicts the least recent first.
        self.episodes.pop(episode.key, None)
        self.episodes[episode.key] = episode

    def wait(self, group: str, members: tuple[Member, ...]) -> None:
        if members:
            change = self.waiting.get(group, WaitingChange())
            self.waiting[group] = attrs.evolve(change, added=change.added + members)

    def changes(self) -> Changes:
        return Changes(self.episodes, self.groups, self.waiting)


def decide(view: StateView, alerts: Sequence[Alert], now: float, settings: DeciderSettings) -> Decision:
    """
    Decide on a batch of alerts, in order, at C{now}.
    """
    draft = _Draft(view)
    rulings: list[Ruling] = []
    outgoing: list[Outgoing] = []
    for alert in alerts:
        rulings.append(_decide_one(draft, alert, now, settings, outgoing))
    return Decision(draft.changes(), tuple(rulings), tuple(outgoing))


def tick(view: StateView, now: float, settings: DeciderSettings, max_events: int | None = None) -> Decision:
    """
    Periodic work at C{now}: send the storm updates that are due and close
    quiet storms, storm by storm while their events fit in C{max_events};
    the others are left as they are, due again at the next tick.  (Lapsed
    episodes need no decision: a store forgets them when it likes, and
    L{decide} ignores them meanwhile.)
    """
    storms = settings.storms
    if storms is None:
        return Decision(Changes())
    draft = _Draft(view)
    outgoing: list[Outgoing] = []
    held_back = 0
    for group in sorted(view.storm_groups()):
        current = view.group(group)
        if current is None or current.storm is None:
            continue
        flushed = flush(current.storm, partial(view.waiting, group), now, storms)
        if flushed is None:
            continue
        if max_events is not None and len(outgoing) + len(flushed.events) > max_events:
            held_back += len(flushed.events)
            continue
        draft.groups[group] = flushed.group
        draft.waiting[group] = WaitingChange(cleared=flushed.group is None, taken=flushed.taken)
        outgoing.extend(_storm_outgoing(event) for event in flushed.events)
    return Decision(draft.changes(), (), tuple(outgoing), held_back)


def touched(alerts: Sequence[Alert], settings: DeciderSettings) -> list[str]:
    """
    The keys deciding on C{alerts} reads and may write, sorted: C{e} and
    each dedup key, C{g} and each correlation group (when storms are on).
    A store that decides several batches at once holds them meanwhile.
    """
    keys = {"e" + dedup_key(alert, settings.ignore_labels) for alert in alerts}
    if settings.storms is not None:
        keys.update("g" + group_id(alert, settings.group_by, settings.use_sender_group) for alert in alerts)
    return sorted(keys)


def _decide_one(draft: _Draft, alert: Alert, now: float, s: DeciderSettings, outgoing: list[Outgoing]) -> Ruling:
    key = dedup_key(alert, s.ignore_labels)
    group = group_id(alert, s.group_by, s.use_sender_group)
    episode = draft.episode(key)
    if episode is not None and (episode.last_seen < now - s.window or not s.dedup):
        episode = None
    if alert.status == FIRING and (episode is None or episode.status == RESOLVED):
        return _new(draft, alert, key, group, now, s, outgoing)
    if episode is None:
        # Resolved, and unknown here: the processor may know it.
        environment = environment_of(alert, s.environment_labels, s.environment_namespaces, s.default_environment)
        episode = Episode(key, alert.fingerprint, RESOLVED, now, now, group, environment, alert.source)
        return _forward(draft, alert, episode, Verdict.RESOLVED, s, outgoing)
    if alert.status == RESOLVED and episode.status == FIRING:
        copies = _still_firing(episode, alert.fingerprint, now - s.window)
        if not copies:
            episode = attrs.evolve(episode, status=RESOLVED, last_seen=now, copies=NO_COPIES)
            return _forward(draft, alert, episode, Verdict.RESOLVED, s, outgoing)
        # Another copy of it (an HA replica) still fires: the episode goes
        # on, and resolves when the last copy does.
        episode = attrs.evolve(episode, last_seen=now, duplicates=episode.duplicates + 1, copies=copies)
        draft.put(episode)
        return _ruling(alert, episode, Verdict.DUPLICATE)
    duplicates = episode.duplicates + 1
    counted, last_counted, recent = episode.counted, episode.last_counted, episode.recent
    copies = episode.copies
    if alert.status == FIRING and alert.fingerprint != key:
        others = [(fp, seen) for fp, seen in copies if fp != alert.fingerprint]
        # Bounded: a sender that varies an ignored label at will must not
        # grow an episode; the copies seen longest ago go first.
        copies = (*others[max(0, len(others) - MAX_COPIES + 1) :], (alert.fingerprint, now))
    escalation: Escalation | None = None
    if (
        s.escalate
        and alert.status == FIRING
        and episode.escalation is None
        and now - episode.last_counted >= s.min_spacing
    ):
        counted, last_counted = counted + 1, now
        recent, escalation = escalate(s.rule(episode.environment), (*recent, now), counted, episode.environment, now)
    if escalation is not None:
        episode = attrs.evolve(
            episode,
            last_seen=now,
            duplicates=duplicates,
            counted=counted,
            last_counted=last_counted,
            recent=(),
            escalation=escalation.level,
            copies=copies,
        )
        return _forward(draft, alert, episode, Verdict.ESCALATED, s, outgoing, escalation)
    episode = attrs.evolve(
        episode,
        last_seen=now,
        duplicates=duplicates,
        counted=counted,
        last_counted=last_counted,
        recent=recent,
        copies=copies,
    )
    draft.put(episode)
    return _ruling(alert, episode, Verdict.DUPLICATE)


def _still_firing(episode: Episode, resolved: str, lapsed: float) -> tuple[tuple[str, float], ...]:
    """
    The copies of an episode other than C{resolved} that still fire: seen
    within the window (a copy not sent for a window has stopped).
    """
    return tuple((fp, seen) for fp, seen in episode.copies if fp != resolved and seen >= lapsed)


def _new(
    draft: _Draft, alert: Alert, key: str, group: str, now: float, s: DeciderSettings, outgoing: list[Outgoing]
) -> Ruling:
    environment = environment_of(alert, s.environment_labels, s.environment_namespaces, s.default_environment)
    # With labels ignored in the key, its copies (the replicas) are followed
    # so that the episode resolves once all have.
    copies = ((alert.fingerprint, now),) if alert.fingerprint != key else NO_COPIES
    episode = Episode(
        key, alert.fingerprint, FIRING, now, now, group, environment, alert.source, last_counted=now, copies=copies
    )
    if s.storms is not None:
        labels = group_labels(alert, s.group_by, s.use_sender_group)
        member = Member.of(alert, labels, now, s.storms.max_member_bytes)
        sighting = sight(draft.group(group), member, group, labels, now, s.storms)
        draft.groups[group] = sighting.group
        draft.wait(group, sighting.waiting)
        if sighting.event is not None:
            outgoing.append(_storm_outgoing(sighting.event))
        if sighting.folded:
            storm = sighting.group.storm
            episode = attrs.evolve(episode, storm_id=storm.id if storm is not None else None)
            draft.put(episode)
            return _ruling(alert, episode, Verdict.AGGREGATED)
    return _forward(draft, alert, episode, Verdict.NEW, s, outgoing)


def _ruling(alert: Alert, episode: Episode, verdict: Verdict) -> Ruling:
    return Ruling(
        alert, verdict, episode.key, episode.group_id, episode.duplicates, episode.environment, episode.escalation
    )


def _forward(
    draft: _Draft,
    alert: Alert,
    episode: Episode,
    verdict: Verdict,
    s: DeciderSettings,
    outgoing: list[Outgoing],
    escalation: Escalation | None = None,
) -> Ruling:
    body = alert.to_json()
    body.update(
        dedupKey=episode.key,
        groupId=episode.group_id,
        environment=episode.environment,
        decision=verdict.value,
        duplicateCount=episode.duplicates,
        firstSeen=rfc3339(episode.first_seen),
        lastSeen=rfc3339(episode.last_seen),
    )
    # The occurrence (fingerprint, start, status) within this episode:
    # redeliveries share it, but a reminder forwarded as new after the
    # window lapsed (same startsAt, hours later) must not be dropped by the
    # processor as a redelivery of the first episode.  Without
    # deduplication every occurrence is forwarded and the processor's
    # idempotency is what drops repeats: key by occurrence.
    idempotency_key = occurrence_key(alert, episode.first_seen) if s.dedup else alert.idempotency_key
    if escalation is not None:
        body["escalation"] = escalation.to_json()
        # A different thing from the alert it escalates: the processor must
        # not drop it as a redelivery of the first one.
        idempotency_key = f"{idempotency_key}-escalation"
    episode = attrs.evolve(episode, forwarded=idempotency_key, delivery=Delivery.QUEUED)
    draft.put(episode)
    outgoing.append(Outgoing(episode.key, body, idempotency_key))
    return _ruling(alert, episode, verdict)


def _storm_outgoing(event: StormEvent) -> Outgoing:
    return Outgoing(event.key, event.to_json(), event.idempotency_key)
