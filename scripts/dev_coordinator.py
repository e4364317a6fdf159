#!/usr/bin/env python3
"""A local ParalleliX coordinator implementing docs/protocol.md, for operators and tests.

It verifies everything a node sends with code of its own (scripts/protocol_verify.py, never
node/identity.py), hands out prompts through the inbox, keeps the first result per request,
and can inject faults (denials, 503s, lost acks, malformed inbox bodies) from flags or at
runtime through /_admin/. One line per call goes to stderr; a summary goes to stdout at exit.
For benchmarks, --verify-sample N recovers only 1 in N signatures of inbox polls and results.

    scripts/dev-coordinator --node 7=0xAbC... --prompt "Say hi" --exit-when-done
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a file, too
from scripts import protocol_verify as pv  # noqa: E402

STATUS = {
    "bad_request": 400, "bad_signature": 400, "bad_poe": 400,
    "not_staked": 403, "in_cooldown": 403, "retired": 403, "key_mismatch": 403,
    "unknown_node": 404, "not_found": 404, "method_not_allowed": 405,
    "already_submitted": 409, "expired": 410,
}
DENY_CODES = ("not_staked", "in_cooldown", "retired", "key_mismatch", "unknown_node")
FAILURE_CODES = ("model_not_found", "inference_failed", "timeout", "overloaded", "shutdown")
NETWORK = {
    "chainId": 8453,
    "contracts": {
        "NodeRegistryLocker": "0x5e1F0c9Dd4dC43bd3F11aa5B2ba2a0Fe2E4b8a11",
        "OperatorStakeRewardsV2": "0x7a3C0aD0B1e8c2f84Be0D7E3E1a6B5C4D9f2e822",
    },
    "version": "dev",
}
FAULT_FIELDS = (("failShare", "fail_share"), ("loseAcks", "lose_acks"), ("badJsonShare", "bad_json_share"),
                ("rejectResults", "reject_results"))
REDIRECTS = (301, 302, 303, 307, 308)
HOSTILE_INBOX = ("huge-length", "huge-chunked", "trickle")
HOSTILE_BYTES = 512 * 1024 * 1024   # what a hostile inbox answer offers (sent until refused)
TRICKLE_EVERY_S = 2.0
TRICKLE_BYTES = 1000
MAX_LONG_POLL_MS = 30_000
MAX_BODY = 64 * 1024 * 1024
DECIMAL = re.compile(r"[0-9]+")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ApiError(Exception):
    """A PROTOCOL.md error answer: `{"error": code, "detail": detail}` with the code's status."""

    def __init__(self, code: str, detail: str, *, injected: bool = False) -> None:
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.injected = code, detail, injected
        self.status = STATUS.get(code, 400)

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


# --- strict body reading ---------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Fields:
    """Typed access to one JSON object; every mismatch is a 400 bad_request naming the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ApiError("bad_request", f"{where} must be a JSON object, got {_type_name(data)}")
        self.data, self.where = data, where

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise ApiError("bad_request", f"{self.where}.{key} is missing")
        return self.data[key]

    def _bad(self, key: str, want: str) -> ApiError:
        got = self.data.get(key)
        return ApiError("bad_request", f"{self.where}.{key} must be {want}, got {_type_name(got)} {got!r:.60}")

    def int(self, key: str, minimum: int | None = None, maximum: int | None = None,
            optional: bool = False) -> int | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self._bad(key, f"an integer in [{minimum}, {maximum if maximum is not None else '...'}]")
        return value

    def str(self, key: str, optional: bool = False, nullable: bool = False,
            choices: tuple[str, ...] | None = None) -> str | None:
        value = self._get(key, optional)
        if value is None and (optional or nullable) and (key not in self.data or nullable):
            return None
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError("bad_request", f"{self.where}.{key} is not valid UTF-8 (lone surrogate)") from None
        if choices is not None and value not in choices:
            raise self._bad(key, "one of " + "|".join(choices))
        return value

    def bool(self, key: str) -> bool:
        value = self._get(key, False)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def obj(self, key: str, optional: bool = False) -> Fields | None:
        value = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return Fields(value, f"{self.where}.{key}")

    def list(self, key: str) -> list[Any]:
        value = self._get(key, False)
        if not isinstance(value, list):
            raise self._bad(key, "an array")
        return value


def check_manifest(manifest: dict[str, Any]) -> int:
    """Validate the documented manifest fields and types (unknown fields ignored); return the tier."""
    where = pv.find_float(manifest)
    if where:
        raise ApiError("bad_request", f"{where} is a floating-point number; the manifest allows none")
    m = Fields(manifest, "manifest")
    m.str("cliVersion")
    m.str("os", choices=("linux", "darwin"))
    m.str("arch")
    tier = m.int("tier", 1, 5)
    cpu = m.obj("cpu")
    cpu.str("brand")
    cpu.int("cores", 1)
    m.int("ramMiB", 0)
    for i, gpu in enumerate(m.list("gpus")):
        g = Fields(gpu, f"manifest.gpus[{i}]")
        g.int("index", 0)
        g.str("vendor")
        g.str("name")
        g.int("vramMiB", 0)
    models = m.list("models")
    for i, name in enumerate(models):
        if not isinstance(name, str):
            raise ApiError("bad_request", f"manifest.models[{i}] must be a string")
    m.int("workers", 1)
    if m.obj("ollama").str("version", nullable=True) is None and models:  # PROTOCOL.md
        raise ApiError("bad_request", "manifest.models must be empty when manifest.ollama.version is null")
    return tier


def check_metrics(metrics: Fields | None) -> None:
    if metrics is None:
        return
    for key in ("evalCount", "promptEvalCount", "totalDurationMs", "loadDurationMs"):
        metrics.int(key, 0, optional=True)
    for key in ("doneReason", "modelDigest"):
        metrics.str(key, optional=True)


@dataclass(frozen=True)
class AttachMsg:
    node_id: int
    address: str
    timestamp: int
    manifest: dict[str, Any]
    tier: int
    signature: str

    @classmethod
    def parse(cls, body: Any) -> AttachMsg:
        f = Fields(body, "body")
        address = f.str("address")
        if not pv.ADDRESS_RE.fullmatch(address):
            raise ApiError("bad_request", "body.address must be 0x + 40 hex")
        if not pv.is_checksum_address(address):
            raise ApiError("bad_request", f"body.address {address} is not EIP-55 checksummed")
        manifest = f.obj("manifest").data
        return cls(f.int("nodeId", 1), address, f.int("timestamp", 0), manifest,
                   check_manifest(manifest), f.str("signature"))


@dataclass(frozen=True)
class HeartbeatMsg:
    node_id: int
    timestamp: int
    seq: int
    load: dict[str, Any]
    signature: str

    @classmethod
    def parse(cls, body: Any) -> HeartbeatMsg:
        f = Fields(body, "body")
        load = f.obj("load")
        counts: dict[str, Any] = {k: load.int(k, 0) for k in ("busy", "slots", "ready", "served")}
        counts["accepting"] = load.bool("accepting")
        return cls(f.int("nodeId", 1), f.int("timestamp", 0), f.int("seq", 1), counts, f.str("signature"))


@dataclass(frozen=True)
class InboxMsg:
    node_id: int
    timestamp: int
    signature: str
    wait_ms: int

    @classmethod
    def parse(cls, query: str, headers: Any) -> InboxMsg:
        params = parse_qs(query, keep_blank_values=True)
        node_id = _decimal_param(params, "nodeId", required=True)
        if node_id < 1:
            raise ApiError("bad_request", "nodeId must be a positive integer")
        wait_ms = _decimal_param(params, "waitMs", required=False)
        stamp = headers.get("X-Parallelix-Timestamp")
        signature = headers.get("X-Parallelix-Signature")
        if stamp is None or not DECIMAL.fullmatch(stamp.strip()):
            raise ApiError("bad_request", "header X-Parallelix-Timestamp must be integer Unix milliseconds")
        if signature is None:
            raise ApiError("bad_request", "header X-Parallelix-Signature is missing")
        return cls(node_id, int(stamp), signature.strip(), wait_ms or 0)


def _decimal_param(params: dict[str, list[str]], name: str, required: bool) -> int:
    values = params.get(name)
    if not values:
        if required:
            raise ApiError("bad_request", f"query parameter {name} is missing")
        return 0
    if len(values) > 1 or not DECIMAL.fullmatch(values[0]):
        raise ApiError("bad_request", f"query parameter {name} must be one decimal integer, got {values!r:.60}")
    return int(values[0])


@dataclass(frozen=True)
class ResultMsg:
    node_id: int
    request_id: str
    model: str
    result: str
    poe: str
    signature: str
    poe_signature: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class FailureMsg:
    node_id: int
    request_id: str
    code: str
    message: str
    signature: str


def parse_result_body(body: Any) -> ResultMsg | FailureMsg:
    f = Fields(body, "body")
    node_id, request_id = f.int("nodeId", 1), f.str("requestId")
    if "error" in f.data:
        if "result" in f.data:
            raise ApiError("bad_request", "body has both result and error")
        err = f.obj("error")
        return FailureMsg(node_id, request_id, err.str("code", choices=FAILURE_CODES),
                          err.str("message", optional=True) or "", f.str("signature"))
    metrics = f.obj("metrics", optional=True)
    check_metrics(metrics)
    return ResultMsg(node_id, request_id, f.str("model"), f.str("result"), f.str("poe"),
                     f.str("signature"), f.str("poeSignature"), metrics.data if metrics else {})


# --- coordinator state -------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    prompt: str
    system: str | None
    model: str
    options: dict[str, Any]
    timeout_ms: int

    @classmethod
    def parse(cls, data: Any, where: str, defaults: Settings) -> Prompt:
        f = Fields(data, where)
        unknown = set(f.data) - {"prompt", "system", "model", "options", "timeoutMs"}
        if unknown:
            raise ApiError("bad_request", f"{where} has unknown fields {sorted(unknown)}")
        options = f.obj("options", optional=True)
        return cls(f.str("prompt"), f.str("system", optional=True, nullable=True),
                   f.str("model", optional=True) or defaults.model,
                   options.data if options else dict(defaults.options),
                   f.int("timeoutMs", 1, optional=True) or defaults.deadline_ms)


@dataclass
class Request:
    id: str
    prompt: Prompt
    enqueued_ms: int
    state: str = "queued"            # queued | inflight | done | failed
    attempts: int = 0                # dispatches so far
    assignee: int | None = None      # node holding it while inflight
    expires_mono: float = 0.0        # deadline + grace, for re-queueing
    deadlines: dict[int, int] = field(default_factory=dict)   # nodeId -> deadlineMs of its last dispatch
    accepted: dict[str, Any] | None = None
    outcomes: list[str] = field(default_factory=list)

    def wire(self, deadline_ms: int) -> dict[str, Any]:
        """Exactly the fields of PROTOCOL.md's inbox answer."""
        p = self.prompt
        return {"id": self.id, "model": p.model, "prompt": p.prompt, "system": p.system,
                "options": p.options, "deadlineMs": deadline_ms}


@dataclass
class NodeState:
    node_id: int
    key_hash: str
    address: str | None = None       # proven by the first signature that verified
    tier: int | None = None
    last_seq: int = 0
    attaches: int = 0


@dataclass
class Settings:
    heartbeat_ms: int = 10_000
    poll_ms: int = 1_000
    model: str = "llama3.2"
    options: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.7, "num_predict": 256})
    deadline_ms: int = 120_000
    grace_ms: int = 2_000
    max_attempts: int = 3
    enforce_deadlines: bool = False
    verify_sample: int = 1           # recover 1 in N hot-path signatures (inbox polls, results)


@dataclass
class Faults:
    fail_share: float = 0.0
    lose_acks: float = 0.0
    bad_json_share: float = 0.0
    reject_results: float = 0.0
    deny: str | None = None
    deny_after_results: int | None = None
    redirect_results: tuple[int, str] | None = None   # (status, Location) for every result
    hostile_inbox: str | None = None                  # one of HOSTILE_INBOX for every inbox poll

    def public(self) -> dict[str, Any]:
        return {"failShare": self.fail_share, "loseAcks": self.lose_acks, "badJsonShare": self.bad_json_share,
                "rejectResults": self.reject_results, "deny": self.deny, "denyAfterResults": self.deny_after_results,
                "redirectResults": "%d=%s" % self.redirect_results if self.redirect_results else None,
                "hostileInbox": self.hostile_inbox}


@dataclass
class Call:
    """What one HTTP call is about, filled in as it is checked; it becomes the stderr line."""
    endpoint: str
    node_id: int | None = None
    request_id: str | None = None
    checks: list[str] = field(default_factory=list)

    def describe(self) -> str:
        rid = f" {self.request_id}" if self.request_id else ""
        node = self.node_id if self.node_id is not None else "?"
        return f"{self.endpoint}{rid} from node {node}"


class Coordinator:
    """All mutable state, behind one lock with one Condition (long polls wait on it)."""

    def __init__(self, settings: Settings, faults: Faults, seed: int | None = None) -> None:
        self.settings, self.faults = settings, faults
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._rng = random.Random(seed)
        self._nodes: dict[int, NodeState] = {}
        self._requests: dict[str, Request] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._inflight: dict[str, Request] = {}   # state "inflight": what a sweep looks at
        self._closed = False
        self._counts: collections.Counter[str] = collections.Counter()
        self._attaches: list[dict[str, Any]] = []
        self._heartbeats: list[dict[str, Any]] = []
        self._dispatches: list[dict[str, Any]] = []
        self._duplicates: collections.Counter[str] = collections.Counter()
        self._failures: list[dict[str, Any]] = []
        self._rejections: list[dict[str, Any]] = []
        self._expired: list[dict[str, Any]] = []
        self._redirected = 0
        self._hostile: list[dict[str, Any]] = []
        self._hot_seen: collections.Counter[str] = collections.Counter()  # per kind, for sampling

    # registry and queue ------------------------------------------------------------------
    def register_node(self, node_id: int, address_or_hash: str) -> str:
        key_hash = pv.normalize_key_hash(address_or_hash)
        with self._lock:
            self._nodes[node_id] = NodeState(node_id, key_hash)
        return key_hash

    def enqueue(self, prompt: Prompt, request_id: str | None = None) -> str:
        with self._cond:
            request_id = request_id or f"req_{len(self._requests) + 1:04d}"
            if request_id in self._requests:
                raise ApiError("bad_request", f"request id {request_id!r} is taken")
            self._requests[request_id] = Request(request_id, prompt, wall_ms())
            self._queue.append(request_id)
            self._cond.notify_all()
        return request_id

    # fault injection ---------------------------------------------------------------------
    def roll(self, kind: str) -> bool:
        """True with the configured probability of fault `kind` (seeded RNG, counted)."""
        with self._lock:
            share = getattr(self.faults, kind)
            hit = share > 0 and self._rng.random() < share
            if hit:
                self._counts[f"injected.{kind}"] += 1
            return hit

    def pick(self, options: int) -> int:
        with self._lock:
            return self._rng.randrange(options)

    def record_redirect(self) -> None:
        with self._lock:
            self._redirected += 1

    def record_hostile(self, mode: str, sent: int, seconds: float, outcome: str) -> None:
        with self._lock:
            self._hostile.append({"mode": mode, "bytesSent": sent, "seconds": round(seconds, 3),
                                  "outcome": outcome})

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            for key, value in changes.items():
                setattr(self.faults, key, value)
            return self.faults.public()

    def check_denied(self) -> None:
        with self._lock:
            code = self._deny_code()
            if code:
                self._counts["denied"] += 1
        if code:
            raise ApiError(code, "denied by the dev coordinator (fault injection)", injected=True)

    def _deny_code(self) -> str | None:
        f = self.faults
        if f.deny_after_results is None:
            return f.deny
        if self._counts["accepted"] >= f.deny_after_results:
            return f.deny or "not_staked"
        return None

    # verification ------------------------------------------------------------------------
    def _node(self, node_id: int) -> NodeState:
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                raise ApiError("unknown_node", f"nodeId {node_id} is not registered here (use --node {node_id}=ADDRESS)")
            return node

    def _check_timestamp(self, call: Call, timestamp: int) -> None:
        skew = timestamp - wall_ms()
        if abs(skew) > pv.TIMESTAMP_TOLERANCE_MS:
            raise ApiError("bad_request", f"timestamp {timestamp} is {skew:+d} ms from the coordinator's clock "
                                          f"(limit ±{pv.TIMESTAMP_TOLERANCE_MS})")
        call.checks.append(f"timestamp ok ({skew:+d} ms)")

    def _sampled(self, kind: str) -> bool:
        """Whether this inbox poll or result gets its signatures recovered: the first of each
        kind, then every Nth (--verify-sample N), deterministically."""
        with self._lock:
            seen = self._hot_seen[kind]
            self._hot_seen[kind] += 1
        return seen % self.settings.verify_sample == 0

    def _verify_hot(self, call: Call, node: NodeState, label: str, text: str, signature: str,
                    sampled: bool) -> None:
        """`_verify` when sampled; otherwise only the signature's format is checked (the
        elliptic-curve recovery is what a bench coordinator cannot afford per message)."""
        if sampled:
            self._verify(call, node, label, text, signature)
            return
        try:
            pv.signature_parts(signature)
        except pv.SignatureFormatError as exc:
            raise ApiError("bad_signature", f"{label}: {exc}") from None
        self.count("signatures.skipped")
        call.checks.append(f"{label} not sampled")

    def _verify(self, call: Call, node: NodeState, label: str, text: str, signature: str,
                claimed: str | None = None) -> str:
        """Recover the signer of `text` and require keccak(signer) == the registered nodeKeyHash.

        A signature recovering *some* key whose hash is not registered is 403 key_mismatch,
        except when the message can be shown to be signed over other text: on attach the
        body names the address (recovered != claimed), and once any signature from the node
        has verified, the registered key's address is known. Those are 400 bad_signature: a
        node bug, not an operator with the wrong key.
        """
        self.count("signatures.verified")
        try:
            signer = pv.recover_address(text, signature)
        except pv.SignatureFormatError as exc:
            raise ApiError("bad_signature", f"{label}: {exc}") from None
        if pv.key_hash_of_address(signer) == node.key_hash:
            with self._lock:
                node.address = signer
            call.checks.append(f"{label} ok")
            return signer
        expected = claimed or node.address
        if expected is not None and signer != expected:
            raise ApiError("bad_signature", f"{label} recovers {signer}, not {expected}; "
                                            f"the signed text must be {text!r}")
        raise ApiError("key_mismatch", f"{label} is by {signer}, whose nodeKeyHash "
                                       f"{pv.key_hash_of_address(signer)} is not the one registered for "
                                       f"node {node.node_id} ({node.key_hash})")

    # operator endpoints ------------------------------------------------------------------
    def attach(self, call: Call, msg: AttachMsg) -> dict[str, Any]:
        node = self._node(msg.node_id)
        self._check_timestamp(call, msg.timestamp)
        digest = pv.manifest_hash(msg.manifest)
        call.checks.append("manifest ok")
        self._verify(call, node, "signature", pv.attach_text(msg.node_id, msg.timestamp, digest),
                     msg.signature, claimed=msg.address)
        with self._lock:
            node.address, node.tier, node.last_seq = msg.address, msg.tier, 0
            node.attaches += 1
            self._attaches.append({"nodeId": msg.node_id, "address": msg.address, "tier": msg.tier,
                                   "manifestHash": digest, "manifest": msg.manifest, "timestamp": msg.timestamp,
                                   "receivedMs": wall_ms(), "receivedMono": time.monotonic()})
        return {"state": "active", "tier": msg.tier, "heartbeatIntervalMs": self.settings.heartbeat_ms,
                "pollIntervalMs": self.settings.poll_ms}

    def heartbeat(self, call: Call, msg: HeartbeatMsg) -> dict[str, Any]:
        node = self._node(msg.node_id)
        self._check_timestamp(call, msg.timestamp)
        self._verify(call, node, "signature", pv.heartbeat_text(msg.node_id, msg.timestamp), msg.signature)
        with self._lock:
            if msg.seq <= node.last_seq:
                self._counts["seqViolations"] += 1
                raise ApiError("bad_request", f"seq {msg.seq} does not increase (last {node.last_seq} since the "
                                              f"node's last attach)")
            gap = msg.seq - node.last_seq - 1 if node.last_seq else 0
            node.last_seq = msg.seq
            self._heartbeats.append({"nodeId": msg.node_id, "seq": msg.seq, "load": msg.load,
                                     "timestamp": msg.timestamp, "receivedMs": wall_ms(),
                                     "receivedMono": time.monotonic()})
        call.checks.append(f"seq {msg.seq} ok" + (f" ({gap} missed)" if gap else ""))
        return {"state": "active"}

    def verify_inbox(self, call: Call, msg: InboxMsg) -> None:
        node = self._node(msg.node_id)
        self._check_timestamp(call, msg.timestamp)
        self._verify_hot(call, node, "signature", pv.inbox_text(msg.node_id, msg.timestamp), msg.signature,
                         self._sampled("inbox"))

    def take_request(self, node_id: int, wait_ms: int) -> dict[str, Any] | None:
        """Hand out the next queued request, waiting up to `wait_ms` for one; None means 204."""
        end = time.monotonic() + min(wait_ms, MAX_LONG_POLL_MS) / 1000
        with self._cond:
            self._counts["polls"] += 1
            while True:
                self._sweep()
                if self._queue and not self._closed:
                    return self._dispatch(self._requests[self._queue.popleft()], node_id)
                remaining = end - time.monotonic()
                if remaining <= 0 or self._closed:
                    self._counts["emptyPolls"] += 1
                    return None
                self._cond.wait(min(remaining, self._next_expiry()))

    def _dispatch(self, req: Request, node_id: int) -> dict[str, Any]:
        timeout = req.prompt.timeout_ms
        deadline = wall_ms() + timeout
        req.state, req.assignee = "inflight", node_id
        self._inflight[req.id] = req
        req.attempts += 1
        req.expires_mono = time.monotonic() + (timeout + self.settings.grace_ms) / 1000
        req.deadlines[node_id] = deadline
        self._dispatches.append({"requestId": req.id, "nodeId": node_id, "attempt": req.attempts,
                                 "deadlineMs": deadline, "atMs": wall_ms(), "atMono": time.monotonic()})
        return req.wire(deadline)

    def _next_expiry(self) -> float:
        now = time.monotonic()
        pending = [r.expires_mono - now for r in self._inflight.values()]
        return max(0.01, min(pending, default=1.0))

    def _sweep(self) -> None:
        """Re-queue (or fail for good) every in-flight request whose deadline + grace has passed."""
        now = time.monotonic()
        for req in [r for r in self._inflight.values() if r.expires_mono <= now]:
            self._counts["deadlineRequeues"] += 1
            req.outcomes.append(f"node {req.assignee}: no answer by the deadline")
            self._give_back(req)

    def _give_back(self, req: Request) -> None:
        req.assignee = None
        del self._inflight[req.id]
        if req.attempts >= self.settings.max_attempts:
            req.state = "failed"
        else:
            req.state = "queued"
            self._queue.appendleft(req.id)
        self._cond.notify_all()

    def _dispatched(self, node_id: int, request_id: str) -> Request:
        with self._lock:
            req = self._requests.get(request_id)
            if req is None:
                raise ApiError("bad_request", f"unknown requestId {request_id!r}")
            if node_id not in req.deadlines:
                raise ApiError("bad_request", f"{request_id} was never dispatched to node {node_id}")
            return req

    def submit_result(self, call: Call, msg: ResultMsg) -> None:
        node = self._node(msg.node_id)
        req = self._dispatched(msg.node_id, msg.request_id)
        sampled = self._sampled("result")
        self._verify_hot(call, node, "signature", pv.result_text(msg.request_id), msg.signature, sampled)
        want = pv.expected_poe(msg.request_id, msg.result, msg.node_id)
        if msg.poe != want:
            raise ApiError("bad_poe", f"poe {msg.poe:.70} is not sha256(requestId || result || nodeId) = {want}")
        call.checks.append("poe ok")
        self._verify_hot(call, node, "poeSignature", pv.poe_text(msg.request_id, msg.poe), msg.poe_signature,
                         sampled)
        with self._cond:
            if req.accepted is not None:
                self._duplicates[req.id] += 1
                same = req.accepted["poe"] == msg.poe and req.accepted["nodeId"] == msg.node_id
                raise ApiError("already_submitted", f"{req.id} was accepted before"
                                                    + ("" if same else " (from another node or with other text)"))
            deadline = req.deadlines[msg.node_id]
            if self.settings.enforce_deadlines and wall_ms() > deadline:
                self._expired.append({"requestId": req.id, "nodeId": msg.node_id, "lateMs": wall_ms() - deadline})
                raise ApiError("expired", f"{req.id} deadline {deadline} has passed")
            if msg.model != req.prompt.model:
                call.checks.append(f"model {msg.model!r} differs from requested {req.prompt.model!r}")
            req.accepted = {"nodeId": msg.node_id, "model": msg.model, "result": msg.result, "poe": msg.poe,
                            "signature": msg.signature, "poeSignature": msg.poe_signature,
                            "metrics": msg.metrics, "attempt": req.attempts, "acceptedMs": wall_ms(),
                            "acceptedMono": time.monotonic()}
            if req.state == "queued":
                self._queue.remove(req.id)
            self._inflight.pop(req.id, None)
            req.state, req.assignee = "done", None
            req.outcomes.append(f"node {msg.node_id}: result accepted")
            self._counts["accepted"] += 1
            self._cond.notify_all()

    def report_failure(self, call: Call, msg: FailureMsg) -> str:
        node = self._node(msg.node_id)
        req = self._dispatched(msg.node_id, msg.request_id)
        self._verify(call, node, "signature", pv.error_text(msg.request_id, msg.code), msg.signature)
        with self._cond:
            self._failures.append({"requestId": req.id, "nodeId": msg.node_id, "code": msg.code,
                                   "message": msg.message, "atMs": wall_ms()})
            if req.accepted is not None:
                raise ApiError("already_submitted", f"{req.id} already has an accepted result")
            if req.state != "inflight" or req.assignee != msg.node_id:
                self._counts["staleFailureReports"] += 1
                return "stale (request no longer held by this node), ignored"
            req.outcomes.append(f"node {msg.node_id}: failed {msg.code}")
            self._give_back(req)
            return "re-queued" if req.state == "queued" else f"failed for good after {req.attempts} attempts"

    def record_rejection(self, call: Call, err: ApiError) -> None:
        with self._lock:
            if err.injected:
                return
            self._counts[f"rejected.{err.code}"] += 1
            if err.code in ("already_submitted", "expired"):
                return
            self._rejections.append({"endpoint": call.endpoint, "nodeId": call.node_id,
                                     "requestId": call.request_id, "error": err.code, "detail": err.detail,
                                     "atMs": wall_ms()})

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    # lifecycle ---------------------------------------------------------------------------
    def all_final(self) -> bool:
        with self._lock:
            self._sweep()
            return bool(self._requests) and all(r.state in ("done", "failed") for r in self._requests.values())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def counts(self) -> dict[str, Any]:
        """The figures of `stats` that are plain numbers: cheap to ask often (a soak does)."""
        with self._lock:
            self._sweep()
            states = collections.Counter(r.state for r in self._requests.values())
            return {"requests": len(self._requests), "queued": states["queued"],
                    "inflight": states["inflight"], "done": states["done"],
                    "failedFinal": states["failed"], "accepted": self._counts["accepted"],
                    "duplicateCount": sum(self._duplicates.values()),
                    "deadlineRequeues": self._counts["deadlineRequeues"],
                    "failureReports": len(self._failures), "heartbeats": len(self._heartbeats), "polls": self._counts["polls"],
                    "verificationFailures": len(self._rejections), "signatures": self._signatures(),
                    "injected": {wire: self._counts[f"injected.{attr}"] for wire, attr in FAULT_FIELDS}}

    def _signatures(self) -> dict[str, int]:
        """Signatures recovered and, under --verify-sample, left unrecovered (format checked)."""
        return {"verifyEvery": self.settings.verify_sample, "verified": self._counts["signatures.verified"],
                "skipped": self._counts["signatures.skipped"]}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._sweep()
            reqs = self._requests.values()
            by_state = {s: [r.id for r in reqs if r.state == s] for s in ("queued", "inflight", "done", "failed")}
            failures_by_code = collections.Counter(f["code"] for f in self._failures)
            return {
                "nodes": {str(n.node_id): {"nodeKeyHash": n.key_hash, "address": n.address, "tier": n.tier,
                                           "attaches": n.attaches, "lastSeq": n.last_seq}
                          for n in self._nodes.values()},
                "attaches": list(self._attaches),
                "heartbeats": list(self._heartbeats),
                "polls": self._counts["polls"], "emptyPolls": self._counts["emptyPolls"],
                "dispatches": list(self._dispatches),
                "requests": {r.id: {"state": r.state, "attempts": r.attempts, "assignee": r.assignee,
                                    "prompt": r.prompt.prompt, "model": r.prompt.model, "outcomes": list(r.outcomes)}
                             for r in reqs},
                "results": {r.id: dict(r.accepted) for r in reqs if r.accepted is not None},
                "accepted": self._counts["accepted"],
                "duplicates": dict(self._duplicates),
                "duplicateCount": sum(self._duplicates.values()),
                "expired": list(self._expired),
                "failureReports": list(self._failures),
                "failures": dict(failures_by_code),
                "staleFailureReports": self._counts["staleFailureReports"],
                "deadlineRequeues": self._counts["deadlineRequeues"],
                "failedFinal": by_state["failed"],
                "queued": list(self._queue), "inflight": by_state["inflight"],
                "pending": len(by_state["queued"]) + len(by_state["inflight"]),
                "verificationFailures": list(self._rejections),
                "signatures": self._signatures(),
                "seqViolations": self._counts["seqViolations"],
                "denied": self._counts["denied"],
                "injected": {wire: self._counts[f"injected.{attr}"] for wire, attr in FAULT_FIELDS},
                "faults": self.faults.public(),
                "redirected": self._redirected,
                "hostileInbox": list(self._hostile),
                "done": bool(self._requests) and not by_state["queued"] and not by_state["inflight"],
            }


def summary_lines(stats: dict[str, Any]) -> list[str]:
    reqs = stats["requests"]
    failures = ", ".join(f"{k}={v}" for k, v in sorted(stats["failures"].items())) or "none"
    inj, sigs = stats["injected"], stats["signatures"]
    return [
        "dev-coordinator summary",
        f"  requests: {len(reqs)} total, {stats['accepted']} accepted, {len(stats['failedFinal'])} failed for good, "
        f"{stats['pending']} pending",
        f"  results: {stats['accepted']} accepted, {stats['duplicateCount']} duplicate (409), "
        f"{len(stats['expired'])} expired (410)",
        f"  failure reports: {len(stats['failureReports'])} ({failures}); deadline re-queues: {stats['deadlineRequeues']}",
        f"  nodes: {len(stats['attaches'])} attach(es), {len(stats['heartbeats'])} heartbeat(s), "
        f"{stats['polls']} poll(s) ({stats['emptyPolls']} empty)",
        f"  rejected: {len(stats['verificationFailures'])} verification failure(s), {stats['denied']} denied",
        f"  signatures: {sigs['verified']} verified, {sigs['skipped']} not sampled (1 in {sigs['verifyEvery']})",
        f"  injected: {inj['failShare']} x 503, {inj['loseAcks']} lost ack(s), {inj['badJsonShare']} bad inbox body(ies)",
    ]


