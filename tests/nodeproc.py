"""Test helpers that run a real node daemon (`parallelix-node start`) as a subprocess."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from node.commands.livestatus import query_live
from node.home import Home
from tests.conftest import ROOT, clean_env
from tests.procs import wait_until


def init_home(home: Path) -> str:
    """`init` a fresh home; return the node address."""
    r = subprocess.run([sys.executable, "-m", "node.cli", "init", "--json"], cwd=ROOT,
                       env=clean_env(home), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["address"]


class Daemon:
    """A running `start` process; its stdout (JSON log lines) is collected as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self.stderr_lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "non-json-stdout", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr_lines.append(line)

    def wait_event(self, predicate: Callable[[dict], bool], timeout: float = 30) -> dict:
        """The first log event matching `predicate`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(f"no matching event; exit={self.proc.poll()} "
                                         f"events={self.events[-15:]} "
                                         f"stderr={''.join(self.stderr_lines[-20:])}")
                self._cond.wait(left)

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)


@contextlib.contextmanager
def run_daemon(home: Path, node_id: int, coordinator: str, ollama: str | list[str],
               *extra: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
               cli: list[str] | None = None) -> Iterator[Daemon]:
    """Start `parallelix-node start --json …`; SIGKILL it (and its group) at the end if alive.
    `ollama=[]` passes no --ollama, so config.toml decides. `cli` replaces `python -m node.cli`
    (the installed `parallelix-node` script, to start it from another folder)."""
    endpoints = [ollama] if isinstance(ollama, str) else ollama
    with run_start(home, "--node-id", str(node_id), "--coordinator", coordinator,
                   *sum((["--ollama", e] for e in endpoints), []), *extra, env=env, cwd=cwd,
                   cli=cli) as daemon:
        yield daemon


@contextlib.contextmanager
def run_start(home: Path, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
              cli: list[str] | None = None) -> Iterator[Daemon]:
    """`parallelix-node start --json ARGS`, as typed (no flags added); SIGKILLed at the end if
    alive."""
    proc = subprocess.Popen([*(cli or [sys.executable, "-m", "node.cli"]), "start", "--json",
                             *args], cwd=cwd, env={**clean_env(home), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    daemon = Daemon(proc)
    try:
        yield daemon
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def busy_workers(home: Path) -> int:
    """Workers busy by the daemon's own live status (0 while its socket does not answer)."""
    doc = query_live(Home(home))
    return sum(w["busy"] for w in doc["workers"]) if doc else 0


def wait_busy(home: Path, count: int = 1, timeout: float = 30) -> None:
    """Until `count` workers are busy at the node itself: the dev coordinator counts a request
    in flight from the moment it answers the poll, before the node has read that answer."""
    wait_until(lambda: busy_workers(home) >= count, timeout, f"{count} worker(s) busy")


def is_event(name: str) -> Callable[[dict], bool]:
    return lambda e: e.get("event", "").split(" ")[0] == name
