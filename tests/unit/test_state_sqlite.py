"""
The SQLite state: decisions committed in the queue's database with the rows
they queue, restored at start; bookkeeping flushed later; what a failed
write leaves (nothing).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.core.decider import DeciderSettings
from alertgateway.core.decision import Decision, Verdict
from alertgateway.core.episodes import Delivery
from alertgateway.core.model import Alert, fingerprint
from alertgateway.core.storms import StormSettings
from alertgateway.delivery.durable import DurableQueue
from alertgateway.delivery.envelope import Envelope
from alertgateway.delivery.journal import JournalError, SQLiteJournal
from alertgateway.state.errors import QueueFull
from alertgateway.state.sqlite import SQLiteState, stats
from alertgateway.testing import InlineExecutor

NOW = 1_800_000_000.0
STORMS = StormSettings(threshold=2, window=60, flush_interval=10, quiet_period=30, max_members_listed=2)


def make_alert(status: str = "firing", **labels: str) -> Alert:
    merged: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", **labels}
    return Alert(fingerprint(merged), "alertmanager", status, merged, {}, "2026-11-26T03:49:49Z", None, "", "t")


class Gateway:
    """
    A SQLite state over a real durable queue on a file, as one run of the
    gateway would have them; L{restart} is another run on the same file.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        path: str,
        settings: DeciderSettings,
        *,
        start: float = NOW,
        max_tracked: int = 100,
        **state: Any,
    ) -> None:
        self.case = case
        self.path = path
        self.clock = Clock()
        self.clock.advance(start)
        self.executor = InlineExecutor()
        self.journal = SQLiteJournal(path, self.executor, clock_seconds=self.clock.seconds)
        self.queue = DurableQueue(self.journal, max_items=100, max_bytes=10**6)
        case.successResultOf(self.queue.load())
        self.state = SQLiteState(settings, self.journal, clock=self.clock.seconds, max_tracked=max_tracked, **state)
        self.restored = case.successResultOf(self.state.restore(self.clock.seconds()))
        self.queued: list[Envelope] = []

    def enqueue(self, decision: Decision, write: object | None) -> Deferred[None]:
        if not decision.outgoing and write is None:
            return succeed(None)
        envelopes = [Envelope(o.key, o.body, o.idempotency_key, "req") for o in decision.outgoing]
        self.queued.extend(envelopes)
        return self.queue.put(envelopes, write)

    def decide(self, *alerts: Alert, replay: tuple[str, float] | None = None) -> list[Verdict]:
        decision = self.case.successResultOf(self.state.decide(alerts, self.clock.seconds(), self.enqueue, replay))
        return [r.verdict for r in decision.rulings]

    def tick(self) -> Decision:
        return self.case.successResultOf(self.state.tick(self.clock.seconds(), self.enqueue))

    def crash(self) -> None:
        """
        Stop as kill -9 would: nothing more is written (no flush).
        """
        self.case.successResultOf(self.journal.close())


class SQLiteStateTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "queue.db")

    def run_gateway(self, settings: DeciderSettings | None = None, **options: Any) -> Gateway:
        return Gateway(self, self.path, settings or DeciderSettings(storms=None), **options)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as connection:
            return connection.execute(query).fetchall()


