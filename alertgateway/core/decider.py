"""
The decider: for each accepted alert, new, duplicate, resolved, escalated
or aggregated, and what to forward because of it.

Per dedup key, the forwarded stream is: new → (escalated)? → resolved → new
…  A firing alert is new when its key is unknown, its last sighting is older
than the window, or its episode was resolved; otherwise it is a duplicate,
counted, and escalated once when it crosses its environment's rule.  A
resolved alert is forwarded once and closes the episode (a repeat is a
duplicate); one for an unknown key is forwarded too, as the processor may
know it.  A new alert of a group in a storm is folded into the storm's
events instead of being forwarded on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from alertgateway.config import EnvironmentConfig, GatewayConfig
from alertgateway.core.episodes import Episode, EpisodeStore
from alertgateway.core.escalation import DEFAULT_RULES, EscalationRule, check_escalation
from alertgateway.core.keys import dedup_key, environment_of, group_id, group_labels
from alertgateway.core.model import FIRING, RESOLVED, Alert
from alertgateway.core.storms import StormTracker

__all__ = [
    "AGGREGATED",
    "DUPLICATE",
    "ESCALATED",
    "NEW",
    "RESOLVED_RESULT",
    "Decider",
    "DeciderSettings",
    "Outgoing",
    "Verdict",
]

NEW = "new"
DUPLICATE = "duplicate"
RESOLVED_RESULT = "resolved"
ESCALATED = "escalated"
AGGREGATED = "aggregated"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class Verdict:
    """
    What was decided for one alert.
    """

    alert: Alert
    result: str
    dedup_key: str
    group_id: str
    duplicate_count: int
    environment: str
    escalation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.alert.fingerprint,
            "dedupKey": self.dedup_key,
            "status": self.result,
            "alertStatus": self.alert.status,
            "duplicateCount": self.duplicate_count,
            "groupId": self.group_id,
        }


@attrs.frozen
class Outgoing:
    """
    One thing to forward: an alert (new, resolved or escalated) or a storm
    event.

    @ivar key: Events of one key are delivered in order, one at a time: an
        alert's dedup key (its fingerprint unless labels are ignored, so
        that the replicas of one alert stay in order), or C{storm:<groupId>}.
    """

    key: str
    body: Mapping[str, Any]
    idempotency_key: str


@attrs.frozen
class Snapshot:
    episodes: Mapping[str, Episode | None]
    storms: tuple[Any, int] | None


@attrs.frozen
class DeciderSettings:
    """
    @ivar dedup: With C{False}, every alert is forwarded (firing ones as
        new), though still correlated.
    @ivar escalate: With C{False}, duplicates are never escalated.
    """

    dedup: bool = True
    escalate: bool = True
    window: float = 300.0
    ignore_labels: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("alertname", "namespace")
    use_sender_group: bool = False
    environment_labels: tuple[str, ...] = ("environment", "env")
    environment_namespaces: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    default_environment: str = "production"
    rules: Mapping[str, EscalationRule] = attrs.field(factory=lambda: dict(DEFAULT_RULES))


def _override(start: EscalationRule, env: EnvironmentConfig) -> EscalationRule:
    return EscalationRule(
        level=env.level or start.level,
        total=env.total or start.total,
        within=env.within or start.within,
        window=env.window or start.window,
    )


def occurrence_key(alert: Alert, episode_started: float) -> str:
    """
    The idempotency key of an alert forwarded in the episode that started
    at C{episode_started}.
    """
    seed = f"{alert.idempotency_key}\x00{episode_started!r}"
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def settings_from_config(config: GatewayConfig) -> DeciderSettings:
    """
    The decider's settings from the configuration: escalation rules are the
    plan's defaults, overridden field by field by C{escalation.environments};
    an added environment starts from the default environment's rule, as
    configured.

    Environment names are compared in lower case, as environment labels are
    read: C{env: QA} must find the rule of an environment configured as
    C{QA}.
    """
    escalation = config.escalation
    environments = {name.lower(): env for name, env in escalation.environments.items()}
    default = escalation.default_environment.lower()
    rules = dict(DEFAULT_RULES)
    # The default environment's rule first, whatever the order of the
    # file: the added environments start from it.
    base = rules.get(default, DEFAULT_RULES["production"])
    if default in environments:
        base = rules[default] = _override(base, environments[default])
    for name, env in environments.items():
        if name != default:
            rules[name] = _override(rules.get(name, base), env)
    return DeciderSettings(
        dedup=config.dedup.enabled,
        window=config.dedup.window,
        ignore_labels=config.dedup.ignore_labels,
        group_by=config.correlation.group_by,
        use_sender_group=config.correlation.use_sender_group,
        escalate=escalation.enabled,
        environment_labels=escalation.environment_labels,
        environment_namespaces={n: e.namespaces for n, e in environments.items() if e.namespaces},
        default_environment=default,
        rules=rules,
    )


def storms_from_config(config: GatewayConfig) -> StormTracker | None:
    storm = config.storm
    if not storm.enabled:
        return None
    return StormTracker(
        threshold=storm.threshold,
        window=storm.window,
        flush_interval=storm.flush_interval,
        quiet_period=storm.quiet_period,
        max_members_listed=storm.max_members_listed,
    )


class Decider:
    """
    Decide on batches of alerts against the episode store.
    """

    def __init__(
        self,
        clock: IReactorTime,
        episodes: EpisodeStore,
        settings: DeciderSettings,
        storms: StormTracker | None = None,
    ) -> None:
        self.clock = clock
        self.episodes = episodes
        self.settings = settings
        self.storms = storms

    def _rule(self, environment: str) -> EscalationRule:
        rules = self.settings.rules
        return rules.get(environment) or rules.get(self.settings.default_environment) or DEFAULT_RULES["production"]

    def snapshot(self, alerts: Sequence[Alert]) -> Snapshot:
        """
        What deciding C{alerts} may change, copied, so that L{restore} can
        undo it.
        """
        s = self.settings
        keys = {dedup_key(a, s.ignore_labels) for a in alerts}
        episodes = {}
        for key in keys:
            episode = self.episodes.get(key)
            episodes[key] = episode.copy() if episode is not None else None
        storms = None
        if self.storms is not None:
            groups = [group_id(a, s.group_by, s.use_sender_group) for a in alerts]
            storms = (self.storms.snapshot(groups), self.storms.aggregated)
        return Snapshot(episodes, storms)

    def restore(self, snapshot: Snapshot) -> None:
        """
        Undo a decision whose forwards could not be queued: the sender's
        retry must be decided as if the batch had never been seen.
        """
        for key, episode in snapshot.episodes.items():
            if episode is None:
                self.episodes.discard(key)
            else:
                self.episodes.put(episode)
        if self.storms is not None and snapshot.storms is not None:
            self.storms.restore(*snapshot.storms)

    def decide(self, alerts: Sequence[Alert]) -> tuple[list[Verdict], list[Outgoing]]:
        """
        Decide on a batch, in order; update the state.
        """
        now = self.clock.seconds()
        verdicts: list[Verdict] = []
        outgoing: list[Outgoing] = []
        for alert in alerts:
            verdict, events = self._decide_one(alert, now)
            verdicts.append(verdict)
            outgoing.extend(events)
        return verdicts, outgoing

    def _decide_one(self, alert: Alert, now: float) -> tuple[Verdict, list[Outgoing]]:
        s = self.settings
        key = dedup_key(alert, s.ignore_labels)
        group = group_id(alert, s.group_by, s.use_sender_group)
        episode = self.episodes.get(key)
        if episode is not None and (episode.last_seen < now - s.window or not s.dedup):
            episode = None
        if alert.status == FIRING and (episode is None or episode.status == RESOLVED):
            return self._new(alert, key, group, now)
        if episode is None:
            # Resolved, and unknown here: the processor may know it.
            environment = environment_of(alert, s.environment_labels, s.environment_namespaces, s.default_environment)
            episode = Episode(key, alert.fingerprint, RESOLVED, now, now, group, environment, alert.source)
            self.episodes.put(episode)
            return self._forward(alert, episode, RESOLVED_RESULT)
        episode.last_seen = now
        if alert.status == RESOLVED and episode.status == FIRING:
            episode.status = RESOLVED
            self.episodes.put(episode)
            return self._forward(alert, episode, RESOLVED_RESULT)
        episode.duplicates += 1
        escalation = None
        # Sightings are kept only while they can still escalate the episode
        # (check_escalation trims them to the rule's window): otherwise an
        # alert re-sent within the window for weeks would keep them all.
        if s.escalate and alert.status == FIRING and episode.escalation is None:
            episode.recent.append(now)
            escalation = check_escalation(self._rule(episode.environment), episode, now)
        self.episodes.put(episode)
        if escalation is not None:
            episode.escalation = escalation["level"]
            episode.recent.clear()
            return self._forward(alert, episode, ESCALATED, escalation=escalation)
        return self._verdict(alert, episode, DUPLICATE), []

    def _new(self, alert: Alert, key: str, group: str, now: float) -> tuple[Verdict, list[Outgoing]]:
        s = self.settings
        environment = environment_of(alert, s.environment_labels, s.environment_namespaces, s.default_environment)
        episode = Episode(key, alert.fingerprint, FIRING, now, now, group, environment, alert.source)
        self.episodes.put(episode)
        if self.storms is not None:
            labels = group_labels(alert, s.group_by, s.use_sender_group)
            folded, events = self.storms.new_member(alert, group, labels, now)
            if folded:
                storm = self.storms.storm_of(group)
                episode.storm_id = storm.id if storm is not None else None
                return self._verdict(alert, episode, AGGREGATED), [self.storm_outgoing(e) for e in events]
        return self._forward(alert, episode, NEW)

    def _verdict(self, alert: Alert, episode: Episode, result: str) -> Verdict:
        return Verdict(
            alert, result, episode.key, episode.group_id, episode.duplicates, episode.environment, episode.escalation
        )

    def _forward(
        self, alert: Alert, episode: Episode, result: str, escalation: dict[str, Any] | None = None
    ) -> tuple[Verdict, list[Outgoing]]:
        body = alert.to_json()
        body.update(
            dedupKey=episode.key,
            groupId=episode.group_id,
            environment=episode.environment,
            decision=result,
            duplicateCount=episode.duplicates,
            firstSeen=rfc3339(episode.first_seen),
            lastSeen=rfc3339(episode.last_seen),
        )
        # The occurrence (fingerprint, start, status) within this episode:
        # redeliveries share it, but a reminder forwarded as new after the
        # window lapsed (same startsAt, hours later) must not be dropped by
        # the processor as a redelivery of the first episode.
        # Without deduplication every occurrence is forwarded and the
        # processor's idempotency is what drops repeats: key by occurrence.
        dedup = self.settings.dedup
        idempotency_key = occurrence_key(alert, episode.first_seen) if dedup else alert.idempotency_key
        if escalation is not None:
            body["escalation"] = escalation
            # A different thing from the alert it escalates: the processor
            # must not drop it as a redelivery of the first one.
            idempotency_key = f"{idempotency_key}-escalation"
        episode.forwarded = idempotency_key
        episode.delivery = "queued"
        return self._verdict(alert, episode, result), [Outgoing(episode.key, body, idempotency_key)]

    def storm_outgoing(self, event: Mapping[str, Any]) -> Outgoing:
        body = dict(event)
        body["firstSeen"] = rfc3339(body["firstSeen"])
        body["lastSeen"] = rfc3339(body["lastSeen"])
        body["members"] = [{**member, "seenAt": rfc3339(member["seenAt"])} for member in body["members"]]
        return Outgoing(f"storm:{body['groupId']}", body, f"{body['stormId']}-{body['sequence']}")

    def tick(self) -> list[Outgoing]:
        """
        Periodic work: expire lapsed episodes, flush and close storms.
        """
        now = self.clock.seconds()
        self.episodes.expire(now - self.settings.window)
        if self.storms is None:
            return []
        return [self.storm_outgoing(e) for e in self.storms.tick(now)]
