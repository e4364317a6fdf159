"""Whether a worker's Ollama answers. A worker whose Ollama is down is not ready: the node must
not draw requests it can only fail (PROTOCOL.md `load.ready`). Probed once at start and, after
a failure that may mean Ollama is gone, again with backoff until it answers."""
import logging
import threading
import time
from collections.abc import Callable

from workers.ollama import OllamaError, get_version, session

log = logging.getLogger("workers.health")

PROBE_TIMEOUT = 3.0       # /api/version answers at once from a live Ollama, even while it loads
BACKOFF_FIRST = 0.25      # seconds between probes while down: doubles up to BACKOFF_MAX
BACKOFF_MAX = 5.0         # ...so a returning Ollama is noticed within about 5 s


class OllamaHealth:
    """Tracks one endpoint; `report(up, reason)` is called on every change of verdict (and for
    the first verdict), from whichever thread found it, before that thread goes on."""

    def __init__(self, endpoint: str, report: Callable[[bool, str], None]) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._report = report
        self._http = session()
        self._lock = threading.Lock()
        self._suspect = threading.Event()
        self._suspect.set()       # the first verdict comes from the thread's first probe
        self.up: bool | None = None

    def start(self) -> None:
        threading.Thread(target=self._watch, name="ollama-health", daemon=True).start()

    def recheck(self) -> bool:
        """After a failed job: probe now, and if Ollama is gone say so before the job's answer
        leaves, so the supervisor takes the slot out before it could dispatch another."""
        reason = self._probe()
        if reason:
            self._set(False, reason)
            self._suspect.set()
        return not reason

    def _probe(self) -> str:
        """"" when Ollama answers; otherwise one line saying why not."""
        try:
            get_version(self.endpoint, self._http, timeout=PROBE_TIMEOUT)
        except OllamaError as e:
            return str(e)
        return ""

    def _set(self, up: bool, reason: str) -> None:
        with self._lock:
            if self.up is up:
                return
            self.up = up
            self._report(up, reason)

    def _watch(self) -> None:
        while True:
            self._suspect.wait()
            self._suspect.clear()     # a recheck while probing sets it again: probe once more
            delay = BACKOFF_FIRST
            while (reason := self._probe()):
                self._set(False, reason)
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            self._set(True, "")
