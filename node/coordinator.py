"""HTTP client for the coordinator (PROTOCOL.md). Blocking calls: the supervisor runs them off
its event loop, the heartbeat process in its own loop. Every answer is classified into one of
a few outcomes the callers act on, so no caller parses status codes itself."""
import email.utils
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ipc import httpclient
from node.identity import Signer
from node.version import cli_version

CONNECT_TIMEOUT = 5.0
CALL_TIMEOUT = 15.0          # a whole call, from connecting to the last byte of the answer
MAX_ANSWER = 1024 * 1024     # any answer but the inbox's is a few hundred bytes
# An inbox answer carries a prompt of up to 8 MiB (node/daemon/inbox.py), which JSON escaping
# can make two to three times larger (\uXXXX escapes); anything beyond is refused unread.
MAX_INBOX_ANSWER = 32 * 1024 * 1024
# The only answers that stop the node (PROTOCOL.md, "Stopping on unstake").
DENIAL_CODES = ("not_staked", "in_cooldown", "retired", "key_mismatch", "unknown_node")
# The only answers that mean "this message is wrong, never send it again": anything else (a
# proxy's 413 or 401, a bare 400 page) is retried, so no signed result is shelved by mistake.
REJECTION_CODES = ("bad_request", "bad_signature", "bad_poe")


class CoordinatorError(Exception):
    """No usable answer: connection error, timeout, 3xx, 5xx, an answer too large, or a body
    we cannot read. Retry later."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Denied(Exception):
    """403 or 404 from the coordinator: this node must stop (PROTOCOL.md, "Stopping on unstake")."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(f"{code}" + (f": {detail}" if detail else ""))
        self.status, self.code, self.detail = status, code, detail


class Rejected(Exception):
    """A 4xx other than 403/404 (bad_request, bad_signature, bad_poe): a node bug, never retried."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(f"{status} {code}" + (f": {detail}" if detail else ""))
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class NetworkInfo:
    chain_id: int | None
    contracts: dict[str, str]
    version: str | None
    latency_ms: int
    server_time_ms: int | None  # from the Date header, for the clock-skew check


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class Answered(Protocol):
    """An HTTP answer read whole, from either client."""
    status: int
    body: bytes

    def header(self, name: str) -> str | None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """A JSON object body, else None. msgspec first (fast); what it refuses but JSON allows
    (a lone surrogate, a huge integer) goes to the json module, so such input reaches the
    checks that name it (node/daemon/inbox.py) instead of looking like a broken answer."""
    try:
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the stack
        return None
    return body if isinstance(body, dict) else None


def _error_fields(resp: Answered) -> tuple[str, str]:
    body = _json_object(resp.body)
    if body is not None and isinstance(body.get("error"), str):
        detail = body.get("detail")
        return body["error"], detail if isinstance(detail, str) else ""
    return f"http_{resp.status}", resp.body[:200].decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class Call:
    """One operator call, built once and sent by either transport: the blocking `Coordinator`
    below, or the supervisor's event-loop link (node/daemon/link.py)."""
    method: str
    path: str
    json: Any = None
    query: str = ""
    headers: dict[str, str] | None = None
    wait: float = 0.0                  # seconds the server may hold the call (a long poll)
    max_bytes: int = MAX_ANSWER
    body_required: bool = False

    def encoded(self) -> bytes | None:
        try:
            return msgspec.json.encode(self.json) if self.json is not None else None
        except (msgspec.EncodeError, UnicodeEncodeError, OverflowError, TypeError) as e:
            raise Rejected(0, "unencodable", f"the message cannot be sent as JSON: {e}") \
                from None


def attach_call(signer: Signer, node_id: int, manifest: dict[str, Any],
                manifest_hash: str) -> Call:
    ts = now_ms()
    return Call("POST", "/operator/attach", json={
        "nodeId": node_id, "address": signer.address, "timestamp": ts, "manifest": manifest,
        "signature": signer.sign(f"parallelix-node:attach:{node_id}:{ts}:{manifest_hash}")})


def heartbeat_call(signer: Signer, node_id: int, seq: int, load: dict[str, int]) -> Call:
    ts = now_ms()
    return Call("POST", "/operator/heartbeat", json={
        "nodeId": node_id, "timestamp": ts, "seq": seq, "load": load,
        "signature": signer.sign(f"parallelix-node:heartbeat:{node_id}:{ts}")})


def inbox_call(signer: Signer, node_id: int, wait_ms: int) -> Call:
    ts = now_ms()
    query = f"?nodeId={node_id}" + (f"&waitMs={wait_ms}" if wait_ms > 0 else "")
    return Call("GET", "/operator/inbox", query=query, headers={
        "X-Parallelix-Timestamp": str(ts),
        "X-Parallelix-Signature": signer.sign(f"parallelix-node:inbox:{node_id}:{ts}")},
        wait=max(wait_ms, 0) / 1000, max_bytes=MAX_INBOX_ANSWER, body_required=True)


