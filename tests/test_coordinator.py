"""How the node reads coordinator answers that PROTOCOL.md allows or that the real world sends
(proxies, terse bodies), against a real HTTP server on loopback answering as scripted."""
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from node.coordinator import (Call, Coordinator, CoordinatorError, Denied, Rejected, attach_call,
                              heartbeat_call, inbox_call, result_call)
from node.identity import Signer, new_secret
from tests.linkcall import link_call
from tests.nodeproc import is_event, run_daemon


class Scripted:
    """A loopback HTTP server: (method, path) -> (status, content type, body); records each
    call and its headers."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, str, bytes]]) -> None:
        self.routes, self.calls, self.headers = routes, [], []
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                script.calls.append((self.command, path, time.monotonic()))
                script.headers.append(dict(self.headers))
                status, ctype, body = script.routes.get((self.command, path),
                                                        (404, "text/plain", b"no route"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.calls if p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def j(status: int, obj) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()


HTML_403 = (403, "text/html", b"<html><body>403 Forbidden (cdn)</body></html>")


@pytest.fixture
def scripted():
    servers = []

    def make(routes):
        servers.append(Scripted(routes))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def blocking(url: str, call: Call):
    return Coordinator(url).call(call)


# Both transports read answers the same way: the heartbeat process's blocking client and the
# supervisor's event-loop link.
transports = pytest.mark.parametrize("send", [blocking, link_call], ids=["blocking", "loop"])


@transports
@pytest.mark.parametrize("answer", [(200, "text/plain", b""), (200, "text/plain", b"ok"),
                                    (202, "application/json", b"[]"), j(200, {"state": "active"})])
def test_any_2xx_to_a_heartbeat_or_result_is_success(scripted, send, answer):
    server = scripted({("POST", "/operator/heartbeat"): answer, ("POST", "/operator/result"): answer})
    signer = Signer(new_secret())
    beat = heartbeat_call(signer, 1, 1, {"busy": 0, "slots": 1, "served": 0})
    assert send(server.url, beat).status == answer[0]
    assert send(server.url, result_call({"nodeId": 1, "requestId": "r"})).status == answer[0]


@pytest.mark.parametrize("answer,raised,code", [
    (j(403, {"error": "not_staked"}), Denied, "not_staked"),
    (j(403, {"error": "key_mismatch", "detail": "x"}), Denied, "key_mismatch"),
    (j(404, {"error": "unknown_node"}), Denied, "unknown_node"),
    (HTML_403, CoordinatorError, None), ((404, "text/plain", b"not here"), CoordinatorError, None),
    (j(403, {"error": "rate_limited"}), CoordinatorError, None),
    (j(400, {"error": "bad_poe"}), Rejected, "bad_poe"), (j(429, {"error": "slow"}), CoordinatorError, None),
    ((400, "text/html", b"<html>400 Bad Request (proxy)"), CoordinatorError, None),
    ((413, "text/html", b"<html>Request Entity Too Large"), CoordinatorError, None),
    (j(401, {"error": "unauthorized"}), CoordinatorError, None),
    (j(400, {"error": "weird_new_code"}), CoordinatorError, None),
    ((502, "text/html", b"bad gateway"), CoordinatorError, None)])
@transports
def test_only_protocol_denials_stop_the_node(scripted, send, answer, raised, code):
    server = scripted({("POST", "/operator/result"): answer})
    with pytest.raises(raised) as caught:
        send(server.url, result_call({"nodeId": 1, "requestId": "r"}))
    assert getattr(caught.value, "code", None) == code


@transports
def test_409_and_410_count_as_delivered_and_an_inbox_needs_json(scripted, send):
    server = scripted({("POST", "/operator/result"): j(409, {"error": "already_submitted"}),
                       ("GET", "/operator/inbox"): (200, "text/html", b"<html>")})
    assert send(server.url, result_call({"requestId": "r"})).status == 409
    with pytest.raises(CoordinatorError):
        send(server.url, inbox_call(Signer(new_secret()), 1, 0))


def node_routes(inbox, heartbeat=j(200, {"state": "active"})):
    return {("POST", "/operator/attach"): j(200, {"state": "active", "tier": 1,
                                                  "heartbeatIntervalMs": 500.0,
                                                  "pollIntervalMs": 1000}),
            ("GET", "/network"): j(200, {"chainId": 8453, "contracts": {}}),
            ("POST", "/operator/heartbeat"): heartbeat, ("GET", "/operator/inbox"): inbox}


def test_an_inbox_with_a_null_request_is_polled_at_the_poll_interval(scripted, node_home, standin):
    home, _ = node_home
    server = scripted(node_routes(inbox=j(200, {"request": None})))
    with run_daemon(home, 7, server.url, standin) as node:
        node.wait_event(is_event("attached"))
        start = server.count("/operator/inbox")
        time.sleep(3)  # an observation window: counting what happens in it
        polls = server.count("/operator/inbox") - start
        node.signal(signal.SIGTERM)
        assert node.wait_exit(30) == 0
    assert 1 <= polls <= 6  # one slot, pollIntervalMs 1000 +-20 %: about 3, never a spin


def test_a_proxy_403_page_on_heartbeats_does_not_stop_the_node(scripted, node_home, standin):
    home, _ = node_home
    server = scripted(node_routes(inbox=(204, "text/plain", b""), heartbeat=HTML_403))
    with run_daemon(home, 7, server.url, standin) as node:
        node.wait_event(is_event("attached"))
        failed = node.wait_event(is_event("heartbeat.failed"))
        node.wait_event(lambda e: is_event("heartbeat.failed")(e) and e.get("seq") == 3)
        assert node.proc.poll() is None
        node.signal(signal.SIGTERM)
        assert node.wait_exit(30) == 0
    assert failed["status"] == 403


def test_verify_says_when_something_else_answers_at_those_addresses(scripted, cli, node_home):
    page = (200, "text/html", b"<html>a web server</html>")
    server = scripted({("GET", "/network"): page, ("GET", "/api/version"): page})
    r = cli("verify", "--json", "--coordinator", server.url, "--ollama", server.url)
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 1
    assert "something other than Ollama" in checks["ollama"]["detail"]
    assert "something else answered" in checks["ollama"]["fix"]
    assert "not as a ParalleliX coordinator" in checks["coordinator"]["fix"]


@transports
def test_a_409_means_delivered_only_for_results(scripted, send):
    server = scripted({("POST", "/operator/attach"): j(409, {"error": "already_submitted"})})
    with pytest.raises(CoordinatorError):
        send(server.url, attach_call(Signer(new_secret()), 1, {}, "0x00"))


def test_intervals_the_json_reader_cannot_make_whole_fall_back_to_defaults(scripted, node_home,
                                                                           standin):
    home, _ = node_home
    routes = node_routes(inbox=(204, "text/plain", b""))
    routes[("POST", "/operator/attach")] = (200, "application/json",
                                            b'{"heartbeatIntervalMs": Infinity, "pollIntervalMs": NaN}')
    server = scripted(routes)
    with run_daemon(home, 7, server.url, standin) as node:
        attached = node.wait_event(is_event("attached"))
        node.signal(signal.SIGTERM)
        assert node.wait_exit(30) == 0
    assert (attached["heartbeat"], attached["poll"]) == ("10.0s", "1.0s")
