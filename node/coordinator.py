"""HTTP client for the coordinator (PROTOCOL.md). Blocking calls: the supervisor runs them off
its event loop, the heartbeat process in its own loop. Every answer is classified into one of
a few outcomes the callers act on, so no caller parses status codes itself."""
import email.utils
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from node.identity import Signer
from node.version import cli_version

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
# The only answers that stop the node (PROTOCOL.md, "Stopping on unstake").
DENIAL_CODES = ("not_staked", "in_cooldown", "retired", "key_mismatch", "unknown_node")
# The only answers that mean "this message is wrong, never send it again": anything else (a
# proxy's 413 or 401, a bare 400 page) is retried, so no signed result is shelved by mistake.
REJECTION_CODES = ("bad_request", "bad_signature", "bad_poe")


class CoordinatorError(Exception):
    """No usable answer: connection error, timeout, 5xx, or a body we cannot read. Retry later."""

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


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json_object(resp: requests.Response) -> dict[str, Any] | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _error_fields(resp: requests.Response) -> tuple[str, str]:
    body = _json_object(resp)
    if body is not None and isinstance(body.get("error"), str):
        detail = body.get("detail")
        return body["error"], detail if isinstance(detail, str) else ""
    return f"http_{resp.status_code}", resp.text.strip()[:200]


class Coordinator:
    """One coordinator base URL; a pooled HTTP session per thread (requests.Session is not
    thread-safe, and the supervisor polls and posts results from several threads)."""

    def __init__(self, base_url: str, timeout: float = READ_TIMEOUT) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["User-Agent"] = f"parallelix-node/{cli_version()}"
        return session

    def _call(self, method: str, path: str, *, json: Any = None, params: dict | None = None,
              headers: dict | None = None, read_timeout: float | None = None,
              body_required: bool = False) -> Answer:
        """Send one request and classify the answer (raises CoordinatorError/Denied/Rejected).

        Liberal in what it accepts: any 2xx is success, its body read only where the caller
        needs one. Only PROTOCOL.md's codes are final (denials stop the node, a 400 with a
        rejection code is never retried); any other answer (a proxy's error page) is retried."""
        try:
            resp = self.http.request(method, self.base + path, json=json, params=params,
                                     headers=headers,
                                     timeout=(CONNECT_TIMEOUT, read_timeout or self.timeout))
        except requests.Timeout:
            raise CoordinatorError(f"coordinator {self.base} timed out on {path}") from None
        except requests.RequestException as e:
            raise CoordinatorError(f"coordinator {self.base} unreachable on {path} "
                                   f"({type(e).__name__})") from None
        status = resp.status_code
        if 200 <= status < 300:
            body = _json_object(resp) if status != 204 else {}
            if body is None and body_required:
                raise CoordinatorError(f"coordinator sent a {status} without a JSON object on "
                                       f"{path}", status)
            return Answer(status, body or {})
        code, detail = _error_fields(resp)
        if status in (403, 404) and code in DENIAL_CODES:
            raise Denied(status, code, detail)
        if status in (409, 410) and path == "/operator/result":
            return Answer(status, {"error": code, "detail": detail})
        if status == 400 and code in REJECTION_CODES:
            raise Rejected(status, code, detail)
        raise CoordinatorError(f"coordinator answered {status} {code} on {path}", status)

    def network(self) -> NetworkInfo:
        """GET /network: public and unsigned; also yields latency and the server's clock."""
        started = time.monotonic()
        try:
            resp = self.http.get(self.base + "/network", timeout=(CONNECT_TIMEOUT, self.timeout))
        except requests.RequestException as e:
            raise CoordinatorError(f"coordinator {self.base} unreachable "
                                   f"({type(e).__name__})") from None
        latency = int((time.monotonic() - started) * 1000)
        if resp.status_code != 200:
            raise CoordinatorError(f"coordinator {self.base}/network answered {resp.status_code}",
                                   resp.status_code)
        body = _json_object(resp)
        if body is None:
            raise CoordinatorError(f"coordinator {self.base}/network sent no JSON object",
                                   resp.status_code)
        contracts = body.get("contracts")
        contracts = {k: v for k, v in contracts.items() if isinstance(v, str)} \
            if isinstance(contracts, dict) else {}
        chain = body.get("chainId")
        version = body.get("version")
        server_ms = None
        date = resp.headers.get("Date")
        if date:
            try:
                server_ms = int(email.utils.parsedate_to_datetime(date).timestamp() * 1000)
            except (TypeError, ValueError):
                server_ms = None
        return NetworkInfo(chain if isinstance(chain, int) and not isinstance(chain, bool) else None,
                           contracts, version if isinstance(version, str) else None,
                           latency, server_ms)

    # --- signed operator endpoints -----------------------------------------------------

    def attach(self, signer: Signer, node_id: int, manifest: dict[str, Any],
               manifest_hash: str) -> Answer:
        ts = now_ms()
        return self._call("POST", "/operator/attach", json={
            "nodeId": node_id, "address": signer.address, "timestamp": ts, "manifest": manifest,
            "signature": signer.sign(f"parallelix-node:attach:{node_id}:{ts}:{manifest_hash}")})

    def heartbeat(self, signer: Signer, node_id: int, seq: int, load: dict[str, int]) -> Answer:
        ts = now_ms()
        return self._call("POST", "/operator/heartbeat", json={
            "nodeId": node_id, "timestamp": ts, "seq": seq, "load": load,
            "signature": signer.sign(f"parallelix-node:heartbeat:{node_id}:{ts}")})

    def inbox(self, signer: Signer, node_id: int, wait_ms: int) -> Answer:
        ts = now_ms()
        params = {"nodeId": node_id}
        if wait_ms > 0:
            params["waitMs"] = wait_ms
        return self._call("GET", "/operator/inbox", params=params, headers={
            "X-Parallelix-Timestamp": str(ts),
            "X-Parallelix-Signature": signer.sign(f"parallelix-node:inbox:{node_id}:{ts}")},
            read_timeout=self.timeout + wait_ms / 1000, body_required=True)

    def post_result(self, body: dict[str, Any]) -> Answer:
        """POST an already signed result or failure report (signed once, posted many times)."""
        return self._call("POST", "/operator/result", json=body)
