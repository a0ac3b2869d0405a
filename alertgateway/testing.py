# -*- test-case-name: tests.unit.test_testing -*-
"""
Fakes for testing the gateway, and code built on it, without real I/O:
shipped as public API, as C{treq.testing} is.

  - L{StateTable} and L{DecisionDriver}: the pure decider on plain
    dictionaries, each decision committed at once;
  - L{InlineExecutor} and L{ManualExecutor}: run SQLite calls on the
    calling thread, at once or when the test says, for the durable queue on
    a memory reactor;
  - L{StubProcessor}: an Alert Processor for C{treq.testing.StubTreq} (or a
    real listener), answering each request as told and recording it;
  - L{GatewayReactor} and L{gateway_service}: a whole gateway on a
    C{MemoryReactorClock}.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from alertgateway.app.service import GatewayService
from alertgateway.config import GatewayConfig
from alertgateway.core.decider import DeciderSettings, decide, tick
from alertgateway.core.decision import Changes, Decision
from alertgateway.core.episodes import Episode
from alertgateway.core.model import Alert
from alertgateway.core.storms import Group, Member
from alertgateway.interfaces import IGatewayReactor

__all__ = [
    "HANG",
    "RESET",
    "STALL",
    "Answer",
    "DecisionDriver",
    "GatewayReactor",
    "InlineExecutor",
    "ManualExecutor",
    "Received",
    "StateTable",
    "StubProcessor",
    "gateway_service",
]

T = TypeVar("T")


class StateTable:
    """
    A L{alertgateway.core.decision.StateView} over dictionaries, to which
    decisions' changes are applied as they come: no bounds, no expiry.
    """

    def __init__(self) -> None:
        self.episodes: dict[str, Episode] = {}
        self.groups: dict[str, Group] = {}
        self.members: dict[str, list[Member]] = {}

    def episode(self, key: str) -> Episode | None:
        return self.episodes.get(key)

    def group(self, group_id: str) -> Group | None:
        return self.groups.get(group_id)

    def waiting(self, group_id: str, offset: int, count: int) -> Sequence[Member]:
        return self.members.get(group_id, [])[offset : offset + count]

    def storm_groups(self) -> Iterable[str]:
        return [g for g, group in self.groups.items() if group.storm is not None]

    def apply(self, changes: Changes) -> None:
        """
        Commit C{changes}.
        """
        for key, episode in changes.episodes.items():
            if episode is None:
                self.episodes.pop(key, None)
            else:
                self.episodes[key] = episode
        for group_id, group in changes.groups.items():
            if group is None:
                self.groups.pop(group_id, None)
            else:
                self.groups[group_id] = group
        for group_id, change in changes.waiting.items():
            members = [] if change.cleared else self.members.get(group_id, [])
            members = members[change.taken :] + list(change.added)
            if members:
                self.members[group_id] = members
            else:
                self.members.pop(group_id, None)


class DecisionDriver:
    """
    Run the pure decider as a store would, on a L{StateTable} at a clock's
    time, committing every decision at once.
    """

    def __init__(self, clock: IReactorTime, settings: DeciderSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings if settings is not None else DeciderSettings()
        self.table = StateTable()

    def decide(self, alerts: Sequence[Alert]) -> Decision:
        decision = decide(self.table, alerts, self.clock.seconds(), self.settings)
        self.table.apply(decision.changes)
        return decision

    def tick(self) -> Decision:
        decision = tick(self.table, self.clock.seconds(), self.settings)
        self.table.apply(decision.changes)
        return decision


class InlineExecutor:
    """
    Run each call at once, on the calling thread: the durable queue on a
    memory reactor, which runs no threads.

    @ivar calls: How many calls it ran.
    @ivar broken: While set, every call fails with it instead of running.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.broken: Exception | None = None

    def run(self, call: Callable[[], T]) -> Deferred[T]:
        self.calls += 1
        if self.broken is not None:
            return fail(self.broken)
        try:
            return succeed(call())
        except Exception:
            return fail()


class ManualExecutor:
    """
    An executor that holds each call until the test runs it
    (L{run_next}): what happens while SQLite is busy.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def run(self, call: Callable[[], T]) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self.calls.append((call, d))
        return d

    def run_next(self) -> None:
        """
        Run the oldest call held, and fire its Deferred with the result.
        """
        call, d = self.calls.pop(0)
        try:
            result = call()
        except Exception:
            d.errback()
        else:
            d.callback(result)


@attrs.frozen
class Answer:
    """
    How the stub processor answers one request.
    """

    code: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


# Special answers: never respond; drop the connection without a response;
# send the status line and part of a body, then nothing more.
HANG = Answer(0)
RESET = Answer(-1)
STALL = Answer(-2)


@attrs.frozen
class Received:
    """
    One request the stub processor received.
    """

    method: str
    path: str
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None


class StubProcessor(Resource):
    """
    An Alert Processor that answers requests with C{answers} in turn, then
    with C{default}, and records them.

    @ivar hanging: Requests left unanswered (L{HANG}, L{STALL}).
    @ivar lost: Those of them whose connection then went away.
    """

    isLeaf = True

    def __init__(self, *answers: Answer, default: Answer = Answer(202)) -> None:
        super().__init__()
        self.answers = list(answers)
        self.default = default
        self.received: list[Received] = []
        self.hanging: list[Any] = []
        self.lost: list[Any] = []

    def render(self, request: Any) -> object:
        headers = {
            name.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.received.append(Received(request.method.decode(), request.path.decode(), headers, request.content.read()))
        answer = self.answers.pop(0) if self.answers else self.default
        if answer in (HANG, STALL):
            self.hanging.append(request)
            request.notifyFinish().addErrback(lambda failure: self.lost.append(request))
        if answer is HANG:
            return NOT_DONE_YET
        if answer is RESET:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if answer is STALL:
            request.setResponseCode(200)
            request.write(b"partial")
            return NOT_DONE_YET
        request.setResponseCode(answer.code)
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        # In pieces, as a body arrives from a socket.
        for start in range(0, len(answer.body), 1000):
            request.write(answer.body[start : start + 1000])
        request.finish()
        return NOT_DONE_YET


@implementer(IGatewayReactor)
class GatewayReactor(MemoryReactorClock):
    """
    A C{MemoryReactorClock} that is everything the gateway asks of a
    reactor: calls "from threads" run at once, and there are no threads.
    """

    def callFromThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)

    def callInThread(self, callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        callable(*args, **kwargs)

    def getThreadPool(self) -> Any:
        raise NotImplementedError("a memory reactor runs no threads: give the gateway an InlineExecutor")

    def suggestThreadPoolSize(self, size: int) -> None:
        pass


def gateway_service(
    config: GatewayConfig, reactor: IGatewayReactor | None = None, *, executor: InlineExecutor | None = None
) -> tuple[GatewayService, IGatewayReactor, io.StringIO]:
    """
    A gateway on a memory reactor: the service, its reactor and its log.
    SQLite runs inline (C{executor}, a new L{InlineExecutor} by default).
    """
    reactor = reactor if reactor is not None else GatewayReactor()
    stream = io.StringIO()
    service = GatewayService(
        config, reactor, log_stream=stream, executor=executor if executor is not None else InlineExecutor()
    )
    return service, reactor, stream
