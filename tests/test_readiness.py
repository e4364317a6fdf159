"""Readiness: a node whose Ollama does not answer is no black hole (PROTOCOL.md, DESIGN.md
"Trust boundaries"). It attaches with `ollama.version` null, heartbeats with `load.accepting`
false, polls nothing, names the endpoint it waits for, and serves once Ollama answers; Ollama
gone mid-run costs at most one request per slot."""
import socket

from node.commands.livestatus import query_live
from node.home import Home
from tests.coord import start_dev_coordinator, wait_for
from tests.nodeproc import is_event, run_daemon
from tests.procs import start_standin

NODE_ID = 7
SLOTS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_beat(s: dict) -> dict | None:
    return s["heartbeats"][-1]["load"] if s["heartbeats"] else None


def test_node_without_ollama_attaches_polls_nothing_then_serves_when_it_answers(node_home):
    home, address = node_home
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    prompts = [f"p{i}" for i in range(6)]
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--heartbeat-ms", "300",
                               *sum((["--prompt", p] for p in prompts), [])) as (_, url):
        with run_daemon(home, NODE_ID, url, endpoint, "--workers", str(SLOTS)) as node:
            s = wait_for(url, lambda s: s["attaches"] and len(s["heartbeats"]) >= 3,
                         timeout=30, what="attach and heartbeats without Ollama")
            assert s["attaches"][0]["manifest"]["ollama"] == {"version": None}
            assert s["attaches"][0]["manifest"]["models"] == []
            assert all(b["load"]["ready"] == 0 and b["load"]["accepting"] is False
                       and b["load"]["slots"] == SLOTS for b in s["heartbeats"])
            assert s["polls"] == 0 and s["dispatches"] == [] and s["failureReports"] == []
            waiting = node.wait_event(is_event("node.not_accepting"))
            assert endpoint in waiting["waiting_for"]
            doc = query_live(Home(home))
            assert doc["accepting"] is False
            assert all(w["ready"] is False and endpoint in w["waitingFor"]
                       for w in doc["workers"])

            with start_standin("--models", "llama3.2", "--port", str(port)):
                # serving starts when a worker finds Ollama; the new survey and attach run
                # beside it, so six quick prompts may be done first
                s = wait_for(url, lambda s: s["done"] and len(s["attaches"]) >= 2, timeout=60,
                             what="all served, and attached again when the manifest changed")
                assert len(s["attaches"]) == 2
                again = s["attaches"][1]["manifest"]
                assert again["ollama"]["version"] and "llama3.2:latest" in again["models"]
                wait_for(url, lambda s: (last_beat(s) or {}).get("accepting") is True
                         and last_beat(s)["ready"] == SLOTS, timeout=10, what="accepting beat")
                assert query_live(Home(home))["accepting"] is True
    assert len(s["results"]) == len(prompts) and s["failureReports"] == []


def test_ollama_gone_mid_run_fails_at_most_one_request_per_slot(node_home):
    home, address = node_home
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    count = 40
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--heartbeat-ms", "300",
                               *sum((["--prompt", f"q{i} [[sleep:150]]"] for i in range(count)),
                                    [])) as (_, url):
        with run_daemon(home, NODE_ID, url, endpoint, "--workers", str(SLOTS)) as node:
            with start_standin("--models", "llama3.2", "--port", str(port)) as (ollama, _):
                wait_for(url, lambda s: len(s["results"]) >= 4, timeout=60, what="serving")
                ollama.kill()  # Ollama crashes mid-run, requests in flight
            s = wait_for(url, lambda s: (last_beat(s) or {}).get("accepting") is False
                         and not s["inflight"], timeout=20, what="a not-accepting beat")
            dispatched = len(s["dispatches"])
            failed = list(s["failureReports"])
            assert len(failed) <= SLOTS, failed
            node.wait_event(is_event("worker.waiting"))
            beats = len(s["heartbeats"])  # watch three more intervals: a polling node would
            s = wait_for(url, lambda s: len(s["heartbeats"]) >= beats + 3,  # draw dozens
                         timeout=10, what="three more heartbeats")
            assert len(s["dispatches"]) == dispatched and len(s["failureReports"]) == len(failed)

            with start_standin("--models", "llama3.2", "--port", str(port)):
                s = wait_for(url, lambda s: s["done"], timeout=90, what="all served")
    assert len(s["results"]) == count and s["duplicateCount"] == 0
    assert len(s["failureReports"]) <= SLOTS
