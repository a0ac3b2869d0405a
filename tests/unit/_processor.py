"""
A stub Alert Processor for L{treq.testing.StubTreq}: answers each POST with
the next configured response and records what it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

__all__ = ["HANG", "RESET", "STALL", "Answer", "Processor", "Received"]


@attrs.frozen
class Answer:
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
    method: str
    path: str
    headers: Mapping[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None


class Processor(Resource):
    """
    Answer requests with C{answers} in turn, then with C{default}.
    """

    isLeaf = True

    def __init__(self, *answers: Answer, default: Answer = Answer(202)) -> None:
        super().__init__()
        self.answers = list(answers)
        self.default = default
        self.received: list[Received] = []
        self.hanging: list[Any] = []
        # Requests left unanswered whose connection then went away.
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
