"""The inference worker process: one slot, one Ollama endpoint, one job at a time, no key.

The supervisor starts it by exec:

    python -m workers.inference --slot w0 --endpoint http://127.0.0.1:11434 \\
        --connect ipc:///path/work.sock --parent-pid PID \\
        [--first-chunk-timeout 300] [--idle-timeout 60]

It reads its routing identity from stdin (ipc/handover.py: random per spawn; the supervisor
accepts messages only from it) and connects a DEALER with it to the supervisor's ROUTER. It
sends `Ready` once its first probe of Ollama has a verdict (workers/health.py), again whenever
that verdict changes and after every reconnect; it answers `Job` with `Done`/`Failed`, `Ping`
with `Pong`, and `Stop` by exiting once the job in progress is answered (ipc/messages.py). Jobs
run in one long-lived thread so Pings are answered while Ollama streams; only the main thread
touches the socket. SIGINT is ignored (Ctrl-C reaches the whole process group; the supervisor
coordinates shutdown); SIGTERM acts like `Stop`. When the supervisor dies the worker exits
within about a second, abandoning any job (nobody is left to answer).
"""
import argparse
import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable

import msgspec
import zmq

from ipc.handover import HandoverError, read_handover
from ipc.messages import (MAX_WORK_MESSAGE, DecodeError, Done, Failed, FromWorker, Job, Ping,
                          Pong, Ready, Stop, encoder, to_worker)
from workers.generate import Generator, Timeouts
from workers.health import OllamaHealth
from workers.logfmt import log_to_stderr
from workers.parent import parent_gone, term_on_parent_death

log = logging.getLogger("workers.inference")

TICK_MS = 1000            # parent check interval
SEND_TIMEOUT_MS = 3000    # a send blocks at most this long when the supervisor is not connected
FLUSH_ON_EXIT_MS = 2000   # after the last answer, wait this long for it to leave the socket


# A job failing this way may mean Ollama is gone: probe it before answering.
SUSPECT_CODES = ("inference_failed", "timeout")


