"""Attacks on the node's HTTP transport (issue 10, findings 2, 3, 5, 6 and 7's proxy part),
each performed against the real daemon: a dev-coordinator or Ollama stand-in in a hostile
mode, the node started as an operator would, and the harm checked not to happen."""
import signal
import time
from pathlib import Path

import pytest

from node.coordinator import CALL_TIMEOUT, MAX_INBOX_ANSWER
from node.daemon.outbox import unsettled
from scripts.proctree import tree_rss
from tests.coord import admin, start_dev_coordinator, wait_for
from tests.nodeproc import is_event, run_daemon
from tests.procs import wait_until
from tests.test_coordinator import Scripted, node_routes

NODE_ID = 7
LONG_POLL_S = 5.0  # node/daemon/supervisor.py LONG_POLL_MS


@pytest.fixture
def catcher():
    """A second host that would gladly take whatever is sent to it (and answer 200 HTML)."""
    page = (200, "text/html", b"<html>thanks</html>")
    server = Scripted({("POST", "/operator/result"): page, ("GET", "/operator/result"): page,
                       ("GET", "/operator/inbox"): page, ("POST", "/operator/attach"): page,
                       ("POST", "/operator/heartbeat"): page, ("GET", "/network"): page})
    yield server
    server.close()


def outbox_files(home: Path) -> list[dict]:
    return unsettled(home / "outbox")


@pytest.mark.parametrize("status", [307, 301])
def test_finding2_a_redirected_result_is_not_followed_and_stays_in_the_outbox(
        status, node_home, standin, catcher):
    """A 307 once sent the signed body to a second host and a 301 turned it into a GET; either
    way the other host's 200 page deleted the result. Now: never followed, kept, retried."""
    home, address = node_home
    target = catcher.url + "/operator/result"
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--prompt", "hello",
                               "--redirect-results", f"{status}={target}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            retry = node.wait_event(is_event("result.retry"))
            wait_for(url, lambda s: s["redirected"] >= 2, timeout=30, what="a second attempt")
            assert len(outbox_files(home)) == 1
            admin(url, "faults", {"redirectResults": None})
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="delivery")
            wait_until(lambda: not outbox_files(home), 10, "the outbox settled")  # unlogged
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert catcher.calls == []
    assert f"{status} on /operator/result redirecting to {target}" in retry["reason"]
    assert done["verificationFailures"] == []


@pytest.mark.parametrize("mode", ["huge-length", "huge-chunked"])
def test_finding3_a_huge_inbox_answer_is_refused_without_taking_the_memory(mode, node_home,
                                                                          standin):
    """512 MiB offered as one inbox answer took the tree to 2.2 GB. Now an announced length
    is refused before the body is read, a chunked one once it passes the cap."""
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--prompt", "hello",
                               "--hostile-inbox", mode) as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            retry = node.wait_event(is_event("inbox.retry"))
            peak = tree_rss(node.proc.pid)
            hostile = wait_for(url, lambda s: s["hostileInbox"], timeout=30,
                               what="the hostile answer's end")["hostileInbox"][0]
            admin(url, "faults", {"hostileInbox": None})
            wait_for(url, lambda s: s["accepted"] == 1, timeout=60, what="the request served")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert "answer refused" in retry["reason"]
    assert hostile["outcome"] == "client hung up"
    # what the kernel's socket buffers take besides the cap; nowhere near 512 MiB
    assert hostile["bytesSent"] < MAX_INBOX_ANSWER + 16 * 1024 * 1024
    if mode == "huge-length":
        assert hostile["bytesSent"] < 16 * 1024 * 1024
    assert peak < 400 * 1024 * 1024


def test_finding3_a_trickled_inbox_answer_ends_at_the_call_deadline(node_home, standin):
    """One byte every 2 s kept a call reading for 45 s and more: each read was bounded, not
    the answer. Now the whole call is (waitMs + CALL_TIMEOUT)."""
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}",
                               "--hostile-inbox", "trickle") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            retry = node.wait_event(is_event("inbox.retry"), timeout=CALL_TIMEOUT + 30)
            hostile = wait_for(url, lambda s: s["hostileInbox"], timeout=10,
                               what="the trickle's end")["hostileInbox"][0]
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert "timed out" in retry["reason"]
    assert hostile["outcome"] == "client hung up"
    # it stops at the deadline, give or take one trickle interval and a loaded machine
    assert hostile["seconds"] < CALL_TIMEOUT + LONG_POLL_S + 5


