"""Prometheus metrics of the running daemon, served by the supervisor when asked (`--metrics`).

The supervisor records what happens as it happens (counters and histograms: a lock and an
add, a few microseconds). What changes by itself (workers, state, in flight, outbox) is read
at scrape time: the scrape thread asks the event loop for a snapshot, so it never reads
half-updated state and the loop never waits for a scrape. Process figures (CPU, memory) are
read off the loop, in the scrape thread. Nothing exported names the key, a prompt or a result:
labels are models, failure codes, slot names, Ollama addresses, endpoints and roles.
"""
import asyncio
import logging
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ipc.messages import Timing
from node.coordinator import Denied, Rejected
from node.daemon.results import FAILURE_CODES
from node.errors import ConfigError
from node.settings import MetricsAddress, is_loopback
from node.state import STATES

log = logging.getLogger("parallelix.metrics")

SNAPSHOT_TIMEOUT = 2.0   # a loop that cannot answer a scrape in this long is stuck: scrape fails
MAX_MODELS = 32          # model labels come from the coordinator: bounded, the rest is "other"
OLLAMA_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 600)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1, 2.5, 10, 60, 300)
# A served request's way through the node, in order (README, "Monitoring a fleet").
STAGES = ("poll", "dispatch", "worker_to_ollama", "ollama", "worker_reply", "sign", "outbox",
          "post")
RESULT_ANSWERS = ("accepted", "duplicate", "expired", "rejected")
ENDPOINTS = ("network", "attach", "heartbeat", "inbox", "result")
ERROR_KINDS = ("unreachable", "server_error", "http_error", "rejected", "denied")


@dataclass(slots=True)
class Trace:
    """One served request after its poll, as the supervisor's monotonic clock saw it (job sent,
    Done received, body signed, outbox durable), with the worker's own durations from Done."""
    sent: float
    received: float
    signed: float
    worker: Timing | None
    durable: float = 0.0


@dataclass(frozen=True)
class WorkerView:
    slot: str
    ollama: str
    up: bool
    ready: bool
    restarts: int


@dataclass(frozen=True)
class Snapshot:
    """What the supervisor's loop knows at one instant, for one scrape."""
    state: str
    tier: int
    accepting: bool
    paused: bool
    draining: bool
    in_flight: int
    workers: tuple[WorkerView, ...]
    processes: tuple[tuple[str, int], ...]   # (role, pid): supervisor, heartbeat, worker


def error_kind(exc: Exception) -> str:
    """A coordinator call's failure in one word, for the `kind` label."""
    if isinstance(exc, Denied):
        return "denied"
    if isinstance(exc, Rejected):
        return "rejected"
    status = getattr(exc, "status", 0)
    return "unreachable" if status == 0 else "server_error" if status >= 500 else "http_error"


