"""Real processes for tests: the Ollama stand-in, the inference worker, and a ZeroMQ ROUTER that
plays the supervisor. A plain module (import it from any test); every helper cleans up after
itself and waits on sockets or processes with a timeout, never a blind sleep."""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import zmq

from ipc.messages import MAX_WORK_MESSAGE, FromWorker, Job, encoder, from_worker

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "scripts" / "ollama_standin.py"
IPC_PATH_MAX = 100  # Linux allows 107 bytes, macOS 104

M = TypeVar("M")


def stop_process(proc: subprocess.Popen, timeout: float = 5) -> int:
    """SIGTERM, then SIGKILL if it lingers; returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)


def read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or AssertionError if none arrives within `timeout`."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, f"no line within {timeout} s"
    return stream.readline()


@contextmanager
def start_standin(*args: str, log: Path | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run scripts/ollama_standin.py on a free loopback port; yield (process, base URL).

    `args` are extra flags (e.g. "--token-ms", "50"); its request log goes to `log`."""
    with open(log or os.devnull, "ab") as err:
        proc = subprocess.Popen([sys.executable, str(STANDIN), "--port", "0", *args],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = read_line(proc.stdout, 10)
        assert line.startswith("LISTENING http://"), line
        yield proc, line.split()[1]
    finally:
        stop_process(proc)
        proc.stdout.close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (an Ollama that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ipc_dir(preferred: Path) -> Path:
    """`preferred` if an ipc:// socket path in it fits the OS limit, else a short temp folder."""
    if len(str(preferred / "work.sock")) <= IPC_PATH_MAX:
        return preferred
    return Path(tempfile.mkdtemp(prefix="pxt-"))


class Router:
    """The supervisor's side of the work socket: a bound ROUTER that sends and receives the
    ipc/messages.py work messages by worker identity."""

    def __init__(self, folder: Path, endpoint: str | None = None) -> None:
        self.endpoint = endpoint or f"ipc://{ipc_dir(folder) / 'work.sock'}"
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_WORK_MESSAGE)
        self.sock.bind(self.endpoint)

    def recv(self, timeout: float = 10) -> tuple[bytes, FromWorker]:
        """The next (identity, message), or AssertionError after `timeout` seconds."""
        assert self.sock.poll(int(timeout * 1000)), f"no message from a worker within {timeout} s"
        ident, data = self.sock.recv_multipart()
        return ident, from_worker.decode(data)

    def expect(self, kind: type[M], timeout: float = 10) -> M:
        """The next message, which must be a `kind`."""
        _, msg = self.recv(timeout)
        assert isinstance(msg, kind), msg
        return msg

    def silent(self, timeout: float) -> bool:
        """True when no message arrives within `timeout` seconds."""
        return not self.sock.poll(int(timeout * 1000))

    def send(self, ident: bytes, msg: Any) -> None:
        self.sock.send_multipart([ident, encoder.encode(msg)])

    def send_raw(self, ident: bytes, *frames: bytes) -> None:
        self.sock.send_multipart([ident, *frames])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


@contextmanager
def router(folder: Path, endpoint: str | None = None) -> Iterator[Router]:
    r = Router(folder, endpoint)
    try:
        yield r
    finally:
        r.close()


def worker_command(endpoint: str, connect: str, *extra: str, slot: str = "w0") -> list[str]:
    """The command line the supervisor uses to start an inference worker."""
    return [sys.executable, "-m", "workers.inference", "--slot", slot, "--endpoint", endpoint,
            "--connect", connect, *extra]


@contextmanager
def start_worker(endpoint: str, connect: str, *extra: str, slot: str = "w0",
                 log: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run an inference worker as a child of the test (so --parent-pid is the test's pid)."""
    with open(log or os.devnull, "ab") as err:
        proc = subprocess.Popen(worker_command(endpoint, connect, "--parent-pid", str(os.getpid()),
                                               *extra, slot=slot), cwd=ROOT, stderr=err,
                                stdin=subprocess.PIPE)
    hand_over(proc, slot.encode())
    try:
        yield proc
    finally:
        stop_process(proc)


def hand_over(proc: subprocess.Popen, *lines: bytes) -> None:
    """Write what the supervisor hands a child over its stdin pipe (ipc/handover.py). The test
    worker's identity is its slot name, so the test's Router addresses it by that."""
    proc.stdin.write(b"".join(line + b"\n" for line in lines))
    proc.stdin.close()


def job(n: int = 1, prompt: str = "hello", model: str = "llama3.2", *,
        deadline_s: float = 60, **fields: Any) -> Job:
    """A Job with sensible defaults; `deadline_s` is relative to now."""
    fields = {"system": None, "options": {}, **fields}
    return Job(job=n, request_id=f"req_{n}", model=model, prompt=prompt,
               deadline_ms=int((time.time() + deadline_s) * 1000), **fields)


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return not sys.platform.startswith("linux")
    except OSError:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until `pid` is gone; False if it still runs after `timeout` seconds."""
    end = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def wait_until(predicate, timeout: float, what: str) -> float:
    """Poll `predicate` (a file, a process: what no event announces) until true; return the
    seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def kill_quietly(pid: int) -> None:
    """Teardown for a process that is not our child."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def start_prometheus(folder: Path, targets: list[str], interval: str = "1s",
                     rule_files: list[Path] = ()) -> Iterator[str]:
    """A real Prometheus (Debian's package) on a free loopback port, scraping `targets`
    (host:port) as job "parallelix-node"; yields its base URL. Its log is `folder/prometheus.log`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"rule_files: {[str(p) for p in rule_files]!r}\n"
        "scrape_configs:\n  - job_name: parallelix-node\n"
        f"    static_configs:\n      - targets: {targets!r}\n")
    log = folder / "prometheus.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(["prometheus", f"--config.file={config}",
                                 f"--storage.tsdb.path={folder / 'data'}",
                                 "--web.listen-address=127.0.0.1:0"],
                                stdout=subprocess.DEVNULL, stderr=err, cwd=folder)
    try:
        yield _prometheus_url(proc, log)
    finally:
        stop_process(proc, 10)


def _prometheus_url(proc: subprocess.Popen, log: Path, timeout: float = 30) -> str:
    """The address from Prometheus' `msg="Listening on" address=127.0.0.1:PORT` log line,
    once it also logged that it is ready."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = log.read_text(errors="replace")
        found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', text)
        if found and "Server is ready to receive web requests" in text:
            return f"http://{found.group(1)}"
        assert proc.poll() is None, f"prometheus exited {proc.returncode}:\n{text[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"prometheus not ready within {timeout} s:\n{log.read_text()[-3000:]}")