class RestartTests(SQLiteStateTestCase):
    """
    What a restart, clean or not, keeps.
    """

    def test_forwarded_alert_is_duplicate_after_restart(self) -> None:
        """
        An alert forwarded before a crash is a duplicate after it, not
        forwarded again, and its count carries on once flushed.
        """
        first = self.run_gateway()
        self.assertEqual(first.decide(make_alert()), [Verdict.NEW])
        first.clock.advance(10)
        first.decide(make_alert())
        self.successResultOf(first.state.flush())
        first.crash()
        second = self.run_gateway()
        second.clock.advance(20)
        self.assertEqual(second.decide(make_alert()), [Verdict.DUPLICATE])
        self.assertEqual(second.queued, [])
        episode = self.successResultOf(second.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.duplicates, 2)
        self.assertEqual(second.restored.episodes, 1)

    def test_forward_committed_with_its_row(self) -> None:
        """
        A forwarding decision is written in the transaction of its queue
        row: both are on disk when the decision fires, without any flush.
        """
        gateway = self.run_gateway()
        gateway.decide(make_alert())
        self.assertEqual(len(self.rows("SELECT key FROM episodes")), 1)
        self.assertEqual(len(self.rows("SELECT id FROM items")), 1)

    def test_duplicates_written_later(self) -> None:
        """
        A duplicate (bookkeeping) does not wait for the disk: it is written
        by the next flush; a crash before it loses the count, never the
        episode.
        """
        gateway = self.run_gateway()
        gateway.decide(make_alert())
        calls = gateway.executor.calls
        gateway.decide(make_alert())
        self.assertEqual(gateway.executor.calls, calls)
        gateway.crash()
        again = self.run_gateway()
        episode = self.successResultOf(again.state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.duplicates, 0)

    def test_watched_groups_not_kept(self) -> None:
        """
        A group only watched for a storm (its recent sightings) is not
        written, even by the flush; the group of a storm is written with
        the decision that starts it.
        """
        gateway = self.run_gateway(DeciderSettings(storms=STORMS))
        gateway.decide(make_alert(pod="a"))
        self.successResultOf(gateway.state.flush())
        self.assertEqual(self.rows("SELECT COUNT(*) FROM groups"), [(0,)])
        gateway.decide(make_alert(pod="b"), make_alert(pod="c"))
        [(doc,)] = self.rows("SELECT doc FROM groups")
        self.assertIsNotNone(json.loads(doc)["storm"])

    def test_delivery_outcome_from_the_queue(self) -> None:
        """
        Delivery outcomes are not written: after a restart an episode whose
        forward left the queue is delivered, one whose forward is a dead
        letter rejected, one still queued queued.
        """
        gateway = self.run_gateway()
        gateway.decide(make_alert(pod="gone"), make_alert(pod="dead"), make_alert(pod="waiting"))
        calls = gateway.executor.calls
        gone, dead, _ = gateway.queue.take_now(3)
        gateway.state.delivered(gone.key, gone.idempotency_key, Delivery.DELIVERED)
        gateway.queue.done(gone)
        gateway.queue.bury(dead, "HTTP 400", 1)
        self.successResultOf(gateway.state.flush())
        self.assertEqual(gateway.executor.calls, calls + 2)
        gateway.crash()
        again = self.run_gateway()
        outcomes = [
            self.successResultOf(again.state.episode(make_alert(pod=pod).fingerprint)).delivery  # type: ignore[union-attr]
            for pod in ("gone", "dead", "waiting")
        ]
        self.assertEqual(outcomes, [Delivery.DELIVERED, Delivery.REJECTED, Delivery.QUEUED])

    def test_storm_members_survive(self) -> None:
        """
        Members waiting in a storm are on disk when accepted: after a crash
        the storm is restored and its next events list every one of them.
        """
        first = self.run_gateway(DeciderSettings(storms=STORMS))
        verdicts = first.decide(*(make_alert(pod=str(n)) for n in range(8)))
        self.assertEqual(verdicts.count(Verdict.AGGREGATED), 6)
        first.crash()
        second = self.run_gateway(DeciderSettings(storms=STORMS))
        self.assertEqual((second.restored.storms, second.restored.members), (1, 6))
        listed: list[str] = []
        for _ in range(4):
            second.clock.advance(10)
            listed += [m["fingerprint"] for o in second.tick().outgoing for m in o.body["members"]]
        self.assertEqual(listed, [make_alert(pod=str(n)).fingerprint for n in range(2, 8)])
        self.assertEqual(second.state.active_storms, 0)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM members"), [(0,)])

    def test_replay_keys_survive(self) -> None:
        """
        A signed webhook's replay key is written with its decision, even one
        of duplicates only, and restored.
        """
        gateway = self.run_gateway()
        gateway.decide(make_alert())
        gateway.decide(make_alert(), replay=("std:msg-1", NOW + 300))
        gateway.crash()
        again = self.run_gateway()
        self.assertEqual(again.restored.replay_keys, (("std:msg-1", NOW + 300),))

    def test_lapsed_not_restored(self) -> None:
        """
        Episodes that lapsed while the gateway was away are not restored,
        and are forgotten on disk too.
        """
        first = self.run_gateway()
        first.decide(make_alert())
        first.crash()
        later = self.run_gateway(start=NOW + 301)
        self.assertEqual(later.restored.episodes, 0)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM episodes"), [(0,)])
        self.assertEqual(later.decide(make_alert()), [Verdict.NEW])

    def test_bound_on_restore(self) -> None:
        """
        At most max_tracked episodes are restored: the most recently seen.
        """
        first = self.run_gateway()
        for n in range(5):
            first.clock.advance(1)
            first.decide(make_alert(pod=str(n)))
        first.crash()
        smaller = self.run_gateway(start=NOW + 10, max_tracked=3)
        self.assertEqual(smaller.restored.episodes, 3)
        kept = {str(row[0]) for row in self.rows("SELECT key FROM episodes")}
        self.assertEqual(kept, {make_alert(pod=str(n)).fingerprint for n in (2, 3, 4)})