def result_call(body: dict[str, Any]) -> Call:
    """POST an already signed result or failure report (signed once, posted many times)."""
    return Call("POST", "/operator/result", json=body)


def transport_error(base: str, path: str, e: httpclient.HttpError) -> CoordinatorError:
    """One line naming the coordinator and the call, for an answer that never came whole."""
    if isinstance(e, httpclient.Timeout):
        return CoordinatorError(f"coordinator {base} timed out on {path} ({e})")
    if isinstance(e, httpclient.TooLarge):
        return CoordinatorError(f"coordinator {base} answer refused on {path}: {e}")
    return CoordinatorError(f"coordinator {base} unreachable on {path} ({e})")


def classify(call: Call, resp: Answered) -> Answer:
    """The outcome of an answer (raises CoordinatorError/Denied/Rejected).

    Liberal in what it accepts: any 2xx is success, its body read only where the caller
    needs one. Only PROTOCOL.md's codes are final (denials stop the node, a 400 with a
    rejection code is never retried); any other answer (a proxy's error page, a redirect,
    which is never followed) is retried."""
    status, path = resp.status, call.path
    if 200 <= status < 300:
        body = _json_object(resp.body) if status != 204 else {}
        if body is None and call.body_required:
            raise CoordinatorError(f"coordinator sent a {status} without a JSON object on "
                                   f"{path}", status)
        return Answer(status, body or {})
    if 300 <= status < 400:
        where = (resp.header("Location") or "nowhere")[:200]
        raise CoordinatorError(f"coordinator answered {status} on {path} redirecting to "
                               f"{where}: redirects are never followed", status)
    code, detail = _error_fields(resp)
    if status in (403, 404) and code in DENIAL_CODES:
        raise Denied(status, code, detail)
    if status in (409, 410) and path == "/operator/result":
        return Answer(status, {"error": code, "detail": detail})
    if status == 400 and code in REJECTION_CODES:
        raise Rejected(status, code, detail)
    raise CoordinatorError(f"coordinator answered {status} {code} on {path}", status)


def user_agent(version: str | None = None) -> dict[str, str]:
    """The headers every call carries, made once per client."""
    return {"User-Agent": f"parallelix-node/{version or cli_version()}",
            "Content-Type": "application/json"}


class Coordinator:
    """One coordinator base URL, called blocking (the heartbeat process, the CLI). Each thread
    that calls it gets its own keep-alive connection (ipc/httpclient.py), kept for the
    thread's life."""

    def __init__(self, base_url: str, timeout: float = CALL_TIMEOUT,
                 version: str | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()
        self._headers = user_agent(version)

    @property
    def http(self) -> httpclient.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpclient.Client(connect_timeout=CONNECT_TIMEOUT,
                                                            headers=self._headers)
        return client

    def _send(self, method: str, path: str, body: bytes | None, headers: dict | None,
              timeout: float, max_bytes: int, query: str = "") -> httpclient.Response:
        try:
            return self.http.request(method, self.base + path + query, body=body,
                                     headers=headers, timeout=timeout, max_bytes=max_bytes)
        except httpclient.HttpError as e:
            raise transport_error(self.base, path, e) from None

    def call(self, call: Call) -> Answer:
        """Send one call and classify its answer (raises CoordinatorError/Denied/Rejected)."""
        resp = self._send(call.method, call.path, call.encoded(), call.headers,
                          self.timeout + call.wait, call.max_bytes, call.query)
        return classify(call, resp)

    def network(self) -> NetworkInfo:
        """GET /network: public and unsigned; also yields latency and the server's clock."""
        started = time.monotonic()
        resp = self._send("GET", "/network", None, None, self.timeout, MAX_ANSWER)
        latency = int((time.monotonic() - started) * 1000)
        if resp.status != 200:
            where = f" redirecting to {(resp.header('Location') or 'nowhere')[:200]} (never " \
                    "followed)" if 300 <= resp.status < 400 else ""
            raise CoordinatorError(f"coordinator {self.base}/network answered {resp.status}"
                                   f"{where}", resp.status)
        body = _json_object(resp.body)
        if body is None:
            raise CoordinatorError(f"coordinator {self.base}/network sent no JSON object",
                                   resp.status)
        contracts = body.get("contracts")
        contracts = {k: v for k, v in contracts.items() if isinstance(v, str)} \
            if isinstance(contracts, dict) else {}
        chain = body.get("chainId")
        version = body.get("version")
        server_ms = None
        date = resp.header("Date")
        if date:
            try:
                server_ms = int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
            except (TypeError, ValueError):
                server_ms = None
        return NetworkInfo(chain if isinstance(chain, int) and not isinstance(chain, bool) else None,
                           contracts, version if isinstance(version, str) else None,
                           latency, server_ms)
