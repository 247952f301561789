"""Wall-clock deadlines for blocking socket calls: a watchdog thread shuts the socket at the deadline.

A socket timeout bounds each read, not the call: an answer that trickles one byte a second
never times out. Shutting the socket from another thread ends any blocking read or write on
it at once, whatever phase the call is in.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from typing import Protocol


class HasSocket(Protocol):
    sock: socket.socket | None


class Watch:
    """One call's deadline; `expired` tells whether the watchdog cut it."""

    __slots__ = ("deadline", "expired", "_done", "_target")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._done = False
        self._target: HasSocket | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class Watchdog:
    """Cuts the socket of every watched call still running at its deadline (one thread per process)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, seconds: float) -> Watch:
        """Watch a call that must end within `seconds` from now."""
        watch = Watch(time.monotonic() + seconds)
        with self._wake:
            heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="webhook-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._wake.notify()
        return watch

    def attach(self, watch: Watch, target: HasSocket) -> None:
        """The connection the call uses now; cut at once if the deadline has already passed."""
        with self._wake:
            watch._target = target
            if watch.expired:
                _shut(target)

    def finish(self, watch: Watch) -> None:
        """The call is over: from now on its connection may serve another call, never to be cut for this one."""
        with self._wake:
            watch._done = True
            watch._target = None

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and (self._heap[0][2]._done or self._heap[0][0] <= time.monotonic()):
                    _, _, watch = heapq.heappop(self._heap)
                    if not watch._done:
                        watch.expired = True
                        if watch._target is not None:
                            _shut(watch._target)
                self._wake.wait(self._heap[0][0] - time.monotonic() if self._heap else None)


def _shut(target: HasSocket) -> None:
    sock = target.sock
    if sock is None:
        return  # not connected yet: the caller checks `expired` once it is
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed
