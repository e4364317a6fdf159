"""The heartbeat process: proves liveness to the coordinator every interval, whatever the load.

Its own process with its own tiny loop, so inference never delays a beat. It receives its
routing identity and the signing key once, on stdin (a pipe from the supervisor), never over
a socket. It beats only while the supervisor shows signs of life (a Load message at least
every three intervals), and exits with it: the coordinator must never see online a node that
cannot serve."""
import argparse
import logging
import os
import signal
import sys
import threading
import time

import zmq

from ipc import messages as m
from ipc.handover import HandoverError, read_handover
from node.coordinator import (Coordinator, CoordinatorError, Denied, Rejected, heartbeat_call,
                              now_ms)
from node.identity import Signer
from workers.logfmt import log_to_stderr
from workers.parent import parent_gone, term_on_parent_death

log = logging.getLogger("parallelix.heartbeat")

SILENCE_LIMIT = 3        # supervisor intervals of silence before beats stop
MIN_SILENCE = 2.0        # ...but never less: the supervisor speaks every 0.5 s
BEAT_TIMEOUT = 5.0       # one POST may take this long; retries fit inside the interval


class HeartbeatLoop:
    def __init__(self, signer: Signer, node_id: int, coordinator: str, interval: float,
                 sock: zmq.Socket, first_seq: int = 1, version: str | None = None) -> None:
        self.signer, self.node_id, self.interval, self.sock = signer, node_id, interval, sock
        self.coord = Coordinator(coordinator, timeout=BEAT_TIMEOUT, version=version)
        self.load: m.Load | None = None  # no beat before the supervisor said what it is
        self.last_supervisor = time.monotonic()
        self.seq = first_seq - 1  # counts up across respawns within one daemon run
        self.silence_limit = max(SILENCE_LIMIT * interval, MIN_SILENCE)

    def run(self) -> None:
        while self.load is None:  # the first beat carries real figures, not made-up zeros
            self._drain(self.interval)
        next_beat = time.monotonic()
        while True:
            self._drain(max(0.0, next_beat - time.monotonic()))
            now = time.monotonic()
            if now < next_beat:
                continue
            next_beat = max(next_beat + self.interval, now + self.interval / 2)
            if now - self.last_supervisor > self.silence_limit:
                log.warning("heartbeat.paused: supervisor silent for %.0fs",
                            now - self.last_supervisor)
                continue
            self._beat(next_beat)

    def _drain(self, timeout: float) -> None:
        """Wait up to `timeout` for supervisor messages and take them all."""
        if not self.sock.poll(int(timeout * 1000)):
            return
        while True:
            try:
                payload = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = m.to_heartbeat.decode(payload)
            except m.DecodeError as e:
                log.warning("heartbeat.malformed reason=%s: dropped", e)
                continue
            self.last_supervisor = time.monotonic()
            if isinstance(msg, m.StopHeartbeat):
                raise SystemExit(0)
            self.load = msg

    def _beat(self, next_beat: float) -> None:
        """One heartbeat; a failure is retried with a short backoff until the next is due."""
        self.seq += 1
        load = {"busy": self.load.busy, "slots": self.load.slots, "ready": self.load.ready,
                "accepting": self.load.accepting, "served": self.load.served}
        delay = 0.5
        while True:
            try:
                self.coord.call(heartbeat_call(self.signer, self.node_id, self.seq, load))
                self._report(m.BeatResult(seq=self.seq, ok=True, status=200, at_ms=now_ms()))
                return
            except Denied as e:
                self._report(m.Denied(status=e.status, code=e.code, detail=e.detail))
                return
            except (CoordinatorError, Rejected) as e:
                status = getattr(e, "status", 0)
                self._report(m.BeatResult(seq=self.seq, ok=False, status=status,
                                          at_ms=now_ms(), error=str(e)[:200]))
                if isinstance(e, Rejected) or time.monotonic() + delay >= next_beat:
                    return
            retry_at = time.monotonic() + delay
            while (left := retry_at - time.monotonic()) > 0:
                self._drain(left)
            delay = min(delay * 2, 4.0)

    def _report(self, msg: m.BeatResult | m.Denied) -> None:
        try:
            self.sock.send(m.encoder.encode(msg), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass


def exit_with_parent(parent_pid: int) -> None:
    """Exit when the supervisor dies: the kernel's SIGTERM on Linux, and a 1 s poll everywhere
    (macOS has no pdeathsig). A beat may block on HTTP for seconds, hence a thread."""
    term_on_parent_death()

    def watch() -> None:
        while not parent_gone(parent_pid):
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="parallelix-node heartbeat")
    parser.add_argument("--node-id", type=int, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--connect", required=True)
    parser.add_argument("--interval-ms", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--first-seq", type=int, default=1)
    parser.add_argument("--node-version", help="for the User-Agent (saves reading package "
                                               "metadata)")
    args = parser.parse_args(argv)
    log_to_stderr("heartbeat")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the supervisor decides
    exit_with_parent(args.parent_pid)
    try:
        identity, secret_hex = read_handover(sys.stdin.buffer, 2)
        signer = Signer(bytes.fromhex(secret_hex.decode()))
    except (HandoverError, ValueError) as e:
        log.error("%s", e if isinstance(e, HandoverError) else "stdin did not carry a key")
        raise SystemExit(2) from None
    del secret_hex
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, m.MAX_SMALL_MESSAGE)
    sock.connect(args.connect)
    try:
        HeartbeatLoop(signer, args.node_id, args.coordinator, args.interval_ms / 1000, sock,
                      args.first_seq, args.node_version).run()
    except KeyboardInterrupt:
        pass
    finally:
        ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
