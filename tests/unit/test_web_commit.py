"""
What a sender experiences while its alerts are being committed: requests on
the same alerts (pipelined or on other connections) wait their turn and are
each answered; a refused commit is answered 503 and leaves the retry free;
a sender that goes away mid-commit neither loses the commit nor frees a
replay; a replay refused by the shared replay memory stays refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from alertgateway.delivery.envelope import Envelope
from alertgateway.guards.auth import SignatureAuthenticator
from alertgateway.guards.replays import ReplayCache
from alertgateway.guards.signatures import StandardWebhooksVerifier
from alertgateway.observability.metrics import GatewayMetrics
from alertgateway.redis.failover import Failover, SharedReplays
from alertgateway.state.errors import QueueFull
from alertgateway.web.endpoints import Guards
from tests.unit._http import AUTH, NOW, PROMETHEUS, Connection, alert, body, request_bytes, webhook_site

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
HEADERS = {**AUTH, "Content-Type": "application/json"}


class SlowFirstWrite:
    """
    A queue whose first write completes when the test says; the others at
    once.
    """

    def __init__(self) -> None:
        self.first: Deferred[None] | None = None
        self.queued: list[Envelope] = []

    def __call__(self, envelopes: list[Envelope]) -> Deferred[None]:
        if self.first is None:
            self.first = Deferred()
            return self.first.addCallback(lambda _: self.queued.extend(envelopes))
        self.queued.extend(envelopes)
        return succeed(None)


class SameAlertsTests(SynchronousTestCase):
    """
    Requests about the same alerts while the first is being committed.
    """

    def test_pipelined_requests_all_answered(self) -> None:
        """
        A request pipelined behind one whose commit is slow, and another on
        a second connection, wait for it and are all answered 202.
        """
        queue = SlowFirstWrite()
        site = webhook_site(submit=queue)
        a, b = Connection(site), Connection(site)
        request = request_bytes("POST", PROMETHEUS, headers=HEADERS, body=body(alert("Disk")))
        a.send(request)
        b.send(request)
        a.send(request)
        self.assertEqual((len(a.responses()), len(b.responses())), (0, 0))
        assert queue.first is not None
        queue.first.callback(None)
        self.assertEqual([r.status for r in a.responses() + b.responses()], [202, 202, 202])

    def test_refused_commit_answered_and_the_rest_go_on(self) -> None:
        """
        When the slow commit is refused, its request is answered 503 with
        Retry-After, and the requests waiting behind it are decided afresh
        and answered 202: none is left without an answer.
        """
        queue = SlowFirstWrite()
        site = webhook_site(submit=queue)
        a, b, c = Connection(site), Connection(site), Connection(site)
        request = request_bytes("POST", PROMETHEUS, headers=HEADERS, body=body(alert("Disk")))
        a.send(request)
        b.send(request)
        c.send(request)
        b.send(request)
        assert queue.first is not None
        queue.first.errback(QueueFull("the queue database refused the write"))
        [refused] = a.responses()
        self.assertEqual((refused.status, refused.header("Retry-After") is not None), (503, True))
        self.assertEqual([r.status for r in b.responses() + c.responses()], [202, 202, 202])
        self.assertEqual(len(queue.queued), 3)


def signed(payload: bytes, message_id: str = "msg-1") -> dict[str, str]:
    """
    Standard Webhooks headers signing C{payload} with L{SECRET} at NOW.
    """
    stamp = str(int(NOW))
    mac = hmac.new(base64.b64decode(SECRET[6:]), f"{message_id}.{stamp}.".encode() + payload, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


class SharedKeys:
    """
    Redis's SET NX and DEL, on a dict the replicas share.
    """

    def __init__(self) -> None:
        self.keys: dict[str, float] = {}

    def claim(self, key: str, until: float) -> Deferred[bool]:
        if key in self.keys:
            return succeed(False)
        self.keys[key] = until
        return succeed(True)

    def forget(self, key: str) -> Deferred[None]:
        self.keys.pop(key, None)
        return succeed(None)


class _NoClient:
    """
    A Redis client that is never heard from (the failover watches it).
    """

    def on_state(self, callback: object) -> None:
        pass


class ReplayTests(SynchronousTestCase):
    """
    Signed messages, and what a refusal or a lost connection does to their
    replay memory.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def replica(self, shared: SharedKeys | None = None, submit: SlowFirstWrite | None = None) -> Connection:
        """
        A gateway verifying signatures, with its own replay cache and, if
        given, the C{shared} one.
        """
        local = ReplayCache(self.clock, ttl=300)
        metrics = GatewayMetrics()
        shared_replays = None
        if shared is not None:
            failover = Failover(_NoClient(), "fail_closed", metrics.redis)  # type: ignore[arg-type]
            shared_replays = SharedReplays(shared, local, failover)  # type: ignore[arg-type]
        guards = Guards(
            authenticator=SignatureAuthenticator(StandardWebhooksVerifier([SECRET], clock=self.clock, replays=local)),
            replays=local,
            shared_replays=shared_replays,
        )
        return Connection(
            webhook_site(clock=self.clock, guards=guards, metrics=metrics, submit=submit or (lambda e: succeed(None)))
        )

    def test_replay_refused_by_the_shared_memory_stays_refused(self) -> None:
        """
        A captured message replayed to another replica is refused 401, as
        often as it is replayed: the refusal does not erase the memory of
        the original acceptance.
        """
        shared = SharedKeys()
        a, b = self.replica(shared), self.replica(shared)
        payload = body(alert("DiskFull"))
        self.assertEqual(a.request("POST", PROMETHEUS, headers=signed(payload), body=payload).status, 202)
        for _ in range(3):
            self.assertEqual(b.request("POST", PROMETHEUS, headers=signed(payload), body=payload).status, 401)

    def retry_after_leaving(self, commit: Callable[[Deferred[None]], object]) -> int:
        """
        A signed webhook whose sender goes away while its alerts are being
        committed; C{commit} then ends the commit.  The status the same
        signed message gets when it is sent again.
        """
        queue = SlowFirstWrite()
        client = self.replica(submit=queue)
        payload = body(alert("DiskFull"))
        client.send(request_bytes("POST", PROMETHEUS, headers=signed(payload), body=payload))
        client.lose()
        assert queue.first is not None
        commit(queue.first)
        again = Connection(client.site)
        return again.request("POST", PROMETHEUS, headers=signed(payload), body=payload).status

    def test_sender_gone_during_the_commit_is_no_reason_to_replay(self) -> None:
        """
        A sender that goes away while its alerts are being committed: once
        they are, the same signed message is a replay (401).
        """
        self.assertEqual(self.retry_after_leaving(lambda d: d.callback(None)), 401)

    def test_sender_gone_and_the_commit_refused(self) -> None:
        """
        A sender that goes away while its alerts are being committed, and
        the commit is then refused: its retry of the same signed message is
        accepted, as nothing of it was.
        """
        self.assertEqual(self.retry_after_leaving(lambda d: d.errback(QueueFull("disk full"))), 202)
