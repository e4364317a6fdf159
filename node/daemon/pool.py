"""The inference worker processes: one slot per process, each bound to one Ollama endpoint.

Two liveness questions (anchors §8.3): is the process alive (poll each tick) and is it
making progress (a Ping answered within PING_TIMEOUT, a job not far past its deadline)."""
import logging
import random
import signal
import subprocess
import time
from dataclasses import dataclass

from ipc.handover import new_identity
from node.daemon import procs
from node.settings import WorkerSpec

log = logging.getLogger("parallelix.pool")

PING_EVERY = 2.0          # seconds between pings to each worker
PING_TIMEOUT = 10.0       # no Pong for this long: the worker hangs
READY_TIMEOUT = 15.0      # a new worker must say Ready within this (imports are slow on 2 cores)
KILL_GRACE = 2.0          # TERM -> KILL
BACKOFF_MAX = 60.0        # respawn backoff cap: the guard against restart loops


@dataclass
class Slot:
    """One worker process slot; the process in it is replaced when it dies or hangs."""

    name: str
    spec: WorkerSpec
    proc: subprocess.Popen | None = None
    identity: bytes = b""              # the process's routing id: random per spawn, a secret
    ready: bool = False                # the worker said Ready: its process is up and talking
    ollama_up: bool = False            # ...and its Ollama answers (the Ready's verdict)
    ollama_reason: str = ""            # why its Ollama is taken to be down
    job: int = 0                       # job number in progress, 0 when idle
    spawned_at: float = 0.0
    last_seen: float = 0.0             # monotonic time of the last message from the worker
    last_ping: float = 0.0
    restarts: int = 0
    worked: bool = False               # the worker in it answered a job: it is no crash loop
    failures_in_row: int = 0
    respawn_at: float = 0.0
    retiring: bool = False             # removed by a reload: not respawned
    served: int = 0
    failed: int = 0
    last_failure: str | None = None    # "code: reason" of the latest failed request, for status

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def serving(self) -> bool:
        """Counted in `load.ready` (PROTOCOL.md): up, its Ollama answers, not being retired."""
        return self.ready and self.ollama_up and not self.retiring

    @property
    def idle(self) -> bool:
        return self.serving and self.job == 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def spawn_worker(slot: Slot, work_endpoint: str, parent_pid: int) -> None:
    slot.identity = new_identity()
    slot.proc = procs.spawn("workers.inference", [
        "--slot", slot.name, "--endpoint", slot.spec.ollama, "--connect", work_endpoint,
        "--parent-pid", str(parent_pid)], handover=[slot.identity])
    slot.ready, slot.ollama_up, slot.job, slot.worked = False, False, 0, False
    slot.spawned_at = slot.last_seen = time.monotonic()
    log.info("worker.spawned slot=%s pid=%s ollama=%s", slot.name, slot.pid, slot.spec.ollama)


def schedule_respawn(slot: Slot, reason: str) -> None:
    """Replace a worker that answered a job at once (an OOM kill of a busy worker is no crash
    loop); back off 1, 2, 4 … 60 s (with jitter) while a slot's workers die before any work."""
    now = time.monotonic()
    if slot.worked:
        slot.failures_in_row = 0
        delay = 0.0
    else:
        young = now - slot.spawned_at < 30.0
        slot.failures_in_row = slot.failures_in_row + 1 if young else 1
        delay = min(BACKOFF_MAX, 2.0 ** (slot.failures_in_row - 1)) * random.uniform(0.8, 1.2)
    slot.respawn_at = now + delay
    slot.restarts += 1
    slot.proc, slot.ready, slot.ollama_up, slot.job = None, False, False, 0
    level = logging.ERROR if slot.failures_in_row >= 5 else logging.WARNING
    log.log(level, "worker.replaced slot=%s reason=%s respawn_in=%.1fs restarts=%d",
            slot.name, reason, delay, slot.restarts)


def exit_reason(proc: subprocess.Popen) -> str:
    code = proc.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with status {code}"
