# -*- test-case-name: tests.unit.test_state_memory -*-
"""
Exclusive hold of the keys a decision touches (its dedup keys and
correlation groups) while it is being committed, for the stores that keep
their working set in this process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from twisted.internet.defer import Deferred, succeed

__all__ = ["KeyLocks"]


class KeyLocks:
    """
    Exclusive hold of keys, first come first served per key.  Keys are
    taken in sorted order, so two holders of overlapping keys never wait
    for each other in a circle.  Uncontended, taking keys allocates no
    Deferred per key.
    """

    def __init__(self) -> None:
        # Held keys, each with the holders waiting for it, in order.
        self._held: dict[str, deque[Deferred[None]]] = {}
        # Waiters whose turn came, woken in order by the outermost release:
        # a woken holder that releases at once (a duplicate needs no disk
        # write) must not wake the next from inside its own wake-up, or a
        # long line of them would exhaust the stack.
        self._woken: deque[Deferred[None]] = deque()
        self._waking = False

    def __contains__(self, key: str) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def acquire(self, keys: Sequence[str]) -> Deferred[None]:
        """
        Take every key of C{keys} (sorted, without repeats).
        """
        return self._take(keys, 0)

    def _take(self, keys: Sequence[str], start: int) -> Deferred[None]:
        held = self._held
        for index in range(start, len(keys)):
            key = keys[index]
            waiters = held.get(key)
            if waiters is None:
                held[key] = deque()
                continue
            turn: Deferred[None] = Deferred()
            waiters.append(turn)
            return turn.addCallback(self._took, keys, index + 1)
        return succeed(None)

    def _took(self, _: None, keys: Sequence[str], after: int) -> Deferred[None]:
        # This key is ours (handed over): on with the rest.
        return self._take(keys, after)

    def release(self, keys: Iterable[str]) -> None:
        """
        Give up C{keys}: each goes to its next waiter, if any.
        """
        for key in keys:
            waiters = self._held[key]
            if waiters:
                # Handed over: the key stays held, by the waiter.
                self._woken.append(waiters.popleft())
            else:
                del self._held[key]
        if self._waking:
            return
        self._waking = True
        try:
            while self._woken:
                self._woken.popleft().callback(None)
        finally:
            self._waking = False