class NodeMetrics:
    """Every metric family the daemon exports, in its own registry (nothing process-global)."""

    def __init__(self, node_id: int, address: str, version: str, model: str) -> None:
        disable_created_metrics()  # no `_created` series: half the output, no use in alerts
        self.registry = CollectorRegistry(auto_describe=True)
        self.models: set[str] = set()
        reg = self.registry
        self.requests = Counter("parallelix_requests", "Requests finished, by model and "
                                "outcome (served, or the failure code reported).",
                                ["model", "outcome"], registry=reg)
        self.ollama_seconds = Histogram("parallelix_ollama_duration_seconds", "Ollama's own "
                                        "time per served request (its total_duration).",
                                        ["model"], buckets=OLLAMA_BUCKETS, registry=reg)
        self.overhead_seconds = Histogram("parallelix_node_overhead_seconds", "The node's "
                                          "added time per served request: from dispatch to a "
                                          "worker to the signed result, less Ollama's time.",
                                          buckets=OVERHEAD_BUCKETS, registry=reg)
        stage = Histogram("parallelix_stage_seconds", "Time per stage of a served request: "
                          "poll (inbox round trip of an answer carrying a request), dispatch "
                          "(job to the worker and Done back, less the worker's own stages), "
                          "worker_to_ollama, ollama (request sent to last line read), "
                          "worker_reply, sign, outbox (durable), post (to the coordinator's "
                          "answer).", ["stage"], buckets=STAGE_BUCKETS, registry=reg)
        self._stage = {name: stage.labels(name).observe for name in STAGES}  # bound once: cheap
        self.tokens = Counter("parallelix_tokens_generated", "Tokens generated (Ollama's "
                              "eval_count) by served requests.", ["model"], registry=reg)
        self.results = Counter("parallelix_results_delivered", "Signed results and failure "
                               "reports the coordinator answered, by answer (rejected: kept "
                               "in outbox/rejected, never retried).", ["answer"], registry=reg)
        self.coordinator_errors = Counter("parallelix_coordinator_errors", "Coordinator calls "
                                          "without a usable answer, by endpoint and kind.",
                                          ["endpoint", "kind"], registry=reg)
        self.heartbeats = Counter("parallelix_heartbeats", "Heartbeats sent, by outcome.",
                                  ["outcome"], registry=reg)
        self.last_beat = Gauge("parallelix_heartbeat_last_accepted_timestamp_seconds",
                               "Unix time of the last heartbeat the coordinator accepted.",
                               registry=reg)
        Gauge("parallelix_build_info", "The running build.", ["version", "python"],
              registry=reg).labels(version, platform.python_version()).set(1)
        Gauge("parallelix_node_info", "The node this daemon serves as.",
              ["node_id", "address"], registry=reg).labels(str(node_id), address).set(1)
        for code in ("served",) + FAILURE_CODES:  # present at 0, so rate() works from the start
            self.requests.labels(self._model(model), code)
        for answer in RESULT_ANSWERS:
            self.results.labels(answer)
        for outcome in ("ok", "failed"):
            self.heartbeats.labels(outcome)
        for endpoint in ENDPOINTS:
            for kind in ERROR_KINDS:
                self.coordinator_errors.labels(endpoint, kind)

    def watch(self, snapshot: Callable[[], Snapshot], loop: asyncio.AbstractEventLoop,
              outbox_depth: Callable[[], int]) -> None:
        """Export the live families, read per scrape: `snapshot` runs on the loop,
        `outbox_depth` (a directory listing) in the scrape thread."""
        self.registry.register(_LiveCollector(snapshot, loop))
        Gauge("parallelix_outbox_depth", "Signed results on disk waiting for the coordinator's "
              "answer.", registry=self.registry).set_function(outbox_depth)

    def _model(self, model: str) -> str:
        if model in self.models or len(self.models) < MAX_MODELS:
            self.models.add(model)
            return model
        return "other"

    def served(self, model: str, ollama_s: float, overhead_s: float, tokens: int) -> None:
        label = self._model(model)
        self.requests.labels(label, "served").inc()
        self.ollama_seconds.labels(label).observe(ollama_s)
        self.overhead_seconds.observe(max(0.0, overhead_s))
        self.tokens.labels(label).inc(tokens)

    def polled(self, seconds: float) -> None:
        """An inbox answer carrying a request came back `seconds` after the call went out."""
        self._stage["poll"](seconds)

    def delivered(self, trace: Trace, answered: float) -> None:
        """The coordinator answered a served request's result at `answered` (monotonic):
        record every stage after its poll."""
        stage, worker = self._stage, trace.worker
        inside = 0.0
        if worker is not None:
            stage["worker_to_ollama"](worker.to_ollama)
            stage["ollama"](worker.ollama)
            stage["worker_reply"](worker.reply)
            inside = worker.to_ollama + worker.ollama + worker.reply
        stage["dispatch"](max(0.0, trace.received - trace.sent - inside))
        stage["sign"](trace.signed - trace.received)
        stage["outbox"](trace.durable - trace.signed)
        stage["post"](answered - trace.durable)

    def failed(self, model: str | None, code: str) -> None:
        self.requests.labels(self._model(model) if model else "other", code).inc()

    def result_answered(self, answer: str) -> None:
        self.results.labels(answer).inc()

    def coordinator_error(self, endpoint: str, kind: str) -> None:
        self.coordinator_errors.labels(endpoint, kind).inc()

    def heartbeat(self, ok: bool, status: int, at_ms: int) -> None:
        self.heartbeats.labels("ok" if ok else "failed").inc()
        if ok:
            self.last_beat.set(at_ms / 1000)
        else:
            self.coordinator_error("heartbeat", error_kind(_Status(status)))


