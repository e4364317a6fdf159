#!/usr/bin/env python3
"""Every fault at once (issue 9): thousands of requests through the real daemon while the
coordinator fails calls, loses acknowledgements and sends malformed inbox answers, the Ollama
stand-in fails mid-stream and is stopped for 20 s, workers are SIGKILLed and SIGSTOPped, the
whole daemon is SIGKILLed and started again and the disk under the outbox fills up for a while.
Then the figures, from the coordinator's own count: requests, faults injected by kind, lost,
doubled, largest heartbeat gap, memory before and after, throughput before and after.

Timeline, as shares of --duration: 0-20 % no faults (the baseline; throughput measured from
5 %), 20-80 % faults, 80-100 % no faults (throughput measured from 85 %); then the feeding
stops, every request is let finish, and the daemon gets SIGTERM (it must exit 0).
Exit 0 when every check holds; 1 with the failed checks named; 2 on a setup error.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, too
from scripts import harness  # noqa: E402
from scripts import protocol_verify as pv  # noqa: E402
from scripts.harness import Child, Children, HarnessError  # noqa: E402

NODE_ID = 1
MODEL = "llama3.2"
DEFAULT_DURATION, SHORT_DURATION = 600.0, 80.0
OLLAMA_OUTAGE = 20.0            # seconds the stand-in is down (the figure)
WORKER_KILL_EVERY = 3.0         # a worker SIGKILLed every few seconds...
WORKER_STOP_EVERY = 20.0        # ...and another SIGSTOPped (the supervisor must kill it)
DISK_FULL_FOR = 8.0
MIDSTREAM_SHARE = 0.02          # prompts on which the stand-in fails mid-stream
COORDINATOR_FAULTS = {"failShare": 0.1, "loseAcks": 0.1, "badJsonShare": 0.05}
DRAIN_TIMEOUT = 90.0            # after the feeding stops: every request final within this
MIN_THROUGHPUT_RATIO = 0.7      # after the faults / before them
MAX_MEMORY_GROWTH_MIB = 40.0    # supervisor RSS, end vs. just after its (re)start warmed up


def say(line: str = "") -> None:
    print(line, flush=True)


def rss_mib(pid: int) -> float | None:
    """Resident memory of `pid` in MiB (Linux /proc), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class NodeLog:
    """What the daemon's JSON log lines say, per run: requests served, outbox writes lost."""
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, text: str) -> None:
        try:
            doc = json.loads(text)
        except ValueError:
            return
        words = str(doc.get("event", "")).split(" ")
        with self.lock:
            self.events[words[0]] += 1
            if words[0] == "served" and len(words) > 1:
                self.served[words[1]] += 1


