"""Test helpers around scripts/dev_coordinator.py: start it as a real process, read its stats,
and talk to it as a node would (FakeNode signs with node.identity.Signer).

    with start_dev_coordinator("--node", f"7={signer.address}", "--prompt", "hi") as (proc, url):
        ...
    proc.summary   # stdout after the LISTENING line (the exit summary)
    proc.log       # everything it wrote to stderr (one line per call)
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from node.identity import Signer

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "dev_coordinator.py"


class _Drain(threading.Thread):
    """Reads a pipe to the end so the child never blocks on a full pipe."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream, self.lines = stream, []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def start_dev_coordinator(*args: str, startup_timeout: float = 15,
                          command: list[str] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run the dev coordinator on a free loopback port; yield (proc, base url without slash).

    On exit it sends SIGTERM (unless the process already ended, e.g. --exit-when-done), waits,
    and sets `proc.summary` (stdout after the LISTENING line) and `proc.log` (stderr).
    """
    cmd = (command or [sys.executable, str(SCRIPT)]) + ["--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = _Drain(proc.stderr)
    err.start()
    out: _Drain | None = None
    try:
        first = _read_first_line(proc, startup_timeout)
        if not first.startswith("LISTENING http://"):
            raise RuntimeError(f"dev coordinator did not start: {first!r}\n{err.text}")
        out = _Drain(proc.stdout)
        out.start()
        yield proc, first.split()[1].rstrip("/")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.join(5)
        if out is not None:
            out.join(5)
        proc.summary = out.text if out else ""
        proc.log = err.text


def _read_first_line(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        proc.kill()
        raise RuntimeError(f"dev coordinator printed no LISTENING line within {timeout} s")
    return box[0].strip()


def stats(url: str) -> dict[str, Any]:
    r = requests.get(f"{url}/_admin/stats", timeout=10)
    r.raise_for_status()
    return r.json()


def wait_for(url: str, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10,
             what: str = "condition") -> dict[str, Any]:
    """Poll /_admin/stats until `predicate(stats)` is truthy; return those stats."""
    end = time.monotonic() + timeout
    while True:
        current = stats(url)
        if predicate(current):
            return current
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; stats: {json.dumps(current)[:2000]}")
        time.sleep(0.02)


def admin(url: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{url}/_admin/{name}", json=body, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sample_manifest(tier: int = 2) -> dict[str, Any]:
    return {"cliVersion": "0.1.0", "os": "linux", "arch": "x86_64", "tier": tier,
            "cpu": {"brand": "Test CPU ünïcode", "cores": 8}, "ramMiB": 32000,
            "gpus": [{"index": 0, "vendor": "nvidia", "name": "RTX 4070", "vramMiB": 12282}],
            "models": ["llama3.2:latest"], "workers": 2, "ollama": {"version": "0.5.7"}}


class FakeNode:
    """Speaks PROTOCOL.md to a coordinator with a real node key, computing hashes on its own."""

    def __init__(self, url: str, node_id: int, signer: Signer) -> None:
        self.url, self.node_id, self.signer = url, node_id, signer
        self.http = requests.Session()

    @staticmethod
    def manifest_hash(manifest: dict[str, Any]) -> str:
        canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "0x" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def poe(self, request_id: str, result: str) -> str:
        data = request_id.encode() + result.encode() + str(self.node_id).encode()
        return "0x" + hashlib.sha256(data).hexdigest()

    def attach_body(self, manifest: dict[str, Any] | None = None, timestamp: int | None = None) -> dict[str, Any]:
        manifest = sample_manifest() if manifest is None else manifest
        ts = now_ms() if timestamp is None else timestamp
        text = f"parallelix-node:attach:{self.node_id}:{ts}:{self.manifest_hash(manifest)}"
        return {"nodeId": self.node_id, "address": self.signer.address, "timestamp": ts,
                "manifest": manifest, "signature": self.signer.sign(text)}

    def attach(self, **kw: Any) -> requests.Response:
        return self.http.post(f"{self.url}/operator/attach", json=self.attach_body(**kw), timeout=10)

    def heartbeat_body(self, seq: int, timestamp: int | None = None) -> dict[str, Any]:
        ts = now_ms() if timestamp is None else timestamp
        return {"nodeId": self.node_id, "timestamp": ts, "seq": seq,
                "load": {"busy": 0, "slots": 2, "ready": 2, "accepting": True, "served": seq},
                "signature": self.signer.sign(f"parallelix-node:heartbeat:{self.node_id}:{ts}")}

    def heartbeat(self, seq: int, **kw: Any) -> requests.Response:
        return self.http.post(f"{self.url}/operator/heartbeat", json=self.heartbeat_body(seq, **kw), timeout=10)

    def poll(self, wait_ms: int | None = None, timeout: float = 40) -> requests.Response:
        ts = now_ms()
        params = {"nodeId": self.node_id} if wait_ms is None else {"nodeId": self.node_id, "waitMs": wait_ms}
        headers = {"X-Parallelix-Timestamp": str(ts),
                   "X-Parallelix-Signature": self.signer.sign(f"parallelix-node:inbox:{self.node_id}:{ts}")}
        return self.http.get(f"{self.url}/operator/inbox", params=params, headers=headers, timeout=timeout)

    def result_body(self, request_id: str, result: str, model: str = "llama3.2") -> dict[str, Any]:
        poe = self.poe(request_id, result)
        return {"nodeId": self.node_id, "requestId": request_id, "model": model, "result": result, "poe": poe,
                "signature": self.signer.sign(f"parallelix-node:result:{request_id}"),
                "poeSignature": self.signer.sign(f"parallelix-node:poe:{request_id}:{poe}"),
                "metrics": {"evalCount": 3, "promptEvalCount": 2, "totalDurationMs": 40,
                            "loadDurationMs": 1, "doneReason": "stop", "modelDigest": "a80c4f17acd5"}}

    def post_result(self, body: dict[str, Any]) -> requests.Response:
        return self.http.post(f"{self.url}/operator/result", json=body, timeout=10)

    def failure_body(self, request_id: str, code: str, message: str = "it broke") -> dict[str, Any]:
        return {"nodeId": self.node_id, "requestId": request_id, "error": {"code": code, "message": message},
                "signature": self.signer.sign(f"parallelix-node:error:{request_id}:{code}")}
