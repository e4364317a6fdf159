"""Child processes of the supervisor: spawned by exec, stopped with a TERM-then-KILL ladder."""
import subprocess
import sys

# Children run from a folder nobody but root can write to, and (on Python 3.11+) with -P, so
# the folder `start` was run from never reaches their sys.path: `-m` would otherwise put it
# first and a planted `node/`, `ipc/` or `workers/` package would be imported by the process
# that receives the key. Not -I: it would also drop PYTHONPATH and the user site-packages,
# which are the operator's own choices (`pip install --user`), not another user's.
TRUSTED_CWD = "/"
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []


def spawn(module: str, args: list[str], handover: list[bytes]) -> subprocess.Popen:
    """Start `python -m module args…` by fork+exec (no inherited zmq context, socket or key)
    and write `handover` (ipc/handover.py) to its stdin pipe, one line each, then close it.
    Children log to stderr only; stdout belongs to the supervisor (JSON lines with --json)."""
    proc = subprocess.Popen([sys.executable, *SAFE_PATH, "-m", module, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True,
                            cwd=TRUSTED_CWD)
    assert proc.stdin is not None
    try:  # a few hundred bytes: fits the pipe buffer, never blocks
        proc.stdin.write(b"".join(line + b"\n" for line in handover))
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at once; the supervisor reaps it like any other death
    return proc


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