# --- HTTP ----------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    body: Any = None            # dict -> JSON, bytes -> raw, None -> empty
    note: str = ""
    drop: bool = False          # close the connection without answering
    headers: dict[str, str] = field(default_factory=dict)
    hostile: str | None = None  # stream one of HOSTILE_INBOX instead of a body


BAD_INBOX_BODIES: tuple[bytes, ...] = (
    b'{"request": {"id": "req_',                       # truncated JSON
    b"<html>502 Bad Gateway</html>",                  # not JSON at all
    json.dumps({"request": {"id": 17, "model": None, "prompt": ["x"], "system": 3,
                            "options": "fast", "deadlineMs": "soon"}}).encode(),
    json.dumps({"request": "req_0001"}).encode(),
)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], coord: Coordinator, base_path: str) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.coord, self.base_path = coord, base_path.rstrip("/")
        self.closing = False
        self._active = 0
        self._active_cond = threading.Condition()

    def track(self, delta: int) -> None:
        with self._active_cond:
            self._active += delta
            self._active_cond.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self._active_cond:
            self._active_cond.wait_for(lambda: self._active == 0, timeout)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY, Nagle meets the client's
    # delayed ACK and each answer on a kept-alive connection stalls ~40 ms.
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # the per-call line replaces the access log
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # plumbing ----------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        self.server.track(+1)
        try:
            url = urlsplit(self.path)
            path = url.path
            base = self.server.base_path
            if base and (path == base or path.startswith(base + "/")):
                path = path[len(base):] or "/"
            raw = self._read_body() if method == "POST" else b""
            if raw is None:
                return
            route = ROUTES.get(path)
            if route is None:
                reply = Reply(404, ApiError("not_found", f"no endpoint {path}").body())
            elif route[0] != method:
                reply = Reply(405, ApiError("method_not_allowed", f"{path} takes {route[0]}").body())
            else:
                try:
                    reply = route[1](self, url.query, raw)
                except Exception as exc:  # a bug here must not look like a network fault to the node
                    log(f"{method} {path}: INTERNAL ERROR {exc!r}")
                    reply = Reply(500, {"error": "internal", "detail": repr(exc)})
            self._send(reply)
        finally:
            self.server.track(-1)

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not DECIMAL.fullmatch(length) or int(length) > MAX_BODY:
            self.close_connection = True
            self._send(Reply(400, ApiError("bad_request", "a POST needs a Content-Length up to 64 MiB").body()))
            return None
        return self.rfile.read(int(length))

    def _json(self, raw: bytes, strict_type: bool = True) -> Any:
        """Parse a JSON body; operator calls must say application/json, admin calls (curl) need not."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if strict_type and ctype != "application/json":
            raise ApiError("bad_request", f"Content-Type must be application/json, got {ctype or 'none'!r}")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError("bad_request", f"body is not UTF-8 JSON: {exc}") from None

    def _send(self, reply: Reply) -> None:
        if reply.hostile:
            return self._send_hostile(reply.hostile)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if isinstance(reply.body, bytes):
            data = reply.body
        elif reply.body is None:
            data = b""
        else:
            data = json.dumps(reply.body, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        if self.server.closing:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if data and reply.status != 204:
            self.wfile.write(data)

    def _send_hostile(self, mode: str) -> None:
        """An inbox answer no node should read whole: 512 MiB announced by Content-Length or
        sent chunked, or a valid start trickled one byte every 2 s. It goes on until the node
        hangs up; what happened is in stats["hostileInbox"]."""
        self.close_connection = True
        started, sent = time.monotonic(), 0
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "huge-chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:  # a trickle announces a modest answer: only its pace is hostile
            self.send_header("Content-Length", str(TRICKLE_BYTES if mode == "trickle" else HOSTILE_BYTES))
        self.end_headers()
        block = b"{" + b" " * (64 * 1024 - 1)
        outcome = "sent whole"
        try:
            while sent < (TRICKLE_BYTES if mode == "trickle" else HOSTILE_BYTES):
                if mode == "trickle":
                    self.wfile.write(b"{" if sent == 0 else b" ")
                    self.wfile.flush()
                    sent += 1
                    time.sleep(TRICKLE_EVERY_S)
                    continue
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if mode == "huge-chunked" else block)
                sent += len(block)
                block = b" " * len(block)
        except OSError:
            outcome = "client hung up"
        seconds = time.monotonic() - started
        self.server.coord.record_hostile(mode, sent, seconds, outcome)
        log(f"inbox: hostile answer {mode}: {outcome} after {sent} bytes, {seconds:.1f} s")

    def _operator(self, call: Call, work: Callable[[], Reply]) -> Reply:
        """Common path of every operator call: injected 503, errors as PROTOCOL.md bodies, one log line."""
        coord = self.server.coord
        if coord.roll("fail_share"):
            log(f"{call.describe()}: injected 503 (--fail-share)")
            return Reply(503, {"error": "unavailable", "detail": "injected fault (--fail-share)"})
        try:
            reply = work()
        except ApiError as err:
            coord.record_rejection(call, err)
            verdict = "DENIED" if err.injected else "REJECTED"
            log(f"{call.describe()}: {', '.join(call.checks + [''])}{verdict} {err.status} {err.code}: {err.detail}")
            return Reply(err.status, err.body())
        log(f"{call.describe()}: {', '.join(call.checks)} -> {reply.status} {reply.note}".rstrip())
        return reply

    # endpoints ---------------------------------------------------------------------------
    def network(self, query: str, raw: bytes) -> Reply:
        return Reply(200, NETWORK)

    def attach(self, query: str, raw: bytes) -> Reply:
        call = Call("attach")

        def work() -> Reply:
            body = self._json(raw)
            call.node_id = body.get("nodeId") if isinstance(body, dict) else None
            msg = AttachMsg.parse(body)
            self.server.coord.check_denied()
            answer = self.server.coord.attach(call, msg)
            return Reply(200, answer, f"active, tier {answer['tier']}")
        return self._operator(call, work)

    def heartbeat(self, query: str, raw: bytes) -> Reply:
        call = Call("heartbeat")

        def work() -> Reply:
            body = self._json(raw)
            call.node_id = body.get("nodeId") if isinstance(body, dict) else None
            msg = HeartbeatMsg.parse(body)
            self.server.coord.check_denied()
            return Reply(200, self.server.coord.heartbeat(call, msg), "active")
        return self._operator(call, work)

    def inbox(self, query: str, raw: bytes) -> Reply:
        call = Call("inbox")

        def work() -> Reply:
            msg = InboxMsg.parse(query, self.headers)
            call.node_id = msg.node_id
            coord = self.server.coord
            coord.check_denied()
            coord.verify_inbox(call, msg)
            if coord.faults.hostile_inbox:
                return Reply(200, None, f"hostile answer {coord.faults.hostile_inbox}",
                             hostile=coord.faults.hostile_inbox)
            if coord.roll("bad_json_share"):
                return Reply(200, BAD_INBOX_BODIES[coord.pick(len(BAD_INBOX_BODIES))], "injected malformed body")
            request = coord.take_request(msg.node_id, msg.wait_ms)
            if request is None:
                return Reply(204, None, "nothing waiting")
            call.request_id = request["id"]
            return Reply(200, {"request": request}, "dispatched")
        return self._operator(call, work)

    def result(self, query: str, raw: bytes) -> Reply:
        call = Call("result")

        def work() -> Reply:
            body = self._json(raw)
            if isinstance(body, dict):
                call.node_id, call.request_id = body.get("nodeId"), body.get("requestId")
            redirect = self.server.coord.faults.redirect_results
            if redirect:
                self.server.coord.record_redirect()
                return Reply(redirect[0], {"moved": redirect[1]},
                             f"redirected to {redirect[1]} (injected, not recorded)",
                             headers={"Location": redirect[1]})
            msg = parse_result_body(body)
            coord = self.server.coord
            coord.check_denied()
            if isinstance(msg, FailureMsg):
                call.endpoint = f"failure {msg.code}"
                note = coord.report_failure(call, msg)
                return Reply(200, {"accepted": True}, note)
            if coord.roll("reject_results"):
                return Reply(400, {"error": "bad_poe", "detail": "injected: result refused"},
                             "rejected 400 bad_poe (injected)")
            coord.submit_result(call, msg)
            if coord.roll("lose_acks"):
                drop = coord.pick(2) == 0
                return Reply(500, {"error": "internal", "detail": "injected: result recorded, ack lost"},
                             "accepted, ack lost (" + ("connection dropped" if drop else "answered 500") + ")",
                             drop=drop)
            return Reply(200, {"accepted": True}, "accepted")
        return self._operator(call, work)

    # admin -------------------------------------------------------------------------------
    def _admin(self, name: str, work: Callable[[], Any]) -> Reply:
        try:
            answer = work()
        except ApiError as err:
            log(f"admin {name}: REJECTED {err.status} {err.code}: {err.detail}")
            return Reply(err.status, err.body())
        if name != "stats":
            log(f"admin {name}: {json.dumps(answer)}")
        return Reply(200, answer)

    def admin_stats(self, query: str, raw: bytes) -> Reply:
        return self._admin("stats", self.server.coord.stats)

    def admin_counts(self, query: str, raw: bytes) -> Reply:
        return self._admin("stats", self.server.coord.counts)

    def admin_enqueue(self, query: str, raw: bytes) -> Reply:
        """Queue a prompt; `requestId` picks its id (any string, as a hostile coordinator could)."""
        coord = self.server.coord

        def work() -> dict[str, Any]:
            data = self._json(raw, strict_type=False)
            chosen = data.pop("requestId", None) if isinstance(data, dict) else None
            if chosen is not None and not isinstance(chosen, str):
                raise ApiError("bad_request", "body.requestId must be a string")
            return {"requestId": coord.enqueue(Prompt.parse(data, "body", coord.settings), chosen)}
        return self._admin("enqueue", work)

    def admin_deny(self, query: str, raw: bytes) -> Reply:
        def work() -> dict[str, Any]:
            f = Fields(self._json(raw, strict_type=False), "body")
            code = f.str("code", nullable=True, choices=DENY_CODES)
            after = f.int("afterResults", 0, optional=True)
            return self.server.coord.set_faults(deny=code, deny_after_results=after)
        return self._admin("deny", work)

    def admin_faults(self, query: str, raw: bytes) -> Reply:
        def work() -> dict[str, Any]:
            f = Fields(self._json(raw, strict_type=False), "body")
            changes = {}
            if "redirectResults" in f.data:
                value = f.data["redirectResults"]
                try:
                    changes["redirect_results"] = None if value is None else _redirect(value)
                except ValueError as exc:
                    raise ApiError("bad_request", str(exc)) from None
            if "hostileInbox" in f.data:
                changes["hostile_inbox"] = f.str("hostileInbox", nullable=True, choices=HOSTILE_INBOX)
            for wire, attr in FAULT_FIELDS:
                if wire in f.data:
                    value = f.data[wire]
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                        raise ApiError("bad_request", f"body.{wire} must be a number in [0, 1]")
                    changes[attr] = float(value)
            return self.server.coord.set_faults(**changes)
        return self._admin("faults", work)

    def admin_nodes(self, query: str, raw: bytes) -> Reply:
        def work() -> dict[str, Any]:
            f = Fields(self._json(raw, strict_type=False), "body")
            node_id, key = f.int("nodeId", 1), f.str("key")
            try:
                return {"nodeId": node_id, "nodeKeyHash": self.server.coord.register_node(node_id, key)}
            except ValueError as exc:
                raise ApiError("bad_request", str(exc)) from None
        return self._admin("nodes", work)


def _redirect(value: Any) -> tuple[int, str]:
    """STATUS=URL for --redirect-results and /_admin/faults."""
    status, _, url = str(value).partition("=")
    if not status.isdigit() or int(status) not in REDIRECTS or not url.startswith(("http://", "https://")):
        raise ValueError(f"redirectResults must be STATUS=URL with STATUS in {REDIRECTS}")
    return int(status), url


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


ROUTES: dict[str, tuple[str, Callable[[Handler, str, bytes], Reply]]] = {
    "/network": ("GET", Handler.network),
    "/operator/attach": ("POST", Handler.attach),
    "/operator/heartbeat": ("POST", Handler.heartbeat),
    "/operator/inbox": ("GET", Handler.inbox),
    "/operator/result": ("POST", Handler.result),
    "/_admin/stats": ("GET", Handler.admin_stats),
    "/_admin/counts": ("GET", Handler.admin_counts),
    "/_admin/enqueue": ("POST", Handler.admin_enqueue),
    "/_admin/deny": ("POST", Handler.admin_deny),
    "/_admin/faults": ("POST", Handler.admin_faults),
    "/_admin/nodes": ("POST", Handler.admin_nodes),
}


# --- command line --------------------------------------------------------------------------------

def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share is a number in [0, 1]")
    return value


def _positive(text: str) -> int:
    if not DECIMAL.fullmatch(text) or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(text)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _node_arg(text: str) -> tuple[int, str]:
    node_id, sep, key = text.partition("=")
    if not sep or not DECIMAL.fullmatch(node_id) or int(node_id) < 1:
        raise argparse.ArgumentTypeError("expected NODEID=ADDRESS or NODEID=NODEKEYHASH")
    try:
        pv.normalize_key_hash(key)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return int(node_id), key


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dev-coordinator", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="listen address (loopback; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default)")
    p.add_argument("--base-path", default="", help="also serve every endpoint under this prefix, e.g. /api")
    p.add_argument("--node", action="append", type=_node_arg, default=[], metavar="NODEID=ADDRESS|HASH",
                   help="register a node: its address or nodeKeyHash (repeatable)")
    p.add_argument("--prompt", action="append", default=[], help="queue a prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="JSONL {prompt, system?, model?, options?, timeoutMs?} "
                                                     "or plain text, one prompt per line")
    p.add_argument("--model", default="llama3.2", help="model for prompts that name none")
    p.add_argument("--options", type=_json_object, default={"temperature": 0.7, "num_predict": 256},
                   help="Ollama options (JSON object) for prompts that give none")
    p.add_argument("--deadline-ms", type=int, default=120_000, help="request deadline relative to dispatch")
    p.add_argument("--grace-ms", type=int, default=2_000, help="extra wait past a deadline before re-queueing")
    p.add_argument("--max-attempts", type=int, default=3, help="dispatches before a request fails for good")
    p.add_argument("--enforce-deadlines", action="store_true", help="answer 410 expired to late results")
    p.add_argument("--verify-sample", type=_positive, default=1, metavar="N",
                   help="bench mode: recover the signatures of 1 in N inbox polls and results (the "
                        "first always); the others get every check but the recovery. Attach, "
                        "heartbeats and failure reports are always verified. Default 1: every one")
    p.add_argument("--heartbeat-ms", type=int, default=10_000, help="heartbeatIntervalMs given at attach")
    p.add_argument("--poll-ms", type=int, default=1_000, help="pollIntervalMs given at attach")
    p.add_argument("--deny", choices=DENY_CODES, help="answer every operator call with this error")
    p.add_argument("--deny-after-results", type=int, metavar="N",
                   help="deny only after N accepted results (code from --deny, default not_staked)")
    p.add_argument("--fail-share", type=_share, default=0.0, help="share of operator calls answered 503")
    p.add_argument("--lose-acks", type=_share, default=0.0,
                   help="share of accepted results answered 500 or with a dropped connection")
    p.add_argument("--bad-json-share", type=_share, default=0.0, help="share of inbox polls answered malformed")
    p.add_argument("--reject-results", type=_share, default=0.0,
                   help="share of results answered 400 bad_poe without recording them")
    p.add_argument("--redirect-results", type=_redirect, metavar="STATUS=URL",
                   help="answer every result with this redirect (e.g. 307=http://127.0.0.1:9/), "
                        "recording nothing")
    p.add_argument("--hostile-inbox", choices=HOSTILE_INBOX,
                   help="answer every inbox poll with 512 MiB (announced or chunked) or a trickle")
    p.add_argument("--seed", type=int, help="seed of the fault-injection RNG")
    p.add_argument("--exit-when-done", action="store_true",
                   help="exit 0 once every queued request is accepted or failed for good")
    p.add_argument("--summary-json", type=Path, help="write the final stats JSON here at exit")
    return p.parse_args(argv)


def read_prompts(path: Path, settings: Settings) -> list[Prompt]:
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        where = f"{path}:{number}"
        prompts.append(Prompt.parse(data, where, settings) if isinstance(data, dict)
                       else Prompt(line, None, settings.model, dict(settings.options), settings.deadline_ms))
    return prompts


def build(args: argparse.Namespace) -> Coordinator:
    settings = Settings(heartbeat_ms=args.heartbeat_ms, poll_ms=args.poll_ms, model=args.model,
                        options=args.options, deadline_ms=args.deadline_ms, grace_ms=args.grace_ms,
                        max_attempts=args.max_attempts, enforce_deadlines=args.enforce_deadlines,
                        verify_sample=args.verify_sample)
    faults = Faults(args.fail_share, args.lose_acks, args.bad_json_share, args.reject_results, args.deny,
                    args.deny_after_results, args.redirect_results, args.hostile_inbox)
    coord = Coordinator(settings, faults, args.seed)
    for node_id, key in args.node:
        coord.register_node(node_id, key)
    prompts = [Prompt(text, None, settings.model, dict(settings.options), settings.deadline_ms) for text in args.prompt]
    if args.prompts_file:
        prompts += read_prompts(args.prompts_file, settings)
    for prompt in prompts:
        coord.enqueue(prompt)
    return coord


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        coord = build(args)
    except (OSError, ApiError) as exc:
        print(f"dev-coordinator: error: {exc}", file=sys.stderr)
        return 2
    server = Server((args.host, args.port), coord, args.base_path)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"LISTENING http://{host}:{server.server_address[1]}", flush=True)
    log(f"dev-coordinator: {len(coord.stats()['requests'])} request(s) queued, {len(args.node)} node(s) registered")
    if not args.node:
        log("dev-coordinator: no --node given: every node is unknown_node until POST /_admin/nodes registers one")
    while not stop.wait(0.05):
        if args.exit_when_done and coord.all_final():
            log("dev-coordinator: every request has a final outcome; exiting")
            break
    server.closing = True
    coord.close()                       # wakes long polls: they answer 204
    server.shutdown()
    server.wait_idle(5.0)               # let calls in progress finish their answers
    stats = coord.stats()
    print("\n".join(summary_lines(stats)), flush=True)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
