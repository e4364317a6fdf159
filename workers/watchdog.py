"""Enforce a time budget on a blocking socket read, whatever the socket's own timeout."""
import socket
import threading
import time
from types import TracebackType


class Watchdog:
    """Shuts a socket down when the current budget runs out.

    A `requests` read timeout bounds each recv, not a phase of the answer: a server that trickles
    bytes, or a deadline that falls between two reads, would slip past it. Shutting the socket down
    wakes a blocked read at once; the reader then finds `expired` set to the budget's reason.
    """

    def __init__(self, sock: socket.socket, at: float, why: str) -> None:
        self._sock = sock
        self._at, self._why = at, why
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self.expired: str | None = None

    def arm(self, at: float, why: str) -> None:
        """Move the budget's end to monotonic time `at`; `why` says what ran out if it expires."""
        with self._cond:
            earlier = at < self._at
            self._at, self._why = at, why
            if earlier:
                self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                left = self._at - time.monotonic()
                if left <= 0:
                    self.expired = self._why
                    try:
                        self._sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass  # already closed: the reader is not blocked on it
                    return
                self._cond.wait(left)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
