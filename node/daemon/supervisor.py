"""The supervisor: the one process that holds the key and talks to the coordinator.

One asyncio loop in one thread owns every ZeroMQ socket (anchors §8.1) and makes the hot
path's coordinator calls itself, on kept-alive connections (node/daemon/link.py): no thread
per call. The outbox journal is written in a long-lived lane (node/daemon/lanes.py), in batches
(group commit), so an fsync never stalls the loop. Per request:
poll -> dispatch to an idle worker (READY credit) -> text back -> PoE -> sign -> outbox ->
post -> delete. Liveness (heartbeat process), worker supervision, signals and the control
socket hang off the same loop: a 0.5 s tick reaps, pings, expires and feeds the watchdog.
"""
import asyncio
import collections
import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from ipc import messages as m
from ipc.handover import new_identity
from ipc.loopsocket import LoopSocket
from node.daemon import metrics, pool, procs, sdnotify
from node.daemon.lanes import Batched, Lane
from node.coordinator import (Coordinator, CoordinatorError, Denied, Rejected, attach_call,
                              inbox_call, now_ms, result_call)
from node.home import Home
from node.identity import Signer, node_key_hash
from node.daemon.inbox import InboxRequest, Malformed, parse_inbox
from node.daemon.link import Link
from node.daemon.manifest import manifest_hash, survey_ollama, with_ollama
from node.daemon.outbox import Outbox
from node.daemon.results import signed_failure, signed_success
from node.daemon.runlock import clear_stale_sockets, remove_empty_dir, remove_stale_socket_dir
from node.settings import Settings
from node.state import (ACTIVE, STATE_FOR_403, current_state, read_state, record_network,
                        update_state)
from node.version import cli_version

log = logging.getLogger("parallelix.supervisor")
T = TypeVar("T")

TICK = 0.5
LONG_POLL_MS = 5_000
DEADLINE_GRACE = 15.0       # a job this far past its deadline means its worker hangs
LOST_JOB_GRACE = 1.0        # wait for a dead worker's last message before retrying its job
DELIVERIES = 4              # result posts in flight at once (a backlog at start goes 4 by 4)
MAX_ATTEMPTS = 2            # a request is tried on at most two workers, then reported failed
MANIFEST_EVERY = 60.0       # re-survey Ollama this often (a model pulled): re-attach on change
EXIT_OK, EXIT_FAILURE, EXIT_IDENTITY = 0, 1, 3
RESULT_ANSWER = {409: "duplicate", 410: "expired"}   # any other 2xx: accepted


