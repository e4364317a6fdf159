"""Liveness and lifecycle of the daemon, with real processes: stopping on 403, signals,
worker supervision, the heartbeat process under load, the one-daemon-per-home lock."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.daemon.outbox import unsettled
from node.home import Home
from node.commands.livestatus import query_live
from tests.conftest import ROOT, clean_env
from tests.coord import admin, start_dev_coordinator, wait_for
from tests.nodeproc import is_event, run_daemon, wait_busy
from tests.procs import wait_until

NODE_ID = 7


def read_state(home: Path) -> dict:
    return json.loads((home / "state.json").read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); its state letter says it is dead
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX"


def live(home: Path) -> dict:
    doc = query_live(Home(home))
    assert doc is not None, "the daemon's control socket did not answer"
    return doc


@contextlib.contextmanager
def one_request_in_flight(node_home, standin, prompt: str, *daemon_args: str,
                          coordinator_args: tuple[str, ...] = ()):
    """A dev coordinator holding `prompt`, a daemon serving it; yields once it is in flight."""
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", *coordinator_args,
                               "--prompt", prompt) as (_, url):
        with run_daemon(home, NODE_ID, url, standin, *daemon_args) as node:
            wait_busy(home)  # a signal before the node has it gives it back (README)
            yield url, node


@pytest.mark.parametrize("code,state,status", [
    ("not_staked", "INITED", 0), ("in_cooldown", "COOLING", 0), ("retired", "RETIRED", 0),
    ("key_mismatch", None, 3), ("unknown_node", None, 3)])
def test_denied_while_serving_stops_with_the_right_state_and_status(node_home, standin, code,
                                                                   state, status):
    home, _ = node_home
    with one_request_in_flight(node_home, standin, "slow [[sleep:20000]]",
                               coordinator_args=("--heartbeat-ms", "1000")) as (url, node):
        denied_at = time.monotonic()
        admin(url, "deny", {"code": code})
        assert node.wait_exit(10) == status
        took = time.monotonic() - denied_at
    print(f"403 {code} -> exit {status} in {took:.2f}s")
    assert took < 5.0 + 1.0  # PROTOCOL.md: within 5 s (+1 s: the heartbeat interval here)
    if state:
        assert read_state(home)["state"] == state
        transition = node.wait_event(lambda e: e.get("event") == "state.transition"
                                     and e.get("to") == state)
        assert transition["reason"] == code
    else:
        refusal = node.wait_event(is_event("coordinator.refused"))
        fix = {"key_mismatch": "register this key's hash", "unknown_node": "--node-id"}[code]
        assert refusal["code"] == code and fix in json.dumps(refusal)
    assert not (home / "run" / "node.pid").exists()


def test_denied_at_attach_exits_without_serving(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--deny", "in_cooldown") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            assert node.wait_exit(20) == 0
    assert read_state(home)["state"] == "COOLING"


def test_sigterm_mid_request_delivers_the_result_then_exits_0(node_home, standin):
    home, _ = node_home
    with one_request_in_flight(node_home, standin, "finish me [[sleep:1500]]") as (url, node):
        node.signal(signal.SIGTERM)
        assert node.wait_exit(30) == 0
        done = wait_for(url, lambda s: s["accepted"] == 1, timeout=1, what="the result")
    assert done["failureReports"] == []
    assert unsettled(home / "outbox") == []


@pytest.mark.parametrize("at_once", [False, True])
def test_second_signal_gives_the_rest_back_as_shutdown(node_home, standin, at_once):
    with one_request_in_flight(node_home, standin, "too slow [[sleep:60000]]") as (url, node):
        node.signal(signal.SIGTERM)
        if not at_once:
            node.wait_event(is_event("stop.graceful"))
        node.signal(signal.SIGINT)
        assert node.wait_exit(30) == 0
        done = wait_for(url, lambda s: s["failureReports"], timeout=5, what="the report")
    assert [f["code"] for f in done["failureReports"]] == ["shutdown"]
    assert done["accepted"] == 0


def test_sigkill_of_a_busy_worker_is_served_by_another_once(node_home, standin):
    home, _ = node_home
    with one_request_in_flight(node_home, standin, "survive [[sleep:2000]]",
                               "--workers", "2") as (url, node):
        busy = next(w for w in live(home)["workers"] if w["busy"])
        os.kill(busy["pid"], signal.SIGKILL)
        done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="the retry")
        retry = node.wait_event(is_event("request.retry"))
        replaced = node.wait_event(lambda e: e.get("event") == "worker.replaced"
                                   and e.get("slot") == busy["slot"])
        node.wait_event(lambda e: e.get("event") == "worker.ready"
                        and e.get("slot") == busy["slot"])
    assert "killed by SIGKILL" in replaced["reason"] and busy["slot"] in str(retry)
    assert done["duplicateCount"] == 0 and done["failureReports"] == []


def test_sigstop_of_a_worker_is_detected_and_replaced(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
            node.wait_event(is_event("attached"))
            victim = live(home)["workers"][0]
            os.kill(victim["pid"], signal.SIGSTOP)
            hung = node.wait_event(lambda e: e.get("event") == "worker.hung"
                                   and e.get("slot") == victim["slot"], timeout=30)
            node.wait_event(lambda e: e.get("event") == "worker.ready"
                            and e.get("slot") == victim["slot"]
                            and e.get("pid") != victim["pid"], timeout=30)
            assert wait_until(lambda: gone(victim["pid"]), 10, "the stopped worker killed") >= 0
            assert live(home)["workers"][0]["pid"] != victim["pid"]
    assert "ping" in hung["reason"]


def test_supervisor_sigkill_takes_workers_and_heartbeat_down(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--heartbeat-ms", "500",
                               "--prompt", "orphan [[sleep:30000]]") as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
            wait_for(url, lambda s: len(s["heartbeats"]) >= 2 and s["inflight"],
                     what="heartbeats and a busy worker")
            doc = live(home)
            children = [w["pid"] for w in doc["workers"]] + [doc["heartbeatPid"]]
            roles = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                     for pid in children]
            assert ["workers.inference --slot w0" in roles[0], "--slot w1" in roles[1],
                    "node.daemon.heartbeat" in roles[2]] == [True, True, True], roles
            os.kill(node.proc.pid, signal.SIGKILL)
            node.wait_exit(10)
            took = wait_until(lambda: all(gone(p) for p in children), 10, "children to exit")
            gone_ms = time.time() * 1000
            time.sleep(1.5)  # three heartbeat intervals: long enough to see one if any came
            # a beat sent just before the heartbeat process died may still be counted now;
            # none may have been signed after every child was gone
            late = [b for b in wait_for(url, lambda s: True)["heartbeats"]
                    if b["timestamp"] > gone_ms]
            assert late == []
    assert took < 5.0


def test_heartbeats_keep_coming_while_workers_and_cores_are_busy(node_home, standin):
    home, address = node_home
    interval_ms = 1000
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--heartbeat-ms",
                                   str(interval_ms), *sum((["--prompt", f"busy {i} [[sleep:8000]]"]
                                                          for i in range(2)), [])) as (_, url):
            with run_daemon(home, NODE_ID, url, standin, "--workers", "2") as node:
                wait_busy(home, 2)
                t0 = time.monotonic()
                status = subprocess.run([sys.executable, "-m", "node.cli", "status", "--json"],
                                        cwd=ROOT, env=clean_env(home), capture_output=True,
                                        text=True, timeout=30)
                status_s = time.monotonic() - t0
                stats = wait_for(url, lambda s: s["accepted"] == 2, timeout=30,
                                 what="both served")
                node.signal(signal.SIGTERM)
                node.wait_exit(30)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    doc = json.loads(status.stdout)
    assert doc["live"] is True and all(w["busy"] for w in doc["workers"]), (doc, status_s)
    received = [h["receivedMono"] for h in stats["heartbeats"]]
    gaps = [b - a for a, b in zip(received, received[1:])]
    assert len(received) >= 6
    print(f"heartbeat gaps under load: max {max(gaps):.3f}s over {len(gaps)} "
          f"(interval {interval_ms / 1000}s); status took {status_s:.3f}s")
    assert max(gaps) < 2 * interval_ms / 1000


def test_second_start_on_the_same_home_refuses(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            node.wait_event(is_event("attached"))
            with run_daemon(home, NODE_ID, url, standin) as second:
                assert second.wait_exit(30) == 2
            assert node.proc.poll() is None
    lines = [line for line in second.stderr_lines if line.strip()]
    assert len(lines) == 1 and "already runs" in lines[0] and str(node.proc.pid) in lines[0]
    assert "starting" not in (home / "node.log").read_text().split("attached", 1)[1]


def test_stale_pid_file_and_sockets_from_a_crash_are_replaced(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--prompt", "after crash") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            node.wait_event(is_event("attached"))
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.wait_exit(10)
        assert (home / "run" / "node.pid").exists() and (home / "run" / "control.sock").exists()
        with run_daemon(home, NODE_ID, url, standin) as node:
            wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="served after a crash")
            assert live(home)["state"] == "ACTIVE"


def test_a_killed_heartbeat_process_is_respawned_and_seq_keeps_counting(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--heartbeat-ms", "500") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            wait_for(url, lambda s: len(s["heartbeats"]) >= 3, what="a few heartbeats")
            first = live(home)["heartbeatPid"]
            os.kill(first, signal.SIGKILL)
            node.wait_event(is_event("heartbeat.died"))
            seen = len(wait_for(url, lambda s: True)["heartbeats"])
            done = wait_for(url, lambda s: len(s["heartbeats"]) >= seen + 3, timeout=20,
                            what="heartbeats from the new process")
            assert live(home)["heartbeatPid"] not in (None, first)
    seqs = [h["seq"] for h in done["heartbeats"]]
    assert seqs == sorted(set(seqs)) and done["seqViolations"] == 0, seqs


def test_a_request_whose_second_worker_dies_too_is_reported_failed_once(node_home, standin):
    home, _ = node_home
    with one_request_in_flight(node_home, standin, "cursed [[sleep:4000]]", "--workers", "2",
                               coordinator_args=("--max-attempts", "1")) as (url, node):
        first = next(w for w in live(home)["workers"] if w["busy"])
        os.kill(first["pid"], signal.SIGKILL)
        node.wait_event(is_event("request.retry"))
        wait_busy(home, timeout=10)  # the retry running
        second = next(w for w in live(home)["workers"] if w["busy"])
        os.kill(second["pid"], signal.SIGKILL)
        done = wait_for(url, lambda s: s["failedFinal"], timeout=20, what="the failure report")
    assert second["slot"] != first["slot"]
    assert [f["code"] for f in done["failureReports"]] == ["inference_failed"]
    assert done["accepted"] == 0 and "died" in done["failureReports"][0]["message"]


def test_workers_killed_after_serving_are_replaced_at_once(node_home, standin):
    """DESIGN.md: a worker that served and then died is replaced at once (an OOM killer on a
    busy host); only workers that die before doing any work back off."""
    home, address = node_home
    count, kills = 150, 8
    prompts = sum((["--prompt", f"k{i} [[sleep:100]]"] for i in range(count)), [])
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", *prompts) as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "3") as node:
            node.wait_event(is_event("attached"))
            first_seen: dict[int, int] = {}  # pid -> its slot's served count when first seen
            killed: list[int] = []

            def kill_one_that_served() -> bool:
                for w in live(home)["workers"]:
                    pid = w["pid"]
                    if pid is None or pid in killed:
                        continue
                    if w["served"] > first_seen.setdefault(pid, w["served"]):
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return True
                return False

            for _ in range(kills):
                wait_until(kill_one_that_served, 30, "a worker that finished a request")
            done = wait_for(url, lambda s: s["done"], timeout=90, what="all served")
        replaced = [e for e in node.events if e.get("event") == "worker.replaced"]
    assert len(replaced) == kills and all(e["respawn_in"] == "0.0s" for e in replaced), replaced
    assert len(done["results"]) == count and done["duplicateCount"] == 0


def test_workers_dying_before_any_work_back_off(node_home, standin):
    home, address = node_home
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin, "--workers", "1") as node:
            node.wait_event(is_event("attached"))
            delays = []
            for n in (1, 2):
                pid = live(home)["workers"][0]["pid"]
                os.kill(pid, signal.SIGKILL)
                replaced = node.wait_event(lambda e: e.get("event") == "worker.replaced"
                                           and str(e.get("restarts")) == str(n))
                delays.append(float(replaced["respawn_in"].rstrip("s")))
                node.wait_event(lambda e: e.get("event") == "worker.ready"
                                and str(e.get("pid")) != str(pid) and e.get("slot") == "w0")
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4, delays
