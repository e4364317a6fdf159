#!/usr/bin/env python3
"""Performance of the node as ratios against a baseline measured in the same run, so the
numbers mean something on any machine:

- end to end: requests/s through coordinator -> node -> stand-in (1 and 4 workers), against
  the stand-in's own capacity (the same /api/generate calls made directly, 1 and 4 clients);
- signing: node.identity.Signer against eth-account on the same messages;
- start-up: `parallelix-node version` and `status` against `python -c pass`.

Progress goes to stderr; the table (or, with --json, one JSON document) to stdout. Every wait
has a timeout and every child process is stopped at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, too
from scripts import harness  # noqa: E402
from scripts.harness import Child, Children, HarnessError  # noqa: E402

T = TypeVar("T")
MODEL = "llama3.2"
NODE_ID = 1
OPTIONS = {"temperature": 0.7, "num_predict": 64}
FILLER = "Summarise the following in one line: the quick brown fox jumps over the lazy dog. "
CALL_TIMEOUT = 10.0
RUN_TIMEOUT = 30.0
STARTUP_TARGETS_MS = {"version": 150.0, "status": 300.0}


@dataclass(frozen=True)
class Config:
    requests: int
    startup_runs: int
    signatures: int

    @property
    def e2e_timeout(self) -> float:
        return max(60.0, self.requests * 0.3)


FULL, QUICK = Config(200, 10, 2000), Config(20, 3, 200)


@dataclass
class Measurement:
    name: str
    unit: str
    value: float
    baseline: float
    baseline_name: str
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.value / self.baseline

    def doc(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def timed(work: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of `work()`."""
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


# --- end to end ----------------------------------------------------------------------------

def bench_prompts(n: int) -> list[dict[str, Any]]:
    return [{"prompt": f"bench request {i}: {FILLER}"} for i in range(n)]


def generate_all(url: str, items: list[dict[str, Any]], end: float) -> None:
    """Stream /api/generate for each item, one after another, reading every chunk, until
    monotonic time `end`.

    Each call gets a fresh connection (and session): on a reused one the stand-in's many small
    writes meet the client's delayed ACK (the stand-in leaves Nagle on) and every call waits
    ~40 ms, which would measure TCP, not the stand-in."""
    for item in items:
        if time.monotonic() > end:
            raise HarnessError("calling the stand-in directly took too long")
        body = {"model": MODEL, "options": OPTIONS, "stream": True, **item}
        try:
            with harness.HttpSession(CALL_TIMEOUT) as http, \
                    http.post(f"{url}/api/generate", json=body, stream=True) as r:
                r.raise_for_status()
                chunks = [json.loads(line) for line in r.iter_lines() if line]
        except (requests.RequestException, ValueError) as e:
            raise HarnessError(f"calling the stand-in directly failed: {e}") from None
        if not chunks or not chunks[-1].get("done"):
            raise HarnessError(f"the stand-in's stream for {item['prompt'][:20]!r} did not end")


def direct_rps(url: str, items: list[dict[str, Any]], clients: int, timeout: float) -> float:
    """Requests/s of the stand-in called directly by `clients` threads."""
    shares = [items[i::clients] for i in range(clients)]
    end = time.monotonic() + timeout
    with ThreadPoolExecutor(clients) as pool:
        seconds, _ = timed(lambda: list(pool.map(lambda s: generate_all(url, s, end), shares)))
    return len(items) / seconds


def wait_all_accepted(coordinator: Child, node: Child, n: int, timeout: float) -> dict[str, Any]:
    """Poll the coordinator's stats until all `n` requests have an outcome."""
    end = time.monotonic() + timeout
    while True:
        stats = harness.coordinator_stats(coordinator.url)
        if stats["done"]:
            break
        if node.proc.poll() is not None:
            raise HarnessError(f"the node exited with status {node.proc.returncode} mid-run: "
                               f"{node.last_words()}")
        if time.monotonic() > end:
            raise HarnessError(f"{stats['accepted']}/{n} requests accepted after {timeout:.0f} s")
        time.sleep(0.25)
    if stats["accepted"] != n:
        raise HarnessError(f"only {stats['accepted']}/{n} requests were accepted; failures: "
                           f"{stats['failures']}")
    return stats


def node_rps(kids: Children, home: Path, address: str, standin: str, workers: int,
             prompts: Path, n: int, timeout: float) -> float:
    """Requests/s through a fresh coordinator and node, first dispatch to last acceptance."""
    coordinator = kids.coordinator("--node", f"{NODE_ID}={address}", "--prompts-file", str(prompts),
                                   "--model", MODEL, "--options", json.dumps(OPTIONS))
    node = kids.node(home, NODE_ID, coordinator.url, standin, workers, MODEL)
    stats = wait_all_accepted(coordinator, node, n, timeout)
    code = node.stop()
    coordinator.stop()
    if code != 0 or node.left_behind:
        raise HarnessError(f"the node stopped with exit status {code}"
                           + (" and left processes behind" if node.left_behind else ""))
    first = min(d["atMs"] for d in stats["dispatches"])
    last = max(r["acceptedMs"] for r in stats["results"].values())
    return n / (max(last - first, 1) / 1000)