class Worker:
    """The socket loop. Messages from the job and health threads come back through a queue,
    and a byte on a socketpair wakes the poll (the same socketpair is the signal wakeup fd)."""

    def __init__(self, slot: str, identity: bytes, endpoint: str,
                 run_job: Callable[[Job], Done | Failed], parent_pid: int) -> None:
        self.slot, self.identity, self.endpoint = slot, identity, endpoint
        self._run_job = run_job
        self._parent_pid = parent_pid
        self._current: Job | None = None
        self._stopping = False
        self._outgoing: queue.SimpleQueue[FromWorker] = queue.SimpleQueue()
        self._ready: Ready | None = None      # the last Ready sent: repeated after a reconnect
        self._connections = 0                 # to the supervisor, so far
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        threading.Thread(target=self._run_jobs, name="jobs", daemon=True).start()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self.health = OllamaHealth(endpoint, self._on_health)

    def _on_health(self, up: bool, reason: str) -> None:
        self._queue(Ready(slot=self.slot, pid=os.getpid(), endpoint=self.endpoint,
                          ollama_up=up, reason=reason[:300]))

    def serve(self, connect: str) -> int:
        """Run until Stop/SIGTERM (exit status 0) or the supervisor's death; return the status."""
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_WORK_MESSAGE)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
        sock.connect(connect)
        signal.set_wakeup_fd(self._wake_w.fileno())
        signal.signal(signal.SIGTERM, self._on_sigterm)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        self.health.start()
        wake = self._wake_r.fileno()
        try:
            events: dict = {}
            while True:
                # the parent is checked at every quiet tick; a busy loop is fed by a living
                # parent, or woken by the SIGTERM its death sends (term_on_parent_death)
                if not events and parent_gone(self._parent_pid):
                    log.warning("supervisor (pid %d) is gone; exiting", self._parent_pid)
                    return 0
                if self._stopping and self._current is None:
                    sock.setsockopt(zmq.LINGER, FLUSH_ON_EXIT_MS)
                    log.info("stopped")
                    return 0
                events = dict(poller.poll(TICK_MS))
                if monitor in events:
                    self._reconnected(sock, monitor)
                if wake in events:
                    self._flush(sock)
                if sock in events:
                    self._receive(sock)
        finally:
            signal.set_wakeup_fd(-1)
            sock.disable_monitor()
            monitor.close()
            sock.close()
            ctx.term()

    def _reconnected(self, sock: zmq.Socket, monitor: zmq.Socket) -> None:
        """A reconnection to the supervisor: say Ready again, or its slot may stay unready
        (a ROUTER forgets a peer that went away, and a dispatch to it fails). Not on the first
        connection: a Ready sent before its event was read went over it already (a send
        waits for a connection, ZMQ_IMMEDIATE) and must not be doubled."""
        while monitor.poll(0):
            monitor.recv_multipart()  # only counted (zmq.utils.monitor would import asyncio)
            self._connections += 1
        if self._ready is not None and self._connections > 1:
            log.info("connected to the supervisor: saying Ready again")
            self._send(sock, self._ready)

    def _queue(self, msg: FromWorker) -> None:
        """Hand a message to the socket thread (the only one that may touch the socket)."""
        self._outgoing.put(msg)
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"j")

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _send(self, sock: zmq.Socket, msg: FromWorker) -> bool:
        try:
            data = encoder.encode(msg)
        except (msgspec.EncodeError, UnicodeEncodeError, OverflowError, TypeError) as e:
            log.error("could not encode %s: %s", type(msg).__name__, e)
            if not isinstance(msg, (Done, Failed)):
                return False
            data = encoder.encode(Failed(job=msg.job, request_id=msg.request_id,
                                         code="inference_failed",
                                         message=f"the answer could not be encoded ({e})"[:200]))
        try:
            sock.send(data)
            return True
        except zmq.Again:
            log.error("could not send %s: the supervisor is not connected", type(msg).__name__)
            return False

    def _flush(self, sock: zmq.Socket) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)  # any bytes left keep the poll awake for the next turn
        while not self._outgoing.empty():
            msg = self._outgoing.get()
            if isinstance(msg, Ready):
                self._ready = msg
            elif isinstance(msg, (Done, Failed)):
                self._current = None  # a failure is logged once, by the supervisor, with its id
            self._send(sock, msg)

    def _receive(self, sock: zmq.Socket) -> None:
        """One message per turn of the loop: the poll is level-triggered, so another waiting
        message wakes the next turn at once (and no turn ends in a zmq.Again raised)."""
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            if len(frames) != 1:
                raise DecodeError(f"{len(frames)} frames, expected 1")
            msg = to_worker.decode(frames[0])
        except DecodeError as e:
            log.warning("dropped a malformed message (%d bytes): %s", sum(map(len, frames)), e)
            return
        self._handle(sock, msg)

    def _handle(self, sock: zmq.Socket, msg: Job | Ping | Stop) -> None:
        if isinstance(msg, Ping):
            self._send(sock, Pong(seq=msg.seq, job=self._current.job if self._current else 0))
        elif isinstance(msg, Stop):
            self._stopping = True
        elif self._current is not None or self._stopping:
            code, why = (("shutdown", f"slot {self.slot} is stopping") if self._stopping else
                         ("overloaded", f"slot {self.slot} is busy with job {self._current.job}"))
            self._send(sock, Failed(job=msg.job, request_id=msg.request_id, code=code,
                                    message=why))
        else:
            self._current = msg
            self._jobs.put(msg)

    def _run_jobs(self) -> None:
        """The job thread: never lets an exception leave a job unanswered."""
        while True:
            job = self._jobs.get()
            try:
                answer = self._run_job(job)
            except Exception as e:  # a bug, not an Ollama failure: still answer, and say so
                log.exception("job %d crashed", job.job)
                answer = Failed(job=job.job, request_id=job.request_id, code="inference_failed",
                                message=f"worker error: {type(e).__name__}: {e}")
            if isinstance(answer, Failed) and answer.code in SUSPECT_CODES:
                self.health.recheck()  # queues Ready(ollama_up=False) ahead of it if gone
            self._queue(answer)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m workers.inference",
                                description="A ParalleliX inference worker (started by the "
                                            "supervisor).")
    p.add_argument("--slot", required=True, help="slot name, for logs and Ready")
    p.add_argument("--endpoint", required=True, help="Ollama base URL")
    p.add_argument("--connect", required=True, help="the supervisor's work socket (ipc://…)")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="the supervisor's pid (default: the parent at start)")
    p.add_argument("--first-chunk-timeout", type=float, default=Timeouts.first_chunk,
                   help="seconds to wait for Ollama's first chunk (covers a cold model load)")
    p.add_argument("--idle-timeout", type=float, default=Timeouts.idle,
                   help="seconds of silence between chunks before the job fails")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = parse_args(argv)
    log_to_stderr(f"worker {args.slot}")
    parent_pid = args.parent_pid or os.getppid()
    term_on_parent_death()
    if parent_gone(parent_pid):
        log.warning("supervisor (pid %d) died before the worker started; exiting", parent_pid)
        return 0
    try:
        [identity] = read_handover(sys.stdin.buffer, 1)
    except HandoverError as e:
        log.error("%s", e)
        return 2
    generator = Generator(args.endpoint, Timeouts(first_chunk=args.first_chunk_timeout,
                                                  idle=args.idle_timeout))
    return Worker(args.slot, identity, args.endpoint, generator.run,
                  parent_pid).serve(args.connect)


if __name__ == "__main__":
    sys.exit(main())
