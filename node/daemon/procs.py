"""Child processes of the supervisor: spawned by exec, stopped with a TERM-then-KILL ladder."""
import subprocess
import sys


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
