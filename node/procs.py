"""Child-process plumbing shared by the supervisor's children: spawn by exec, stop with a ladder,
and the parent-death rules every child follows."""
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def spawn(module: str, args: list[str], stdin: int | None = None) -> subprocess.Popen:
    """Start `python -m module args…` by fork+exec: no inherited zmq context, socket or key.
    Children log to stderr only; stdout belongs to the supervisor (JSON lines with --json)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], stdin=stdin,
                            stdout=subprocess.DEVNULL, close_fds=True)


def terminate(proc: subprocess.Popen, grace: float) -> None:
    """TERM, then KILL after `grace` seconds if still alive (gunicorn's ladder), then reap."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def die_with_parent(parent_pid: int, on_orphan: Callable[[], None]) -> None:
    """Exit when the supervisor dies: PR_SET_PDEATHSIG on Linux, and on every platform a 1 s
    getppid() poll (macOS has no pdeathsig, and launchd may leave children behind)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        on_orphan()

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        on_orphan()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