def test_finding3_one_huge_ndjson_line_fails_the_request_quickly(node_home, standin):
    """One 8 MiB line cost 59 s of CPU (requests' iter_lines is quadratic); a line is now
    split in linear time and refused past 4 MiB."""
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--max-attempts", "1",
                               "--prompt", "pad it [[long-line:8388608]]") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            done = wait_for(url, lambda s: s["failedFinal"], timeout=60, what="the failure")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    codes = [o for r in done["requests"].values() for o in r["outcomes"]]
    assert codes == [f"node {NODE_ID}: failed inference_failed"], codes
    assert "longer than 4194304 bytes" in done["failureReports"][0]["message"]


def test_finding5_a_stream_ended_by_the_connection_still_meets_its_deadline(node_home,
                                                                           standin):
    """With `Connection: close` (or HTTP/1.0) the watchdog found no socket and died: a 4 s
    deadline returned after 12 s. Now the budget holds the socket itself."""
    home, address = node_home
    deadline_ms = 3000
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--max-attempts", "1",
                               "--deadline-ms", str(deadline_ms),
                               "--prompt", "plain http/1.0 answer [[close]]",
                               "--prompt", "stalls [[close]] [[stall-after:1]]") as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
            done = wait_for(url, lambda s: s["accepted"] == 1 and s["failedFinal"],
                            timeout=60, what="one served, one timed out")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    served = next(iter(done["results"].values()))
    assert served["result"] == "echo: plain http/1.0 answer [[close]]"
    rid = done["failedFinal"][0]
    dispatched = next(d["atMs"] for d in done["dispatches"] if d["requestId"] == rid)
    failure = next(f for f in done["failureReports"] if f["requestId"] == rid)
    assert done["requests"][rid]["outcomes"] == [f"node {NODE_ID}: failed timeout"]
    assert failure["atMs"] - dispatched < deadline_ms + 2000


def test_finding6_a_lone_surrogate_from_ollama_is_replaced_and_the_worker_lives(node_home,
                                                                               standin):
    """`"done_reason": "\\ud800"` made the worker exit 1 and the request fail. Every string
    from Ollama is now made valid (U+FFFD), so the answer is signed and accepted."""
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}",
                               "--prompt", "odd [[surrogate]]") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=60, what="acceptance")
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    body = next(iter(done["results"].values()))
    assert body["result"] == "echo: odd [[surrogate]] \ufffd"
    assert body["metrics"]["doneReason"] == "\ufffd"
    assert done["verificationFailures"] == []
    assert not [e for e in node.events if is_event("worker.replaced")(e)]


def test_finding7_the_coordinator_client_ignores_proxy_settings_and_netrc(tmp_path, node_home,
                                                                         standin, catcher):
    """HTTP_PROXY and .netrc were honoured (trust_env): a loopback coordinator could be
    proxied in clear text, and .netrc credentials sent to it. Now neither is read."""
    home, _ = node_home
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login operator password hunter2\n")
    netrc.chmod(0o600)
    coordinator = Scripted(node_routes(inbox=(204, "text/plain", b"")))
    proxy = {k: catcher.url for k in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                      "ALL_PROXY", "all_proxy")}
    try:
        with run_daemon(home, NODE_ID, coordinator.url, standin,
                        env={**proxy, "NETRC": str(netrc), "NO_PROXY": "", "no_proxy": ""}) as node:
            node.wait_event(is_event("attached"))
            end = time.monotonic() + 30
            while coordinator.count("/operator/inbox") < 2 and time.monotonic() < end:
                time.sleep(0.1)  # polling the scripted server's call log
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    finally:
        coordinator.close()
    assert coordinator.count("/operator/inbox") >= 2
    assert catcher.calls == []
    assert all("Authorization" not in headers for headers in coordinator.headers)