def end_to_end(config: Config, work: Path, kids: Children) -> list[Measurement]:
    home = work / "e2e-home"
    address = harness.init_home(home)
    items = bench_prompts(config.requests)
    prompts = harness.write_prompts(work / "prompts.jsonl", items)
    standin = kids.standin(MODEL, token_ms=0).url
    results = []
    for workers in (1, 4):
        progress(f"end to end: {config.requests} requests, {workers} client(s) direct, "
                 f"then the node with {workers} worker(s)")
        baseline = direct_rps(standin, items, workers, config.e2e_timeout)
        value = node_rps(kids, home, address, standin, workers, prompts, config.requests,
                         config.e2e_timeout)
        results.append(Measurement(f"end to end, {workers} worker(s)", "req/s", value,
                                   baseline, f"stand-in direct, {workers} client(s)"))
    return results


# --- signing -------------------------------------------------------------------------------

def signing(config: Config) -> Measurement:
    """Signer.sign (coincurve) against eth-account on the same messages; both must agree."""
    progress(f"signing: {config.signatures} messages")
    from eth_account import Account
    from eth_account.messages import encode_defunct

    from node.identity import Signer, new_secret
    secret = new_secret()
    signer = Signer(secret)
    messages = [f"parallelix-node:result:req_{i:06d}" if i % 2 else
                f"parallelix-node:poe:req_{i:06d}:0x{i:064x}" for i in range(config.signatures)]
    ours_s, ours = timed(lambda: [signer.sign(m) for m in messages])
    theirs_s, theirs = timed(lambda: [Account.sign_message(encode_defunct(text=m),
                                                           private_key=secret) for m in messages])
    if ours != ["0x" + bytes(s.signature).hex() for s in theirs]:
        raise HarnessError("Signer and eth-account made different signatures for the same message")
    n = len(messages)
    return Measurement("signing", "sig/s", n / ours_s, n / theirs_s, "eth-account sign_message")


# --- start-up ------------------------------------------------------------------------------

def median_ms(cmd: list[str], runs: int) -> float:
    """Median wall-clock milliseconds of `runs` runs of `cmd`, which must exit 0."""
    times = []
    for _ in range(runs):
        try:
            seconds, r = timed(lambda: subprocess.run(cmd, env=harness.child_env(),
                                                      stdout=subprocess.DEVNULL,
                                                      stderr=subprocess.PIPE, text=True,
                                                      timeout=RUN_TIMEOUT))
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{' '.join(cmd)} took over {RUN_TIMEOUT:.0f} s") from None
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
        times.append(seconds * 1000)
    return statistics.median(times)


def startup(config: Config, work: Path) -> list[Measurement]:
    progress(f"start-up: median of {config.startup_runs} runs each")
    home = work / "status-home"
    harness.init_home(home)
    baseline = median_ms([sys.executable, "-c", "pass"], config.startup_runs)
    commands = {"version": harness.node_cli("version"),
                "status": harness.node_cli("status", "--home", str(home))}
    return [Measurement(f"start-up, {name}", "ms", median_ms(cmd, config.startup_runs), baseline,
                        "python -c pass", STARTUP_TARGETS_MS[name])
            for name, cmd in commands.items()]


# --- output --------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": f"{platform.system().lower()}-{platform.machine()}"}


def number(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def target_text(m: Measurement) -> str:
    if m.target is None:
        return ""
    return f"< {m.target:.0f} {m.unit} ({'met' if m.value < m.target else 'missed'})"


def table(measurements: list[Measurement], config: Config) -> str:
    info = machine()
    rows = [("measurement", "node", "baseline", "", "ratio", "target")]
    rows += [(m.name, number(m.value, m.unit), number(m.baseline, m.unit), m.baseline_name,
              f"{m.ratio:.2f}", target_text(m)) for m in measurements]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {1, 2, 4}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    return "\n".join([
        f"parallelix-node bench: {info['cpus']} CPUs, Python {info['python']}, {info['platform']}; "
        f"{config.requests} requests, {config.startup_runs} start-up runs, "
        f"{config.signatures} signatures", "", *lines, "",
        "ratio = node / baseline: for req/s and sig/s higher is better, for ms lower is better.",
        "Targets are the issue's goals for start-up on a 2-core machine, not assertions."])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, help=f"requests per end-to-end run "
                                                f"(default {FULL.requests})")
    p.add_argument("--quick", action="store_true", help="a tiny configuration, for smoke tests")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    args = p.parse_args(argv)
    if args.requests is not None and args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.requests:
        config = Config(args.requests, config.startup_runs, config.signatures)
    try:
        with tempfile.TemporaryDirectory(prefix="pxbench-") as work, Children() as kids:
            measurements = [*startup(config, Path(work)), signing(config),
                            *end_to_end(config, Path(work), kids)]
    except HarnessError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"machine": machine(), "config": asdict(config),
                          "measurements": [m.doc() for m in measurements]}, indent=2))
    else:
        print(table(measurements, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