class Soak:
    def __init__(self, args: argparse.Namespace, kids: Children, home: Path) -> None:
        self.args, self.kids, self.home = args, kids, home
        self.rng = random.Random(args.seed)
        self.http = harness.HttpSession(10)
        self.log = NodeLog()
        self.faults: collections.Counter[str] = collections.Counter()
        self.stop_feeding = threading.Event()
        self.enqueued = 0
        self.midstream_ids: set[str] = set()
        self.kill_mono = 0.0
        self.stopped_pids: list[int] = []
        self.memory: dict[str, float | None] = {}

    # --- the parts --------------------------------------------------------------------------

    def start_standin(self, port: int = 0) -> Child:
        return self.kids.start("Ollama stand-in", [
            sys.executable, str(harness.SCRIPTS / "ollama_standin.py"), "--port", str(port),
            "--models", MODEL, "--token-ms", str(self.args.token_ms)], listens=True)

    def start_node(self) -> Child:
        return self.kids.start("node", harness.node_cli(
            "start", "--json", "--home", str(self.home), "--node-id", str(NODE_ID),
            "--coordinator", self.coordinator.url, "--ollama", self.ollama_url,
            "--workers", str(self.args.workers), "--model", MODEL), self.log.line)

    def counts(self) -> dict[str, Any]:
        r = self.http.get(f"{self.coordinator.url}/_admin/counts")
        r.raise_for_status()
        return r.json()

    def admin(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.coordinator.url}/_admin/{name}", json=body)
        r.raise_for_status()
        return r.json()

    def feed(self) -> None:
        """Keep a few requests queued for the node, so it is never idle for want of work."""
        target = 3 * self.args.workers
        while not self.stop_feeding.is_set():
            try:
                queued = self.counts()["queued"]
                for _ in range(max(0, target - queued)):
                    midstream = self.rng.random() < MIDSTREAM_SHARE
                    prompt = f"soak request {self.enqueued}" + \
                        (" [[error-midstream]]" if midstream else "")
                    rid = self.admin("enqueue", {"prompt": prompt})["requestId"]
                    self.enqueued += 1
                    if midstream:
                        self.midstream_ids.add(rid)
            except Exception as e:  # the coordinator is a child: its death ends the soak
                say(f"feeder: {e}")
                return
            self.stop_feeding.wait(0.1)

    def workers(self) -> list[dict[str, Any]]:
        from node.commands.livestatus import query_live
        from node.home import Home
        doc = query_live(Home(self.home)) or {}
        return [w for w in doc.get("workers") or [] if w.get("pid")]

    # --- the faults ----------------------------------------------------------------------------

    def kill_worker(self) -> None:
        alive = [w for w in self.workers() if w["pid"] not in self.stopped_pids]
        if alive:
            victim = self.rng.choice(alive)
            os.kill(victim["pid"], signal.SIGKILL)
            self.faults["worker SIGKILL"] += 1

    def stop_worker(self) -> None:
        alive = [w for w in self.workers() if w["pid"] not in self.stopped_pids]
        if alive:
            victim = self.rng.choice(alive)
            os.kill(victim["pid"], signal.SIGSTOP)
            self.stopped_pids.append(victim["pid"])
            self.faults["worker SIGSTOP"] += 1

    def ollama_down(self) -> None:
        self.standin.stop()
        self.faults[f"Ollama stopped {OLLAMA_OUTAGE:.0f} s"] += 1

    def ollama_up(self) -> None:
        self.standin = self.start_standin(self.port)

    def kill_daemon(self) -> None:
        self.kill_mono = time.monotonic()
        os.kill(self.node.proc.pid, signal.SIGKILL)
        self.node.stop(5)  # reaps it and kills what its group left
        self.faults["daemon SIGKILL"] += 1
        self.node = self.start_node()

    def disk_full(self, on: bool) -> None:
        """RLIMIT_FSIZE on the running supervisor: every write that grows a file fails (EFBIG),
        as on a full disk; the outbox, and the log file, too."""
        pid = self.node.proc.pid
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1 if on else hard, hard))
        if on:
            self.faults[f"disk full {DISK_FULL_FOR:.0f} s"] += 1

    def coordinator_faults(self, on: bool) -> None:
        self.admin("faults", {k: (v if on else 0.0) for k, v in COORDINATOR_FAULTS.items()})

    def sample_memory(self, name: str) -> None:
        self.memory[name] = rss_mib(self.node.proc.pid)

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        d = self.args.duration
        address = self.address = harness.init_home(self.home)
        self.standin = self.start_standin()
        self.ollama_url = self.standin.url
        self.port = int(self.ollama_url.rsplit(":", 1)[1])
        self.coordinator = self.kids.coordinator(
            "--node", f"{NODE_ID}={address}", "--heartbeat-ms", str(self.args.heartbeat_ms),
            "--poll-ms", "200", "--deadline-ms", "15000", "--grace-ms", "2000",
            "--options", json.dumps({"num_predict": 64}), "--seed", str(self.args.seed))
        self.node = self.start_node()
        start = time.monotonic()
        feeder = threading.Thread(target=self.feed, daemon=True)
        feeder.start()
        at = lambda share: start + share * d  # noqa: E731
        events: list[tuple[float, str, Any]] = [
            (at(0.19), "baseline memory", lambda: self.sample_memory("run 1 baseline")),
            (at(0.20), "faults on", lambda: self.coordinator_faults(True)),
            (at(0.22), "daemon SIGKILL", self.kill_daemon),
            (at(0.30), "memory after restart", lambda: self.sample_memory("before")),
            (at(0.35), "Ollama down", self.ollama_down),
            (at(0.35) + OLLAMA_OUTAGE, "Ollama up", self.ollama_up),
            (at(0.62), "disk full", lambda: self.disk_full(True)),
            (at(0.62) + DISK_FULL_FOR, "disk has room", lambda: self.disk_full(False)),
            (at(0.80), "faults off", lambda: self.coordinator_faults(False)),
            (at(1.0), "memory at the end", lambda: self.sample_memory("after")),
        ]
        t = at(0.2) + WORKER_KILL_EVERY
        while t < at(0.8):
            events.append((t, "worker SIGKILL", self.kill_worker))
            t += WORKER_KILL_EVERY
        t = at(0.2) + WORKER_STOP_EVERY / 2
        while t < at(0.8) - 12:  # leave the supervisor time to find and kill it
            events.append((t, "worker SIGSTOP", self.stop_worker))
            t += WORKER_STOP_EVERY
        events.sort(key=lambda e: e[0])
        for when, name, action in events:
            time.sleep(max(0.0, when - time.monotonic()))
            if self.coordinator.proc.poll() is not None:
                raise HarnessError("the dev coordinator died: " + self.coordinator.last_words())
            action()
            if self.args.verbose:
                say(f"{when - start:7.1f}s {name}")
        self.stop_feeding.set()
        feeder.join(10)
        drained = self.drain()
        for pid in self.stopped_pids:  # the supervisor should have killed each one already
            try:
                os.kill(pid, signal.SIGKILL)
                self.faults["SIGSTOPped worker left alive"] += 1
            except ProcessLookupError:
                pass
        self.node.proc.send_signal(signal.SIGTERM)
        exit_status = self.node.wait(harness.STOP_TIMEOUT)
        stats = harness.coordinator_stats(self.coordinator.url)
        return self.report(stats, start, drained, exit_status)

    def drain(self) -> bool:
        """Wait until every request is accepted or failed for good."""
        end = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < end:
            c = self.counts()
            if c["queued"] == 0 and c["inflight"] == 0:
                return True
            time.sleep(0.5)
        return False

    # --- the figures -----------------------------------------------------------------------

    def report(self, stats: dict[str, Any], start: float, drained: bool,
               exit_status: int | None) -> int:
        d, hb = self.args.duration, self.args.heartbeat_ms / 1000
        requests = stats["requests"]
        results = stats["results"]
        failed_final = set(stats["failedFinal"])
        lost = [rid for rid in requests if rid not in results and rid not in failed_final]
        dispatched = collections.Counter(x["requestId"] for x in stats["dispatches"])
        doubled = {rid: n - dispatched[rid] for rid, n in self.log.served.items()
                   if n > dispatched[rid]}
        bad_sig = [rid for rid, body in results.items() if not verified(rid, body, self.address)]
        beats = sorted(b["receivedMono"] for b in stats["heartbeats"])
        gaps = [(b - a, a, b) for a, b in zip(beats, beats[1:])]
        gap = max((g for g, a, b in gaps if not a < self.kill_mono < b), default=0.0)
        restart_gap = max((g for g, a, b in gaps if a < self.kill_mono < b), default=0.0)
        before = self.throughput(results, start + 0.05 * d, start + 0.20 * d)
        after = self.throughput(results, start + 0.85 * d, start + 1.0 * d)
        ratio = after / before if before else 0.0
        growth = (self.memory.get("after") or 0) - (self.memory.get("before") or 0)
        injected = stats["injected"]
        midstream = sum(dispatched[rid] for rid in self.midstream_ids)
        faults = {"coordinator 5xx": injected.get("failShare", 0),
                  "acknowledgements lost": injected.get("loseAcks", 0),
                  "malformed inbox answers": injected.get("badJsonShare", 0),
                  "Ollama mid-stream failures": midstream, **self.faults,
                  "outbox writes failed (disk full)": self.log.events["outbox.write_failed"]}
        say(f"requests      {len(requests)} ({len(results)} accepted, {len(failed_final)} "
            f"reported failed for good, {stats['deadlineRequeues']} re-queued by the "
            f"coordinator after their deadline)")
        say("faults        " + ", ".join(f"{k} {v}" for k, v in faults.items()))
        say(f"lost          {len(lost)}")
        say(f"doubled       {len(doubled)} (served more often than dispatched; re-posts of "
            f"one result answered 409: {stats['duplicateCount']})")
        say(f"signatures    {len(bad_sig)} wrong (PoE and both signatures re-checked with "
            f"eth_keys); coordinator refusals {len(stats['verificationFailures'])}")
        say(f"heartbeat gap {gap:.2f} s largest ({gap / hb:.2f} intervals of {hb:g} s); "
            f"{restart_gap:.2f} s across the daemon restart")
        say(f"throughput    {before:.1f}/s before the faults, {after:.1f}/s after "
            f"({ratio:.2f})")
        say("memory        supervisor RSS " + ", ".join(
            f"{k} {v:.1f} MiB" if v is not None else f"{k} -" for k, v in self.memory.items())
            + f" (growth {growth:+.1f} MiB)")
        say(f"SIGTERM       exit {exit_status}")
        checks = {"every request final": drained and not lost,
                  "nothing doubled": not doubled and stats["accepted"] == len(results),
                  "no wrong signature or PoE": not bad_sig and not stats["verificationFailures"],
                  "heartbeat gaps within two intervals": gap <= 2 * hb,
                  f"throughput back to {MIN_THROUGHPUT_RATIO:.0%}": ratio >= MIN_THROUGHPUT_RATIO,
                  f"memory growth under {MAX_MEMORY_GROWTH_MIB:g} MiB":
                      growth < MAX_MEMORY_GROWTH_MIB,
                  "exit 0 on SIGTERM": exit_status == 0,
                  "every SIGSTOPped worker replaced":
                      not self.faults["SIGSTOPped worker left alive"]}
        failed = [name for name, ok in checks.items() if not ok]
        say("result        " + ("PASS" if not failed else "FAIL: " + "; ".join(failed)))
        return 0 if not failed else 1

    @staticmethod
    def throughput(results: dict[str, Any], begin: float, end: float) -> float:
        n = sum(1 for body in results.values() if begin <= body["acceptedMono"] < end)
        return n / (end - begin)