class FailureTests(SQLiteStateTestCase):
    """
    A refused write leaves nothing, in the state or the queue.
    """

    def test_disk_error_leaves_no_trace(self) -> None:
        """
        When the transaction fails (the disk refuses it), the decision is
        not kept in memory nor on disk, no row is queued, and the retry is
        new.
        """
        gateway = self.run_gateway()
        gateway.executor.broken = JournalError("OperationalError: disk I/O error")
        self.failureResultOf(gateway.state.decide([make_alert()], gateway.clock.seconds(), gateway.enqueue), QueueFull)
        gateway.executor.broken = None
        self.assertEqual(self.rows("SELECT COUNT(*) FROM episodes"), [(0,)])
        self.assertEqual(self.rows("SELECT COUNT(*) FROM items"), [(0,)])
        self.assertEqual(gateway.decide(make_alert()), [Verdict.NEW])

    def test_state_write_error_rolls_back_the_rows(self) -> None:
        """
        A state write that fails in the transaction takes the queue rows
        with it.
        """
        gateway = self.run_gateway()
        with sqlite3.connect(self.path) as connection:
            connection.execute("DROP TABLE episodes")
        self.failureResultOf(gateway.state.decide([make_alert()], gateway.clock.seconds(), gateway.enqueue), QueueFull)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM items"), [(0,)])

    def test_queue_full_leaves_no_trace(self) -> None:
        """
        A batch the queue cannot take is refused before anything is written.
        """
        gateway = self.run_gateway()
        gateway.queue.max_items = 0
        self.failureResultOf(gateway.state.decide([make_alert()], gateway.clock.seconds(), gateway.enqueue), QueueFull)
        self.assertEqual(self.rows("SELECT COUNT(*) FROM episodes"), [(0,)])


