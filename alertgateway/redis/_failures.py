# -*- test-case-name: tests.unit.test_redis_client -*-
"""
How the Redis client sorts what went wrong: Redis could not answer
("unavailable", "timeout"), or answered with an error ("error"), whose
reply the callers get to see.
"""

from __future__ import annotations

import txredisapi
from twisted.internet.defer import CancelledError, FirstError
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

__all__ = ["classify", "refusal"]

# Errors of a server that is there but cannot serve now: as good as down.
# MISCONF: it cannot persist (disk full); NOREPLICAS: too few replicas
# acknowledge writes; NOAUTH, WRONGPASS, NOPERM: credentials revoked.
_UNAVAILABLE_REPLIES = (
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "BUSY",
    "OOM",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MISCONF",
    "NOREPLICAS",
    "NOAUTH",
    "WRONGPASS",
    "NOPERM",
)


def classify(failure: Failure) -> str:
    """
    C{timeout}, C{unavailable} or C{error}: the C{reason} label of
    C{gateway_redis_errors_total}.
    """
    if failure.check(DeferredTimeout, CancelledError, txredisapi.TimeoutError):
        return "timeout"
    if failure.check(txredisapi.ConnectionError, ConnectError, ConnectionLost, ConnectionDone):
        return "unavailable"
    if failure.check(txredisapi.ResponseError) and str(failure.value).split(" ", 1)[0] in _UNAVAILABLE_REPLIES:
        return "unavailable"
    return "error"


def refusal(failure: Failure) -> Exception | None:
    """
    What Redis answered instead of a reply (an error reply, or one that
    cannot be read), for one command or the first failed of a pipeline.
    """
    value = failure.value
    if isinstance(value, FirstError):
        return refusal(value.subFailure)
    if isinstance(value, txredisapi.RedisError):
        refused: Exception = value
        return refused
    return None