def verified(rid: str, body: dict[str, Any], address: str) -> bool:
    """PoE and both signatures, by code other than the node's signer."""
    poe = pv.expected_poe(rid, body["result"], NODE_ID)
    return body["poe"] == poe and \
        pv.recover_address(pv.result_text(rid), body["signature"]) == address and \
        pv.recover_address(pv.poe_text(rid, poe), body["poeSignature"]) == address


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=DEFAULT_DURATION,
                   help=f"seconds of load (default {DEFAULT_DURATION:g})")
    p.add_argument("--short", action="store_true",
                   help=f"the test's version: {SHORT_DURATION:g} s, under 2 minutes in all")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--token-ms", type=int, default=5, help="the stand-in's time per token")
    p.add_argument("--heartbeat-ms", type=int, default=2000)
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--verbose", action="store_true", help="print each fault as it happens")
    args = p.parse_args(argv)
    if args.short:
        args.duration = SHORT_DURATION
    if args.duration * 0.45 < OLLAMA_OUTAGE + 5:
        p.error(f"--duration must be at least {(OLLAMA_OUTAGE + 5) / 0.45:.0f} s")
    try:
        with tempfile.TemporaryDirectory(prefix="parallelix-soak-") as tmp, Children() as kids:
            return Soak(args, kids, Path(tmp) / "home").run()
    except HarnessError as e:
        say(f"soak: {e}")
        return 2
    except KeyboardInterrupt:
        say("soak: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