class BookkeepingTests(SQLiteStateTestCase):
    """
    What the flush writes, and forgets.
    """

    def test_evictions_and_expiry_written(self) -> None:
        """
        Episodes evicted past max_tracked or expired are deleted on disk by
        the next flush.
        """
        gateway = self.run_gateway(DeciderSettings(storms=None, window=100))
        gateway.state.max_tracked = 2
        for n in range(3):
            gateway.decide(make_alert(pod=str(n)))
        self.successResultOf(gateway.state.flush())
        self.assertEqual(self.rows("SELECT COUNT(*) FROM episodes"), [(2,)])
        gateway.clock.advance(101)
        gateway.tick()
        self.successResultOf(gateway.state.flush())
        self.assertEqual(self.rows("SELECT COUNT(*) FROM episodes"), [(0,)])

    def test_stats(self) -> None:
        """
        stats() counts what the database holds.
        """
        gateway = self.run_gateway(DeciderSettings(storms=STORMS))
        gateway.decide(*(make_alert(pod=str(n)) for n in range(4)))
        with sqlite3.connect(self.path) as connection:
            counts = stats(connection)
        self.assertEqual(
            counts,
            {
                "episodes": 4,
                "groups": 1,
                "storms": 1,
                "waiting_members": 2,
                "replay_keys": 0,
                "queued": 3,
                "dead_letters": 0,
            },
        )

    def test_stats_command(self) -> None:
        """
        C{alertgateway state stats --config FILE} prints those counts, one
        per line or as JSON; without a database, or with the memory
        backend, it says why and fails.
        """
        from alertgateway import cli

        gateway = self.run_gateway(DeciderSettings(storms=STORMS))
        gateway.decide(*(make_alert(pod=str(n)) for n in range(4)), replay=("msg-1", gateway.clock.seconds() + 300))
        config = os.path.join(os.path.dirname(self.path), "gateway.yaml")
        base = (
            "webhook:\n  auth:\n    token: t\nalert_processor:\n  endpoint: file:x.jsonl\n"
            f"queue:\n  path: {self.path}\n"
        )
        with open(config, "w") as f:
            f.write(base)

        def run(*argv: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            return cli.main(["state", "stats", *argv, "--config", config], out, err), out.getvalue(), err.getvalue()

        code, out, _ = run()
        self.assertEqual(code, 0)
        self.assertIn("episodes: 4\n", out)
        self.assertIn("waiting members: 2\n", out)
        self.assertIn("replay keys: 1\n", out)
        code, out, _ = run("--json")
        self.assertEqual(json.loads(out)["storms"], 1)
        with open(config, "w") as f:
            f.write(base.replace(self.path, self.path + ".missing"))
        code, _, err = run()
        self.assertEqual((code, "no database at" in err), (cli.EXIT_FAILED, True))
        with open(config, "w") as f:
            f.write(base + "  backend: memory\n")
        code, _, err = run()
        self.assertEqual((code, "state.backend is memory" in err), (cli.EXIT_FAILED, True))


def replica_alert(replica: str, status: str = "firing") -> Alert:
    labels: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1", "replica": replica}
    return Alert(fingerprint(labels), "alertmanager", status, labels, {}, "2026-11-26T03:49:49Z", None, "", "t")


HA = DeciderSettings(storms=None, ignore_labels=("replica",), min_spacing=0.0)


class HACopyResolutionTests(SQLiteStateTestCase):
    def test_copy_resolution_survives_crash(self) -> None:
        """
        With dedup.ignore_labels, the first copy's resolution (a duplicate
        that forwards nothing) decides whether the last copy's resolution
        is forwarded.  It is written only by the next flush, so a crash
        within state.flush_interval forgets it: after the restart the other
        copy's resolution is taken for a duplicate (the first copy seems
        still to fire) and the processor never receives the episode's
        resolution.  Pins: the resolution of the episode is forwarded after
        the restart.
        """
        first = self.run_gateway(HA)
        self.assertEqual(first.decide(replica_alert("a")), [Verdict.NEW])
        first.clock.advance(1)
        self.assertEqual(first.decide(replica_alert("b")), [Verdict.DUPLICATE])
        self.successResultOf(first.state.flush())
        first.clock.advance(60)
        # Copy a resolves: forwards nothing, the episode goes on (b fires).
        self.assertEqual(first.decide(replica_alert("a", "resolved")), [Verdict.DUPLICATE])
        first.crash()  # kill -9 before the next flush (at most 1 s later)

        second = self.run_gateway(HA, start=NOW + 62)
        verdicts = second.decide(replica_alert("b", "resolved"))
        self.assertEqual(verdicts, [Verdict.RESOLVED], "the episode's resolution is never forwarded")
        self.assertEqual([o.body["decision"] for o in second.queued], ["resolved"])


class ReplaysPruneTests(SQLiteStateTestCase):
    def test_expired_replay_keys_pruned_without_other_bookkeeping(self) -> None:
        """
        The replays table gets one row per signed webhook; expired rows are
        deleted only by a flush that has dirty episodes (flush returns at
        once when none is dirty) or at start.  A signed sender whose
        webhooks all carry a replay id makes every decision a write-through
        (nothing ever dirty), so the table grows without bound while the
        gateway runs.  Pins: after the keys expired, a flush leaves no
        expired replay key on disk.
        """
        gateway = self.run_gateway()
        for n in range(50):
            gateway.decide(
                fingerprint_alert(),
                replay=(f"std:msg-{n}", gateway.clock.seconds() + 5),
            )
            gateway.clock.advance(1)
        gateway.clock.advance(10)
        self.successResultOf(gateway.state.flush())
        expired = self.rows(f"SELECT COUNT(*) FROM replays WHERE until < {gateway.clock.seconds()}")
        self.assertEqual(expired, [(0,)])


def fingerprint_alert() -> Alert:
    labels: Mapping[str, str] = {"alertname": "PodCrash", "namespace": "payments", "pod": "p-1"}
    return Alert(fingerprint(labels), "alertmanager", "firing", labels, {}, "2026-11-26T03:49:49Z", None, "", "t")


class StormsTurnedOffTests(SQLiteStateTestCase):
    def test_open_storm_closed_after_restart_without_storms(self) -> None:
        """
        An operator restarts with storm.enabled: false while a storm is open
        with members waiting.  The restore puts the storm back
        (restored.storms = 1), but the tick does nothing without storm
        settings, so the members wait forever: never sent, their rows kept
        and the storm counted in the gauge for good.  Pins: the members
        waiting in a restored storm reach the processor (or are forwarded
        some other way) when storms are turned off.
        """

        first = self.run_gateway(DeciderSettings(storms=STORMS))
        first.decide(*(make_alert(pod=str(n)) for n in range(8)))
        first.crash()
        second = self.run_gateway(DeciderSettings(storms=None))
        listed: list[str] = []
        for _ in range(10):
            second.clock.advance(30)
            listed += [m["fingerprint"] for o in second.tick().outgoing for m in o.body.get("members", [])]
        self.assertEqual(len(listed), 6)


class OutcomeDuringRestoreTests(SQLiteStateTestCase):
    def test_outcome_while_restoring(self) -> None:
        """
        The service starts the forwarder before the state is restored (the
        restore is one more transaction after the queue is loaded): a
        delivery that ends while the restore is reading finds no episode
        in memory (its outcome is dropped), and the restore, which read the
        item still queued, marks the episode queued for good: the status
        API says "queued" for an alert the processor has.  Pins: after the
        restore, an episode whose forward was delivered meanwhile is
        "delivered".
        """
        import os

        from alertgateway.core.episodes import Delivery
        from alertgateway.delivery.durable import DurableQueue
        from alertgateway.delivery.journal import SQLiteJournal
        from alertgateway.state.sqlite import SQLiteState
        from alertgateway.testing import ManualExecutor

        first = self.run_gateway()
        first.decide(make_alert())
        first.crash()

        executor = ManualExecutor()
        journal = SQLiteJournal(self.path, executor, clock_seconds=lambda: NOW + 5)
        queue = DurableQueue(journal, max_items=100, max_bytes=10**6)
        loaded = queue.load()
        executor.run_next()
        self.assertEqual(self.successResultOf(loaded), 1)
        state = SQLiteState(DeciderSettings(storms=None), journal, clock=lambda: NOW + 5, max_tracked=100)
        restoring = state.restore(NOW + 5)
        # The forwarder delivers the queued alert meanwhile.
        [envelope] = queue.take_now(1)
        state.delivered(envelope.key, envelope.idempotency_key, Delivery.DELIVERED)
        queue.done(envelope)
        while executor.calls:
            executor.run_next()
        self.successResultOf(restoring)
        episode = self.successResultOf(state.episode(make_alert().fingerprint))
        assert episode is not None
        self.assertEqual(episode.delivery, Delivery.DELIVERED)
        self.assertTrue(os.path.exists(self.path))