class _Status(Exception):
    """A heartbeat failure as the heartbeat process reports it: only the HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _LiveCollector:
    """The families read at scrape time: a loop snapshot, then per-process figures."""

    def __init__(self, snapshot: Callable[[], Snapshot], loop: asyncio.AbstractEventLoop) -> None:
        self.snapshot, self.loop = snapshot, loop
        self.seen_cpu: dict[int, tuple[str, float]] = {}   # pid -> (role, CPU s at last scrape)
        self.gone_cpu: dict[str, float] = {}                # CPU s of processes that exited

    def describe(self) -> list[Metric]:
        return []  # families depend on the snapshot; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        async def take() -> Snapshot:
            return self.snapshot()
        snap = asyncio.run_coroutine_threadsafe(take(), self.loop).result(SNAPSHOT_TIMEOUT)
        yield from _node_families(snap)
        yield from _worker_families(snap.workers)
        yield from self._process_families(snap.processes)

    def _process_families(self, processes: tuple[tuple[str, int], ...]) -> Iterator[Metric]:
        """CPU and memory of every process of the tree, summed by role. CPU of processes that
        exited is kept (as of their last scrape), so the counter never goes down."""
        cpu = dict.fromkeys(("supervisor", "heartbeat", "worker"), 0.0)
        rss, count = dict.fromkeys(cpu, 0), dict.fromkeys(cpu, 0)
        seen: dict[int, tuple[str, float]] = {}
        for role, pid in processes:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    times, mem = proc.cpu_times(), proc.memory_info()
            except psutil.Error:
                continue
            seen[pid] = (role, times.user + times.system)
            cpu[role] += times.user + times.system
            rss[role] += mem.rss
            count[role] += 1
        for pid, (role, seconds) in self.seen_cpu.items():
            if pid not in seen:
                self.gone_cpu[role] = self.gone_cpu.get(role, 0.0) + seconds
        self.seen_cpu = seen
        yield _family(CounterMetricFamily, "parallelix_process_cpu_seconds", "CPU time (user "
                      "+ system) of the daemon's processes, by role.", "role",
                      {r: cpu[r] + self.gone_cpu.get(r, 0.0) for r in cpu})
        yield _family(GaugeMetricFamily, "parallelix_process_resident_memory_bytes",
                      "Resident memory of the daemon's processes, by role.", "role", rss)
        yield _family(GaugeMetricFamily, "parallelix_processes", "Processes running, by role.",
                      "role", count)


def _family(kind: type, name: str, doc: str, label: str, values: dict[str, float]) -> Metric:
    family = kind(name, doc, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _flag(name: str, doc: str, on: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=1 if on else 0)


def _node_families(snap: Snapshot) -> Iterator[Metric]:
    yield _family(GaugeMetricFamily, "parallelix_node_state", "The node's lifecycle state "
                  "(1 for the current one).", "state", {s: int(s == snap.state) for s in STATES})
    yield GaugeMetricFamily("parallelix_node_tier", "The tier the coordinator accepted.",
                            value=snap.tier)
    yield _flag("parallelix_node_accepting", "1 while the node takes new requests (a slot "
                "ready, not paused, not draining).", snap.accepting)
    yield _flag("parallelix_node_paused", "1 while paused for maintenance (pause, or drain).",
                snap.paused)
    yield _flag("parallelix_node_draining", "1 while draining: the daemon exits once "
                "everything in flight is served and delivered.", snap.draining)
    yield GaugeMetricFamily("parallelix_requests_in_flight", "Requests taken and not yet "
                            "answered by a worker.", value=snap.in_flight)


def _worker_families(workers: tuple[WorkerView, ...]) -> Iterator[Metric]:
    labels = ["slot", "ollama"]
    up = GaugeMetricFamily("parallelix_worker_up", "1 while the slot's worker process runs.",
                           labels=labels)
    ready = GaugeMetricFamily("parallelix_worker_ready", "1 while the slot's worker said "
                              "Ready and its Ollama answers (counted in load.ready).",
                              labels=labels)
    restarts = CounterMetricFamily("parallelix_worker_restarts", "Times the slot's worker "
                                   "was replaced after dying or hanging.", labels=labels)
    for w in workers:
        up.add_metric([w.slot, w.ollama], int(w.up))
        ready.add_metric([w.slot, w.ollama], int(w.ready))
        restarts.add_metric([w.slot, w.ollama], w.restarts)
    return iter((up, ready, restarts))


def serve(where: MetricsAddress, metrics: NodeMetrics) -> Any:
    """Serve `/metrics` on `where` from a thread of its own; the server, for `close`.
    A port that cannot be bound stops the start with one line saying what to do."""
    try:
        server, _ = start_http_server(where.port, where.host, registry=metrics.registry)
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on {where}: {e.strerror or e}; pick another "
                          "address with --metrics or `metrics` in config.toml") from None
    host = f"[{where.host}]" if ":" in where.host else where.host
    log.info("metrics.listening url=http://%s:%d/metrics", host, server.server_port)
    if not is_loopback(where.host):
        log.warning("metrics.exposed address=%s: /metrics is reachable from other machines; "
                    "firewall it to your Prometheus", where.host)
    return server


def close(server: Any) -> None:
    """Stop serving and free the port (blocks up to half a second: call it off the loop)."""
    server.shutdown()
    server.server_close()
