"""What scripts/demo.py and scripts/bench.py share: the Ollama stand-in, the dev coordinator and
the node daemon run as real child processes, and every one of them is stopped at the end.

Each child runs in its own process group, so a terminal's Ctrl-C reaches only the script, which
then stops the children newest first (the node before the coordinator it reports to) and kills
whatever a child's group leaves behind.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Callable

import requests

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
NODE_CLI = Path(sys.executable).with_name("parallelix-node")
LISTEN_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0          # the node drains for up to 15 s (start --graceful-timeout) on SIGTERM
TAIL_LINES = 20
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class HarnessError(Exception):
    """An expected failure: the scripts print it as one line, never as a traceback."""


def child_env() -> dict[str, str]:
    """The environment of every child: no inherited node or Ollama settings and no HTTP proxy,
    so the flags the scripts pass are the whole configuration."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PARALLELIX_", "OLLAMA_"))
            and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}


def node_cli(*args: str) -> list[str]:
    """The `parallelix-node` command line, from the venv that runs this script."""
    if not NODE_CLI.exists():
        raise HarnessError(f"{NODE_CLI} is missing; run this through its wrapper in scripts/ "
                           "(it installs the project into .venv)")
    return [str(NODE_CLI), *args]


class HttpSession(requests.Session):
    """A session that ignores proxy settings (everything is loopback) and gives every request
    the same timeout, whatever the caller asked: a probe must not hang on a silent server."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self.timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["timeout"] = self.timeout
        return super().request(*args, **kwargs)


def coordinator_stats(url: str) -> dict[str, Any]:
    """The dev coordinator's /_admin/stats document."""
    with HttpSession(10) as http:
        try:
            r = http.get(f"{url}/_admin/stats")
            r.raise_for_status()
            return r.json()
        except (requests.RequestException, ValueError) as e:
            raise HarnessError(f"could not read the coordinator's stats at {url}: {e}") from None


def write_prompts(path: Path, items: list[dict[str, Any]]) -> Path:
    """A dev-coordinator --prompts-file: one JSON object per line."""
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items),
                    encoding="utf-8")
    return path


def init_home(home: Path) -> str:
    """`parallelix-node init` a fresh home; return the node address."""
    try:
        r = subprocess.run(node_cli("init", "--json", "--home", str(home)), cwd=ROOT,
                           env=child_env(), capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise HarnessError("parallelix-node init did not finish within 60 s") from None
    if r.returncode != 0:
        raise HarnessError(f"parallelix-node init failed (exit {r.returncode}): "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return json.loads(r.stdout)["address"]


class Child:
    """One child process and the threads that read its output line by line."""

    def __init__(self, name: str, cmd: list[str], on_line: Callable[[str], None] | None,
                 listens: bool) -> None:
        self.name = name
        self.url = ""
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.left_behind = False
        self._stopped = False
        self._on_line = on_line
        self._first: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     encoding="utf-8", errors="replace", start_new_session=True)
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, listens),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False),
                                          daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str], first_is_address: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if first_is_address:
                self._first.put(line)
                first_is_address = False
                continue
            self.tail.append(line)
            if self._on_line:
                self._on_line(line)
        if first_is_address:
            self._first.put("")

    def wait_listening(self) -> None:
        """Set `url` from the child's `LISTENING http://HOST:PORT` first line."""
        try:
            line = self._first.get(timeout=LISTEN_TIMEOUT)
        except queue.Empty:
            line = ""
        if not line.startswith("LISTENING http://"):
            time.sleep(0.2)  # let its error reach the tail
            raise HarnessError(f"the {self.name} did not start: {self.last_words()}")
        self.url = line.split()[1].rstrip("/")

    def last_words(self) -> str:
        """Its last output line, for one-line error messages."""
        return self.tail[-1] if self.tail else f"no output (exit status {self.proc.poll()})"

    def wait(self, timeout: float) -> int | None:
        """Its exit status, or None if it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait (SIGKILL after `timeout`), then kill anything left in its group.
        Only the first call acts; later ones return the same status."""
        if self._stopped:
            return self.proc.wait()
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.wait(timeout) is None:
                self._kill_group()
        code = self.proc.wait()
        self.left_behind = self._kill_group()
        for reader in self._readers:
            reader.join(2)
        return code

    def _kill_group(self) -> bool:
        """SIGKILL its process group; True if any process was still in it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True


class Children:
    """Starts children; leaving the `with` block stops them all, newest first. Ctrl-C and
    SIGTERM raise KeyboardInterrupt, except while a child is being spawned (the signal then
    waits until the child is on the list), and are ignored while it cleans up, so no signal
    can leave a child running."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._old_handlers: dict[int, Any] = {}
        self._spawning = self._interrupted = False

    def __enter__(self) -> Children:
        self._old_handlers = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        try:
            for child in reversed(self._children):
                child.stop()
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._spawning:
            self._interrupted = True
        else:
            raise KeyboardInterrupt

    def start(self, name: str, cmd: list[str], on_line: Callable[[str], None] | None = None,
              listens: bool = False) -> Child:
        """Spawn `cmd`; with `listens`, wait for its LISTENING line (its `url`)."""
        self._spawning = True
        try:
            child = Child(name, cmd, on_line, listens)
            self._children.append(child)
        finally:
            self._spawning = False
        if self._interrupted:
            raise KeyboardInterrupt
        if listens:
            child.wait_listening()
        return child

    def standin(self, model: str, token_ms: int) -> Child:
        """scripts/ollama_standin.py serving `model`, `token_ms` per streamed token."""
        return self.start("Ollama stand-in", [sys.executable, str(SCRIPTS / "ollama_standin.py"),
                                              "--port", "0", "--models", model,
                                              "--token-ms", str(token_ms)], listens=True)

    def coordinator(self, *args: str) -> Child:
        """scripts/dev_coordinator.py on a free loopback port."""
        return self.start("dev coordinator", [sys.executable, str(SCRIPTS / "dev_coordinator.py"),
                                              "--port", "0", *args], listens=True)

    def node(self, home: Path, node_id: int, coordinator: str, ollama: str, workers: int,
             model: str, on_line: Callable[[str], None] | None = None, *flags: str) -> Child:
        """`parallelix-node start` with `flags` added; its log lines go to `on_line`."""
        return self.start("node", node_cli(
            "start", "--home", str(home), "--node-id", str(node_id), "--coordinator", coordinator,
            "--ollama", ollama, "--workers", str(workers), "--model", model, *flags), on_line)