def run_blocking(fn: Callable[..., T], *args: Any) -> "asyncio.Future[T]":
    """Run a rare blocking call (GET /network, an Ollama survey, shutdown) in a daemon thread
    of its own, never joined at exit, unlike an executor's."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not fut.done():
            setter(value)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting task, which decides
            outcome = (fut.set_exception, e)
        else:
            outcome = (fut.set_result, result)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop is gone: the daemon is exiting

    threading.Thread(target=target, daemon=True).start()
    return fut


@dataclass
class Inflight:
    req: InboxRequest
    job: int
    slot: pool.Slot
    attempt: int
    started: float
    lost_at: float | None = None


@dataclass(frozen=True)
class NodeRun:
    """Everything `start` resolved before the loop begins."""
    settings: Settings
    node_id: int
    signer: Signer
    secret: bytes = field(repr=False)
    manifest: dict[str, Any]
    tier: int
    cpu_only: bool
    graceful_timeout: float
    reload: Callable[[], Settings]   # re-resolves settings with the same flags (SIGHUP)
    on_attached: Callable[[], None] = lambda: None  # the coordinator accepted: save the flags


class Supervisor:
    def __init__(self, run: NodeRun) -> None:
        self.run_cfg = run
        self.home: Home = run.settings.home
        self.node_id = run.node_id
        self.signer = run.signer
        self.coord = Coordinator(run.settings.coordinator)  # the rare calls: GET /network
        self.link = Link(run.settings.coordinator)           # attach, inbox, results
        self.manifest = run.manifest           # as last attached
        self.outbox = Outbox(self.home.outbox)
        self.slots: list[pool.Slot] = []
        self.slot_counter = 0
        self.jobs: dict[int, Inflight] = {}
        self.pending: collections.deque[tuple[InboxRequest, int]] = collections.deque()
        self.job_counter = 0
        self.reserved = 0                      # inbox polls in flight, each holding a slot
        self.served = 0
        self.failed = 0
        self.state = current_state(self.home)
        self.tier = run.tier
        self.heartbeat_interval = 10.0
        self.poll_interval = 1.0
        self.hb_proc: subprocess.Popen | None = None
        self.hb_identity = b""                 # the heartbeat process's routing id, per spawn
        self.hb_respawn_at = 0.0
        self.last_beat_ack: int | None = None
        self.beat_seq = 0                      # last heartbeat seq: a respawned process goes on
        self.started = time.monotonic()
        self.attached = False
        self.was_accepting: bool | None = None  # logged from the first attach on
        self.exit_code = EXIT_OK
        self.stopping = False
        self.quick = False          # second signal or timeout: stop waiting, give the rest back
        self.abandon = False        # 403 or a bug: stop now, in-flight work is the coordinator's
        self.tasks: set[asyncio.Task] = set()
        self.deliveries: set[asyncio.Task] = set()
        self.writes: set[asyncio.Future] = set()  # outbox writes under way
        self.signals: asyncio.Queue[int] = asyncio.Queue()
        self.metrics = metrics.NodeMetrics(run.node_id, run.signer.address, cli_version(),
                                           run.settings.model)
        self.metrics_server: Any = None
        self.disk = Lane("outbox")
        self.outbox_changes = Batched(self.disk, self.outbox.apply)  # group commit
        self.paused = read_state(self.home).get("paused") is True  # kept until resume or a drain
        self.draining = False
        self.drain_deadline: float | None = None
        self.drain_from = (0, 0)               # served, failed when the drain began
        self.drain_timed_out = False
        self.delivery_error: str | None = None  # the last failed result post, until one succeeds

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Attach, serve until stopped, and return the exit status (DESIGN.md). The caller
        holds the home's run lock."""
        self._open_sockets()
        try:
            return await self._serve()
        finally:
            self._close_sockets()

    async def _serve(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.signals.put_nowait, sig)
        self.capacity = asyncio.Condition()
        self.delivering = asyncio.Semaphore(DELIVERIES)
        self.stopped = asyncio.Event()
        self.coordinator_answered = asyncio.Event()  # a delivery succeeded: wake the waiting
        if self.run_cfg.settings.metrics is not None:
            self.metrics.watch(self._metrics_view, loop, self.outbox.depth)
            self.metrics_server = metrics.serve(self.run_cfg.settings.metrics, self.metrics)
        self.manifest_dirty = asyncio.Event()         # Ollama or the workers changed: re-survey
        for body in self.outbox.pending():
            log.info("outbox.resend request=%s", body["requestId"])
            self._deliver_later(body)
        self.slots = self._new_slots(self.run_cfg.settings)
        for slot in self.slots:
            pool.spawn_worker(slot, self.work_endpoint, os.getpid())
        for coro in (self._recv_work(), self._recv_heartbeat(), self._recv_control(),
                     self._recv_subscriptions(), self._handle_signals(), self._tick()):
            self._task(coro)
        await self._wait_workers_ready()
        if not self.stopping and await self._attach(self.manifest, first=True):
            self._spawn_heartbeat()
            sdnotify.notify(f"READY=1\nSTATUS=serving as node {self.node_id}, "
                            f"{len(self.slots)} workers")
            if self.paused:
                log.warning("maintenance.paused at=start: `parallelix-node pause` left it "
                            "paused; `parallelix-node resume` takes requests again")
            self._task(self._keep_manifest())
            for _ in self.slots:
                self._task(self._intake())
        else:
            self._begin_stop(abandon=True)
        await self.stopped.wait()
        await self._shutdown()
        return self.exit_code

    def _task(self, coro: Any, into: set | None = None) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        bucket = self.tasks if into is None else into
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        task.add_done_callback(self._task_failed)
        return task

    def _task_failed(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("supervisor.bug error=%r: stopping", task.exception(),
                  exc_info=task.exception())
        self.exit_code = EXIT_FAILURE
        self._begin_stop(abandon=True)

    def _open_sockets(self) -> None:
        remove_stale_socket_dir(self.home)
        self.sock_dir = folder = self.home.make_socket_dir()
        clear_stale_sockets(folder)
        self.ctx = zmq.asyncio.Context()
        self.ctx.linger = 0
        old_umask = os.umask(0o177)  # bind has no mode option: this makes the sockets 0600
        try:
            self.work_endpoint = f"ipc://{folder / 'work.sock'}"
            work = self.ctx.socket(zmq.ROUTER, socket_class=zmq.Socket)  # drained: the hot path
            work.setsockopt(zmq.ROUTER_MANDATORY, 1)  # ROUTER_HANDOVER stays off:
            work.setsockopt(zmq.MAXMSGSIZE, m.MAX_WORK_MESSAGE)  # no route is taken over
            work.setsockopt(zmq.SNDHWM, 64)
            work.bind(self.work_endpoint)
            self.work = LoopSocket(work)
            self.hb_endpoint = f"ipc://{folder / 'heartbeat.sock'}"
            self.hb = self.ctx.socket(zmq.ROUTER)  # not PAIR: the first to connect would own it
            self.hb.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self.hb.setsockopt(zmq.MAXMSGSIZE, m.MAX_SMALL_MESSAGE)
            self.hb.bind(self.hb_endpoint)
            self.control = self.ctx.socket(zmq.ROUTER)
            self.control.setsockopt(zmq.MAXMSGSIZE, m.MAX_SMALL_MESSAGE)
            self.control.bind(f"ipc://{folder / 'control.sock'}")
            events = self.ctx.socket(zmq.XPUB, socket_class=zmq.Socket)  # one per request
            events.setsockopt(zmq.XPUB_VERBOSE, 1)
            events.setsockopt(zmq.SNDHWM, 1000)
            events.bind(f"ipc://{folder / 'events.sock'}")
            self.events = LoopSocket(events)
        finally:
            os.umask(old_umask)

    def _close_sockets(self) -> None:
        self.work.close()
        self.events.close()
        self.ctx.destroy(linger=0)
        folder = self.sock_dir
        clear_stale_sockets(folder)
        if folder != self.home.run:
            self.home.run_pointer.unlink(missing_ok=True)
            remove_empty_dir(folder)

    # --- state machine --------------------------------------------------------------------

    def _transition(self, to: str, reason: str) -> None:
        before = self.state
        update_state(self.home, state=to, nodeId=self.node_id, tier=self.tier,
                     address=self.signer.address,
                     nodeKeyHash=node_key_hash(self.signer.address))
        self.state = to
        if before == to:  # a restart re-attaching: the saved state holds, nothing changed
            log.info("state.kept state=%s reason=%s", to, reason)
            return
        log.info("state.transition from=%s to=%s reason=%s", before, to, reason)
        self._publish(m.StateTransition(at_ms=now_ms(), from_state=before, to_state=to,
                                        reason=reason))

    def _publish(self, event: Any) -> None:
        """Events are best-effort by design: PUB drops at HWM, observers may come and go."""
        self.events.send(m.encoder.encode(event))

    async def _send(self, sock: zmq.asyncio.Socket, *frames: bytes) -> bool:
        """Send without blocking; False when the peer cannot take it (absent, unroutable, HWM).
        Awaited, because zmq.asyncio reports a NOBLOCK send's error through its future."""
        try:
            await sock.send_multipart(list(frames), zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False

    async def _attach(self, manifest: dict[str, Any], first: bool = False) -> bool:
        """Attach with the signed manifest; retry while the coordinator is unreachable.
        False when the node cannot go on with this manifest (refused, or stopping)."""
        digest = manifest_hash(manifest)
        if first:
            await run_blocking(self._refresh_network)
        delay = 1.0
        while not self.stopping:
            try:
                answer = await self.link.call(attach_call(self.signer, self.node_id,
                                                          manifest, digest))
                break
            except CoordinatorError as e:
                self.metrics.coordinator_error("attach", metrics.error_kind(e))
                log.warning("attach.retry reason=%s in=%.0fs", e, delay)
                sdnotify.notify(f"EXTEND_TIMEOUT_USEC={int((delay * 1.2 + 20) * 1e6)}\n"
                                f"STATUS=waiting for the coordinator: {e}")
            except Denied as e:
                self.metrics.coordinator_error("attach", "denied")
                self._denied(e.status, e.code, e.detail)
                return False
            except Rejected as e:
                self.metrics.coordinator_error("attach", "rejected")
                log.error("attach.rejected error=%s: %s", e, _attach_hint(e))
                if first:
                    self.exit_code = EXIT_FAILURE
                else:  # still attached with the one before; do not retry this one
                    self.manifest = manifest
                return False
            await self._sleep_unless_stopping(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 60.0)
        else:
            return False
        body = answer.body
        self.heartbeat_interval = _interval(body.get("heartbeatIntervalMs"), 10_000) / 1000
        self.poll_interval = _interval(body.get("pollIntervalMs"), 1_000) / 1000
        tier = body.get("tier")
        if isinstance(tier, int) and not isinstance(tier, bool) and 1 <= tier <= 5:
            self.tier = tier  # the coordinator may lower the claimed tier
        self.manifest, self.attached = manifest, True
        log.info("attached node=%s address=%s tier=%s heartbeat=%.1fs poll=%.1fs ollama=%s "
                 "models=%d", self.node_id, self.signer.address, self.tier,
                 self.heartbeat_interval, self.poll_interval,
                 manifest.get("ollama", {}).get("version"), len(manifest.get("models", [])))
        if first:
            self._transition(ACTIVE, "attached")
            self.run_cfg.on_attached()
        return True

    async def _keep_manifest(self) -> None:
        """Attach again whenever the manifest changes while the node runs (PROTOCOL.md): its
        Ollama came up or went away, a model was pulled, workers were reloaded."""
        while not self.stopping:
            try:
                await asyncio.wait_for(self.manifest_dirty.wait(), MANIFEST_EVERY)
            except asyncio.TimeoutError:
                pass
            self.manifest_dirty.clear()
            settings = self.run_cfg.settings
            survey = await run_blocking(survey_ollama, [w.ollama for w in settings.workers],
                                        settings.model)
            manifest = with_ollama(self.manifest, survey, settings.slots)
            if self.stopping or manifest_hash(manifest) == manifest_hash(self.manifest):
                continue
            log.info("manifest.changed ollama=%s models=%d workers=%d: attaching again",
                     survey.version, len(manifest["models"]), settings.slots)
            await self._attach(manifest)

    def _coordinator_ok(self) -> None:
        """A result was delivered: the others backing off after an outage go now."""
        self.coordinator_answered.set()

    def _refresh_network(self) -> None:
        """Cache the public /network answer (contract addresses) for `status`; best effort."""
        try:
            info = self.coord.network()
        except CoordinatorError as e:
            self.metrics.coordinator_error("network", metrics.error_kind(e))
            log.warning("network.unavailable reason=%s", e)
            return
        record_network(self.home, self.coord.base, info, now_ms())

    def _denied(self, status: int, code: str, detail: str) -> None:
        """403/404 from any endpoint or process: stop within 5 s (PROTOCOL.md)."""
        if self.abandon:
            return
        if code in STATE_FOR_403:  # not_staked, in_cooldown, retired: a deliberate stop
            log.warning("coordinator.stop code=%s detail=%s: the node stops (exit 0)",
                        code, detail or "-")
            self._transition(STATE_FOR_403[code], code)
            self.exit_code = EXIT_OK
        else:
            fix = ("the key does not match the node registered on-chain: run this node with "
                   "the key whose nodeKeyHash you registered, or register this key's hash"
                   if code == "key_mismatch" else
                   "the coordinator does not know this node id: check --node-id against the Console")
            log.error("coordinator.refused status=%s code=%s detail=%s: %s",
                      status, code, detail or "-", fix)
            self.exit_code = EXIT_IDENTITY
        self._begin_stop(abandon=True)

    def _begin_stop(self, quick: bool = False, abandon: bool = False) -> None:
        self.quick = self.quick or quick or abandon
        self.abandon = self.abandon or abandon
        if not self.stopping:
            self.stopping = True
            sdnotify.notify("STOPPING=1")
            self.stop_deadline = time.monotonic() + self.run_cfg.graceful_timeout
        self.stopped.set()
        self._wake()

    def _wake(self) -> None:
        async def notify() -> None:
            async with self.capacity:
                self.capacity.notify_all()
        self._task(notify())

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopped.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    # --- intake ---------------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether the node takes new requests (PROTOCOL.md `load.accepting`): the one place
        that decides it. The inbox is polled only while this is true."""
        return self.attached and not self.stopping and not self.paused \
            and self.ready_slots() > 0

    def ready_slots(self) -> int:
        """PROTOCOL.md `load.ready`: slots whose worker is up and whose Ollama answers."""
        return sum(1 for s in self.slots if s.serving)

    def _note_accepting(self) -> None:
        """Log each change of `accepting`, naming the endpoints the node waits for."""
        now = self.accepting
        if now == self.was_accepting or not self.attached:
            return
        self.was_accepting = now
        if now:
            log.info("node.accepting ready=%d slots=%d", self.ready_slots(), len(self.slots))
        elif not self.stopping and not self.paused:  # a pause logs maintenance.paused
            waiting = sorted({s.spec.ollama for s in self.slots if s.ready and not s.ollama_up})
            log.warning("node.not_accepting ready=0 slots=%d waiting_for=%s: no slot can serve; "
                        "polling nothing until Ollama answers", len(self.slots),
                        ",".join(waiting) or "workers starting")

    def _free_capacity(self) -> int:
        idle = sum(1 for s in self.slots if s.idle)
        return idle - len(self.pending) - self.reserved

    async def _intake(self) -> None:
        """One of N pollers (N = slots), each holding a kept-alive connection while it polls:
        polls only while a worker slot is free, at once when one becomes free."""
        backoff = 1.0
        while not self.stopping:
            async with self.capacity:
                await self.capacity.wait_for(
                    lambda: self.stopping or (self.accepting and self._free_capacity() > 0))
            if self.stopping:
                return
            self.reserved += 1
            asked = time.monotonic()
            try:
                answer = await self.link.call(inbox_call(self.signer, self.node_id,
                                                         LONG_POLL_MS))
            except CoordinatorError as e:
                self.metrics.coordinator_error("inbox", metrics.error_kind(e))
                log.warning("inbox.retry reason=%s in=%.0fs", e, backoff)
                await self._sleep_unless_stopping(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 30.0)
                continue
            except Denied as e:
                self.metrics.coordinator_error("inbox", "denied")
                self._denied(e.status, e.code, e.detail)
                return
            except Rejected as e:
                self.metrics.coordinator_error("inbox", "rejected")
                log.error("inbox.rejected error=%s", e)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            finally:
                self.reserved -= 1
            backoff = 1.0
            answered = time.monotonic()
            if await self._accept(answer.body if answer.status != 204 else {}):
                self.metrics.polled(answered - asked)
            else:
                await self._sleep_unless_stopping(self.poll_interval * random.uniform(0.8, 1.2))

    async def _accept(self, body: dict[str, Any]) -> bool:
        """Take the request in an inbox answer; False when there was none to serve, so the
        poller waits pollIntervalMs (after a 204, and after a malformed answer too)."""
        parsed = parse_inbox(body)
        if parsed is None:
            return False
        if isinstance(parsed, Malformed):
            log.error("inbox.malformed reason=%s", parsed.reason)
            if parsed.request_id:
                self._report_failure(parsed.request_id, "inference_failed",
                                     f"malformed request: {parsed.reason}", None)
            return False
        if any(r.req.id == parsed.id for r in self.jobs.values()) or \
                any(req.id == parsed.id for req, _ in self.pending):
            log.warning("inbox.duplicate request=%s: already being served, ignored", parsed.id)
            return False
        if self.stopping:
            self._report_failure(parsed.id, "shutdown", "node is stopping", parsed.model)
            return True
        log.debug("inbox.request id=%s model=%s", parsed.id, parsed.model)
        self.pending.append((parsed, 1))
        await self._dispatch()
        return True

    async def _dispatch(self) -> None:
        """Hand pending requests to idle workers, one job in flight per worker."""
        while self.pending:
            slot = next((s for s in self.slots if s.idle), None)
            if slot is None:
                return
            req, attempt = self.pending.popleft()
            self.job_counter += 1
            job = m.Job(job=self.job_counter, request_id=req.id, model=req.model,
                        prompt=req.prompt, system=req.system, options=req.options or {},
                        deadline_ms=req.deadline_ms, cpu_only=self.run_cfg.cpu_only)
            if not self.work.send(slot.identity, m.encoder.encode(job)):
                log.warning("dispatch.unroutable slot=%s: worker gone, requeued", slot.name)
                slot.ready = False
                self.pending.appendleft((req, attempt))
                continue
            slot.job = self.job_counter
            self.jobs[self.job_counter] = Inflight(req, self.job_counter, slot, attempt,
                                                   time.monotonic())

    async def _release(self) -> None:
        """A slot may be free: dispatch what is pending, then wake as many pollers as there
        are slots left to fill (waking all would have the rest check and sleep again)."""
        await self._dispatch()
        free = self._free_capacity()
        if free > 0:
            async with self.capacity:
                self.capacity.notify(free)

    # --- worker messages ------------------------------------------------------------------

    async def _recv_work(self) -> None:
        async for frames in self.work.messages():
            if len(frames) != 2:
                log.warning("work.malformed frames=%d: dropped", len(frames))
                continue
            identity, payload = frames
            slot = next((s for s in self.slots if s.identity == identity), None)
            if slot is None:  # not a process this supervisor spawned (or one since replaced)
                log.warning("work.unknown_peer frames=%d: dropped (not a worker this "
                            "supervisor spawned)", len(frames))
                continue
            try:
                msg = m.from_worker.decode(payload)
            except m.DecodeError as e:
                log.warning("work.malformed slot=%s reason=%s: dropped", slot.name, e)
                continue
            slot.last_seen = time.monotonic()
            if isinstance(msg, m.Ready):
                await self._on_ready(slot, msg)
            elif isinstance(msg, (m.Done, m.Failed)):
                await self._finished(slot, msg)

    async def _on_ready(self, slot: pool.Slot, msg: m.Ready) -> None:
        """A worker is up (again), with its verdict on its Ollama: a slot whose Ollama does
        not answer is not ready, and no request is dispatched to it until it answers."""
        if slot.proc is None or msg.pid != slot.pid:
            slot.ready = False
            log.warning("work.stale_ready slot=%s pid=%s: not the running worker", slot.name,
                        msg.pid)
            return
        changed = not slot.ready or slot.ollama_up != msg.ollama_up
        slot.ready, slot.ollama_up, slot.ollama_reason = True, msg.ollama_up, msg.reason
        if changed and msg.ollama_up:
            log.info("worker.ready slot=%s pid=%s ollama=%s", slot.name, msg.pid,
                     slot.spec.ollama)
        elif changed:
            log.warning("worker.waiting slot=%s pid=%s ollama=%s reason=%s: not ready until "
                        "Ollama answers", slot.name, msg.pid, slot.spec.ollama, msg.reason)
        if changed:
            self.manifest_dirty.set()
        self._note_accepting()
        await self._release()

    async def _finished(self, slot: pool.Slot, msg: m.Done | m.Failed) -> None:
        received = time.monotonic()
        rec = self.jobs.get(msg.job)
        if rec is None or rec.req.id != msg.request_id or rec.slot is not slot:
            log.warning("work.stale slot=%s job=%s request=%s: dropped (already answered)",
                        slot.name, msg.job, msg.request_id)
            return
        del self.jobs[msg.job]
        slot.worked = True
        if rec.slot.job == msg.job:
            rec.slot.job = 0
        ms = int((time.monotonic() - rec.started) * 1000)
        if isinstance(msg, m.Done):
            slot.served += 1
            body = signed_success(self.signer, self.node_id, rec.req.id, rec.req.model,
                                  msg.text, msg.metrics)
            trace = metrics.Trace(rec.started, received, time.monotonic(), msg.timing)
            self.served += 1
            ollama_s = msg.metrics.total_duration_ms / 1000
            self.metrics.served(rec.req.model, ollama_s,
                                time.monotonic() - rec.started - ollama_s, msg.metrics.eval_count)
            log.info("served %s model=%s ms=%d poe=%s", rec.req.id, rec.req.model, ms,
                     body["poe"])
            self._publish(m.RequestServed(at_ms=now_ms(), request_id=rec.req.id,
                                          model=rec.req.model, ms=ms, poe=body["poe"]))
            self._commit(body, trace)
        else:
            slot.failed += 1
            slot.last_failure = f"{msg.code}: {msg.message}"
            self._report_failure(rec.req.id, msg.code, msg.message, rec.req.model)
        await self._release()

    def _report_failure(self, request_id: str, code: str, reason: str,
                        model: str | None) -> None:
        body = signed_failure(self.signer, self.node_id, request_id, code, reason)
        self.failed += 1
        code = body["error"]["code"]
        self.metrics.failed(model, code)
        log.info("failed %s code=%s reason=%s", request_id, code, reason)
        self._publish(m.RequestFailed(at_ms=now_ms(), request_id=request_id, code=code,
                                      reason=reason))
        self._commit(body)

    # --- delivery -------------------------------------------------------------------------

    def _commit(self, body: dict[str, Any], trace: metrics.Trace | None = None) -> None:
        """Write the signed body to the outbox (durable), then deliver it off the loop."""
        async def commit() -> None:
            write = self.outbox_changes.run(("put", body))
            self.writes.add(write)
            write.add_done_callback(self.writes.discard)
            try:
                await write
            except OSError as e:
                log.error("outbox.write_failed request=%s reason=%s: delivering from memory; "
                          "it is lost if the daemon stops before the coordinator has it",
                          body["requestId"], e.strerror or e)
            if trace is not None:
                trace.durable = time.monotonic()
            await self._deliver(body, trace)
        self._task(commit(), into=self.deliveries)

    def _deliver_later(self, body: dict[str, Any]) -> None:
        self._task(self._deliver(body), into=self.deliveries)

    async def _deliver(self, body: dict[str, Any], trace: metrics.Trace | None = None) -> None:
        """Post until 200/409/410 (delivered) or 400 (kept aside); back off on anything else."""
        rid = body["requestId"]
        delay = 1.0
        while True:
            try:
                async with self.delivering:
                    answer = await self.link.call(result_call(body))
            except CoordinatorError as e:
                self.metrics.coordinator_error("result", metrics.error_kind(e))
                self.delivery_error = str(e)
                if self.abandon:
                    return
                log.warning("result.retry request=%s reason=%s in=%.0fs", rid, e, delay)
                self.coordinator_answered.clear()
                try:
                    await asyncio.wait_for(self.coordinator_answered.wait(),
                                           delay * random.uniform(0.5, 1.5))
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 60.0)
                continue
            except Rejected as e:
                self.metrics.result_answered("rejected")
                try:
                    kept = await self.disk.run(self.outbox.reject, rid)
                except OSError as err:
                    kept = f"nowhere ({err.strerror})"
                log.error("result.rejected request=%s error=%s: a node bug; the signed result is "
                          "kept at %s and never retried", rid, e, kept)
                return
            except Denied as e:
                self.metrics.coordinator_error("result", "denied")
                self._denied(e.status, e.code, e.detail)
                return
            if trace is not None:
                self.metrics.delivered(trace, time.monotonic())
            self._coordinator_ok()
            self.delivery_error = None
            self.metrics.result_answered(RESULT_ANSWER.get(answer.status, "accepted"))
            if answer.status == 410:
                log.warning("result.expired request=%s: deadline passed, counted delivered", rid)
            elif answer.status == 409:
                log.info("result.duplicate request=%s: an earlier copy was accepted", rid)
            try:
                await self.outbox_changes.run(("remove", rid))
            except OSError as e:
                log.error("outbox.remove_failed request=%s reason=%s: it will be sent again "
                          "at the next start (the coordinator answers 409)", rid, e)
            return

    # --- heartbeat process ----------------------------------------------------------------

    def _spawn_heartbeat(self) -> None:
        cfg = self.run_cfg
        self.hb_identity = new_identity()
        self.hb_proc = procs.spawn("node.daemon.heartbeat", [
            "--node-id", str(self.node_id), "--coordinator", cfg.settings.coordinator,
            "--connect", self.hb_endpoint, "--interval-ms",
            str(int(self.heartbeat_interval * 1000)), "--parent-pid", str(os.getpid()),
            "--first-seq", str(self.beat_seq + 2),  # +2: the dead one may have sent one more
            "--node-version", cli_version()],
            handover=[self.hb_identity, cfg.secret.hex().encode()])  # a pipe, never a socket
        log.info("heartbeat.spawned pid=%s interval=%.1fs", self.hb_proc.pid,
                 self.heartbeat_interval)

    async def _recv_heartbeat(self) -> None:
        while True:
            frames = await self.hb.recv_multipart()
            if len(frames) != 2 or frames[0] != self.hb_identity:
                log.warning("heartbeat.unknown_peer frames=%d: dropped (not the heartbeat "
                            "process this supervisor spawned)", len(frames))
                continue
            try:
                msg = m.from_heartbeat.decode(frames[1])
            except m.DecodeError as e:
                log.warning("heartbeat.malformed reason=%s: dropped", e)
                continue
            if isinstance(msg, m.BeatResult):
                self.metrics.heartbeat(msg.ok, msg.status, msg.at_ms)
                self.beat_seq = max(self.beat_seq, msg.seq)
                if msg.ok:
                    self.last_beat_ack = msg.at_ms
                else:
                    log.warning("heartbeat.failed seq=%d status=%d error=%s", msg.seq,
                                msg.status, msg.error)
            else:
                self.metrics.coordinator_error("heartbeat", "denied")
                self._denied(msg.status, msg.code, msg.detail)

    async def _send_load(self) -> None:
        busy = sum(1 for s in self.slots if s.job)
        slots = sum(1 for s in self.slots if not s.retiring)
        await self._send(self.hb, self.hb_identity, m.encoder.encode(m.Load(
            busy=busy, slots=slots, ready=self.ready_slots(), accepting=self.accepting,
            served=self.served)))

    # --- control socket -------------------------------------------------------------------

    async def _recv_control(self) -> None:
        while True:
            frames = await self.control.recv_multipart()
            envelope, payload = frames[:-1], frames[-1]
            try:
                request = m.control_request.decode(payload)
            except m.DecodeError as e:
                reply = m.ControlError(error=f"bad request: {e}")
            else:
                reply = self._control(request)
                if not isinstance(request, m.StatusRequest):
                    await self._send_load()  # the next beat says so, not one a tick later
            await self._send(self.control, *envelope, m.encoder.encode(reply))

    def _control(self, request: m.ControlRequest) -> m.ControlReply:
        """Act on a control request; the reply is the status after it."""
        if isinstance(request, (m.ResumeRequest, m.DrainRequest)) and self.stopping:
            return m.ControlError(error="the daemon is already stopping")
        if isinstance(request, m.PauseRequest):
            self._maintain(paused=True, draining=False)
        elif isinstance(request, m.ResumeRequest):
            self._maintain(paused=False, draining=False)
        elif isinstance(request, m.DrainRequest):
            self._maintain(paused=True, draining=True, timeout_s=request.timeout_s)
        return self.snapshot()

    def _maintain(self, paused: bool, draining: bool, timeout_s: float | None = None) -> None:
        """Pause, resume or drain: remembered in state.json (a paused node starts paused),
        logged, published as an event and a metric."""
        if draining and not self.draining:
            self.drain_from = (self.served, self.failed)
        self.drain_deadline = time.monotonic() + timeout_s if draining and timeout_s else None
        if (paused, draining) == (self.paused, self.draining):
            return
        if paused != self.paused:
            update_state(self.home, paused=paused)
        self.paused, self.draining = paused, draining
        mode = "draining" if draining else "paused" if paused else "serving"
        in_flight, depth = len(self.jobs) + len(self.pending), self.outbox.depth()
        log.info("maintenance.%s in_flight=%d outbox=%d%s", mode, in_flight, depth,
                 f" timeout={timeout_s:.0f}s" if self.drain_deadline else "")
        self._publish(m.Maintenance(at_ms=now_ms(), mode=mode, in_flight=in_flight,
                                    outbox_depth=depth))
        self._wake()

    def _check_drain(self, now: float) -> None:
        """Draining: stop once nothing is in flight and every result is delivered; at the
        deadline, give the rest back (as SIGTERM would) and stop."""
        if not self.draining or self.stopping:
            return
        if not (self.jobs or self.pending or self.reserved or self.deliveries or self.writes):
            log.info("drain.done served=%d failed=%d: everything served and delivered; "
                     "stopping (exit 0)", self.served - self.drain_from[0],
                     self.failed - self.drain_from[1])
            self._begin_stop()
        elif self.drain_deadline is not None and now >= self.drain_deadline:
            log.warning("drain.timeout in_flight=%d outbox=%d: giving the rest back and stopping",
                        len(self.jobs) + len(self.pending), self.outbox.depth())
            self.drain_timed_out = True
            self._begin_stop(quick=True)

    def _record_drain(self, given_back: int) -> None:
        """The drain's outcome, for `drain` to print after the daemon is gone; unpaused, so
        the next start serves."""
        served, failed = self.drain_from
        update_state(self.home, paused=False, lastDrain={
            "atMs": now_ms(), "served": self.served - served,
            "failed": self.failed - failed - given_back, "givenBack": given_back,
            "outbox": self.outbox.depth(), "timedOut": self.drain_timed_out})

    async def _recv_subscriptions(self) -> None:
        """Greet each new event subscriber, so it knows from when on it sees every event."""
        async for frames in self.events.messages():
            if frames[0][:1] == b"\x01":
                self._publish(m.WatchHello(at_ms=now_ms(), state=self.state))

    def snapshot(self) -> m.StatusReply:
        """The live status, from memory: never waits on a request in flight."""
        return m.StatusReply(
            pid=os.getpid(), version=cli_version(), state=self.state, node_id=self.node_id,
            address=self.signer.address, node_key_hash=node_key_hash(self.signer.address),
            tier=self.tier, coordinator=self.coord.base,
            uptime_s=int(time.monotonic() - self.started),
            workers=[self._worker_status(s) for s in self.slots],
            heartbeat_pid=self.hb_proc.pid if self.hb_proc and self.hb_proc.poll() is None
            else None,
            served=self.served, failed=self.failed, last_heartbeat_ack_ms=self.last_beat_ack,
            outbox_depth=self.outbox.depth(), paused=self.paused, draining=self.draining,
            in_flight=len(self.jobs) + len(self.pending),
            delivery_error=self.delivery_error if self.deliveries else None,
            accepting=self.accepting)

    def _metrics_view(self) -> metrics.Snapshot:
        """The live figures for one scrape (runs on the loop: a consistent instant)."""
        processes = [("supervisor", os.getpid())]
        if self.hb_proc is not None and self.hb_proc.poll() is None:
            processes.append(("heartbeat", self.hb_proc.pid))
        processes += [("worker", s.pid) for s in self.slots if s.alive()]
        return metrics.Snapshot(
            state=self.state, tier=self.tier, accepting=self.accepting, paused=self.paused,
            draining=self.draining,
            in_flight=len(self.jobs) + len(self.pending),
            workers=tuple(metrics.WorkerView(s.name, s.spec.ollama, s.alive(), s.serving,
                                             s.restarts) for s in self.slots),
            processes=tuple(processes))

    def _worker_status(self, slot: pool.Slot) -> m.WorkerStatus:
        rec = self.jobs.get(slot.job)
        waiting = (None if slot.serving else
                   f"Ollama at {slot.spec.ollama}: {slot.ollama_reason}" if slot.ready
                   else "the worker to start")
        return m.WorkerStatus(slot=slot.name, pid=slot.pid, endpoint=slot.spec.ollama,
                              busy=bool(slot.job), request_id=rec.req.id if rec else None,
                              served=slot.served, failed=slot.failed, restarts=slot.restarts,
                              last_failure=slot.last_failure, ready=slot.serving,
                              waiting_for=waiting)

    # --- signals --------------------------------------------------------------------------

    async def _handle_signals(self) -> None:
        while True:
            sig = await self.signals.get()
            if sig == signal.SIGHUP:
                await self._reload()
            elif self.stopping:
                log.info("stop.quick signal=%s: giving back what is in flight",
                         signal.Signals(sig).name)
                self._begin_stop(quick=True)
            else:
                log.info("stop.graceful signal=%s: finishing %d request(s), up to %.0fs",
                         signal.Signals(sig).name, len(self.jobs), self.run_cfg.graceful_timeout)
                self._begin_stop(quick=False)

    def _new_slots(self, settings: Settings) -> list[pool.Slot]:
        slots = []
        for spec in settings.workers:
            for _ in range(spec.slots):
                slots.append(pool.Slot(f"w{self.slot_counter}", spec))
                self.slot_counter += 1
        return slots

    async def _reload(self) -> None:
        """SIGHUP: re-read config.toml; new workers replace old ones, which finish first."""
        old = self.run_cfg.settings
        try:
            new = self.run_cfg.reload()
        except Exception as e:  # a reload must never take the running daemon down
            log.error("reload.failed reason=%s: keeping the running configuration", e)
            return
        if new.workers == old.workers:
            log.info("reload.unchanged workers=%d", len(self.slots))
            return
        for slot in self.slots:
            slot.retiring = True
            self._send_stop(slot)
        fresh = self._new_slots(new)
        for slot in fresh:
            pool.spawn_worker(slot, self.work_endpoint, os.getpid())
        self.slots.extend(fresh)
        self.run_cfg = replace(self.run_cfg, settings=new)
        self.manifest_dirty.set()
        log.info("reload.workers old=%d new=%d", sum(s.retiring for s in self.slots), len(fresh))

    def _send_stop(self, slot: pool.Slot) -> None:
        self.work.send(slot.identity, m.encoder.encode(m.Stop()))

    # --- the tick: reap, ping, expire, respawn, feed the heartbeat and the watchdog --------

    async def _tick(self) -> None:
        watchdog = sdnotify.watchdog_interval()
        last_watchdog = 0.0
        while True:
            now = time.monotonic()
            self._reap_workers(now)
            self._murder_hung(now)
            await self._retry_lost(now)
            self._expire_pending()
            self._ping(now)
            if not self.stopping:
                self._respawn(now)
                self._keep_heartbeat(now)
            self._note_accepting()
            await self._send_load()
            self._check_drain(now)
            if watchdog and now - last_watchdog >= watchdog:
                sdnotify.notify("WATCHDOG=1")
                last_watchdog = now
            await self._release()
            await asyncio.sleep(TICK)

    def _reap_workers(self, now: float) -> None:
        for slot in list(self.slots):
            if slot.proc is None or slot.proc.poll() is None:
                continue
            reason = pool.exit_reason(slot.proc)
            for rec in self.jobs.values():
                if rec.slot is slot and rec.lost_at is None:
                    rec.lost_at = now
            if slot.retiring:
                log.info("worker.retired slot=%s reason=%s", slot.name, reason)
                self.slots.remove(slot)
            elif self.stopping:
                slot.proc, slot.ready = None, False
            else:
                pool.schedule_respawn(slot, reason)

    def _murder_hung(self, now: float) -> None:
        for slot in self.slots:
            if not slot.alive():
                continue
            rec = self.jobs.get(slot.job)
            silent = now - slot.last_seen if slot.ready else 0.0
            overdue = rec is not None and now_ms() > rec.req.deadline_ms + DEADLINE_GRACE * 1000
            booting = not slot.ready and now - slot.spawned_at > pool.READY_TIMEOUT
            if silent > pool.PING_TIMEOUT or overdue or booting:
                why = ("no answer to ping for %.0fs" % silent if silent > pool.PING_TIMEOUT
                       else "job past its deadline" if overdue else "never said Ready")
                log.warning("worker.hung slot=%s pid=%s reason=%s: killing", slot.name,
                            slot.pid, why)
                proc = slot.proc
                threading.Thread(target=procs.terminate, args=(proc, pool.KILL_GRACE),
                                 daemon=True).start()
                slot.last_seen = now  # one kill per hang; the reap replaces it

    async def _retry_lost(self, now: float) -> None:
        for rec in list(self.jobs.values()):
            if rec.lost_at is None or now - rec.lost_at < LOST_JOB_GRACE:
                continue
            del self.jobs[rec.job]
            if rec.attempt < MAX_ATTEMPTS and not self.stopping:
                log.warning("request.retry request=%s worker=%s: its worker died; trying another",
                            rec.req.id, rec.slot.name)
                self.pending.appendleft((rec.req, rec.attempt + 1))
            else:
                self._report_failure(rec.req.id, "inference_failed",
                                     f"the worker died while serving it (attempt {rec.attempt})",
                                     rec.req.model)
        await self._dispatch()

    def _expire_pending(self) -> None:
        """A request no worker could take before its deadline is given back as a timeout."""
        late = [(req, n) for req, n in self.pending if now_ms() > req.deadline_ms]
        for req, attempt in late:
            self.pending.remove((req, attempt))
            self._report_failure(req.id, "timeout", "no worker was free before the deadline",
                                 req.model)

    def _respawn(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None and not slot.retiring and now >= slot.respawn_at:
                pool.spawn_worker(slot, self.work_endpoint, os.getpid())

    def _ping(self, now: float) -> None:
        for slot in self.slots:
            if slot.ready and now - slot.last_ping >= pool.PING_EVERY:
                slot.last_ping = now
                self.work.send(slot.identity, m.encoder.encode(m.Ping(seq=int(now))))

    def _keep_heartbeat(self, now: float) -> None:
        if self.hb_proc is None or self.hb_proc.poll() is None:
            return
        if self.hb_respawn_at == 0.0:
            log.warning("heartbeat.died reason=%s: respawning", pool.exit_reason(self.hb_proc))
            self.hb_respawn_at = now + 1.0
        elif now >= self.hb_respawn_at:
            self.hb_respawn_at = 0.0
            self._spawn_heartbeat()

    async def _wait_workers_ready(self) -> None:
        deadline = time.monotonic() + pool.READY_TIMEOUT
        while not self.stopping and time.monotonic() < deadline:
            if all(s.ready for s in self.slots):
                return
            await self._sleep_unless_stopping(0.05)
        missing = [s.name for s in self.slots if not s.ready]
        if missing:
            log.warning("workers.slow_start slots=%s: starting without them", ",".join(missing))

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Graceful: finish in flight until the deadline or a second signal, then give the
        rest back as `shutdown` reports and deliver. Abandon (403, a bug): leave in-flight
        work to the coordinator, which re-dispatches it. Then stop heartbeat and workers."""
        while (self.jobs or self.pending or self.reserved) and not self.quick \
                and time.monotonic() < self.stop_deadline:
            await asyncio.sleep(0.05)
        given_back = 0 if self.abandon else len(self.jobs) + len(self.pending)
        if not self.abandon:
            for rec in list(self.jobs.values()):
                self._report_failure(rec.req.id, "shutdown", "node is stopping", rec.req.model)
            for req, _ in self.pending:
                self._report_failure(req.id, "shutdown", "node is stopping", req.model)
            self.jobs.clear()
            self.pending.clear()
        end = max(time.monotonic() + 2.0, self.stop_deadline)
        while self.deliveries and not self.abandon and time.monotonic() < end:
            await asyncio.wait(set(self.deliveries), timeout=0.1)
        if self.writes:  # even when abandoning, every signed result reaches the disk
            await asyncio.wait(set(self.writes), timeout=5.0)
        for task in list(self.deliveries) + list(self.tasks):
            task.cancel()
        await self._send(self.hb, self.hb_identity, m.encoder.encode(m.StopHeartbeat()))
        for slot in self.slots:
            self._send_stop(slot)
        grace = 1.0 if self.abandon else pool.KILL_GRACE
        stoppers = [threading.Thread(target=procs.terminate, args=(p, grace))
                    for p in [s.proc for s in self.slots] + [self.hb_proc] if p is not None]
        for t in stoppers:
            t.start()
        await run_blocking(lambda: [t.join() for t in stoppers])
        if self.metrics_server is not None:
            await run_blocking(metrics.close, self.metrics_server)
        self.link.close()
        if self.draining:
            self._record_drain(given_back)
        left = self.outbox.depth()
        log.info("stopped exit=%d served=%d failed=%d outbox=%d", self.exit_code, self.served,
                 self.failed, left)


def _attach_hint(e: Rejected) -> str:
    """What to do about a refused attach: a signature refusal points at the clock and the key;
    a malformed request is the coordinator naming the field it refuses."""
    if e.code == "bad_signature":
        return "check the clock (verify) and the key"
    return (f"the coordinator refused the attach request itself ({e.detail or e.code}); "
            "this node and the coordinator disagree on the protocol: report it with this line")


def _interval(value: Any, default: int) -> int:
    """A coordinator-given interval in ms (10000.0 is as good as 10000), kept within sane
    bounds (100 ms .. 10 min); anything else means the default."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and 100 <= value <= 600_000 and value == int(value):  # bounds first: no inf, no NaN
        return int(value)
    return default
