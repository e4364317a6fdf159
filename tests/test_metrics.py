"""Prometheus metrics (README, "Monitoring a fleet"), real processes on loopback: a node serving
requests scraped directly and by a real Prometheus, whose counts must equal the dev
coordinator's; where the exporter listens; contrib/'s dashboard and alert rules."""
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from node.daemon.metrics import STAGES
from node.errors import ConfigError
from node.home import Home
from node.keyfile import read_key
from node.settings import MetricsAddress, parse_metrics_address
from node.version import cli_version
from tests.conftest import ROOT, one_error_line
from tests.coord import start_dev_coordinator, wait_for
from tests.nodeproc import init_home, is_event, run_daemon
from tests.procs import closed_port_url, start_prometheus, start_standin

NODE_ID = 7
CONTRIB = ROOT / "contrib"
GOOD = [{"prompt": f"metrics prompt {i} ünïcode"} for i in range(6)]
BAD = [{"prompt": "crashes [[error-500]]"}, {"prompt": "who?", "model": "no-such-model"}]


def scrape(url: str) -> tuple[str, dict[str, list]]:
    """The exposition text and its samples by sample name (parsed by prometheus_client)."""
    r = requests.get(url, timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), r
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return r.text, samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    found = [s.value for s in samples.get(name, [])
             if all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, (name, labels, samples.get(name))
    return sum(found)


def metrics_url(node) -> str:
    return node.wait_event(is_event("metrics.listening"))["url"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One node (two workers) that served GOOD and failed BAD, still running, with its
    metrics on `--metrics 0` (loopback, a free port); and the coordinator's final stats."""
    base = tmp_path_factory.mktemp("metrics")
    home = base / "h"
    address = init_home(home)
    prompts = base / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in GOOD + BAD))
    with start_standin("--models", "llama3.2") as (_, ollama), \
            start_dev_coordinator("--node", f"{NODE_ID}={address}", "--max-attempts", "1",
                                  "--poll-ms", "200", "--heartbeat-ms", "1000",
                                  "--prompts-file", str(prompts)) as (_, coord):
        with run_daemon(home, NODE_ID, coord, ollama, "--workers", "2", "--metrics", "0") as node:
            url = metrics_url(node)
            stats = wait_for(coord, lambda s: s["accepted"] + len(s["failedFinal"]) == 8,
                             timeout=60, what="every request answered")
            text, samples = scrape_settled(url)
            yield SimpleNamespace(home=home, address=address, node=node, url=url, stats=stats,
                                  text=text, samples=samples, ollama=ollama, base=base)


def scrape_settled(url: str) -> tuple[str, dict[str, list]]:
    """A scrape taken once every result and failure report has its coordinator answer."""
    end = time.monotonic() + 30
    while True:
        text, samples = scrape(url)
        if value(samples, "parallelix_results_delivered_total") >= len(GOOD + BAD) and \
                value(samples, "parallelix_heartbeats_total", outcome="ok") >= 1:
            return text, samples
        assert time.monotonic() < end, text
        time.sleep(0.1)


def test_a_scrape_counts_what_the_coordinator_saw(served):
    s, stats = served.samples, served.stats
    assert stats["accepted"] == len(GOOD)
    assert value(s, "parallelix_requests_total", outcome="served") == stats["accepted"]
    assert value(s, "parallelix_requests_total", model="llama3.2", outcome="served") == len(GOOD)
    for code, count in stats["failures"].items():
        assert value(s, "parallelix_requests_total", outcome=code) == count
    assert value(s, "parallelix_requests_total", outcome="model_not_found",
                 model="no-such-model") == 1
    assert value(s, "parallelix_results_delivered_total", answer="accepted") == len(GOOD + BAD)
    assert value(s, "parallelix_results_delivered_total", answer="rejected") == 0
    assert value(s, "parallelix_ollama_duration_seconds_count") == len(GOOD)
    assert value(s, "parallelix_node_overhead_seconds_count") == len(GOOD)
    assert value(s, "parallelix_node_overhead_seconds_sum") > 0
    assert value(s, "parallelix_tokens_generated_total", model="llama3.2") == sum(
        r["metrics"]["evalCount"] for r in stats["results"].values())
    assert value(s, "parallelix_outbox_depth") == 0
    assert value(s, "parallelix_requests_in_flight") == 0
    assert abs(value(s, "parallelix_heartbeat_last_accepted_timestamp_seconds") - time.time()) < 60
    assert value(s, "parallelix_node_state", state="ACTIVE") == 1
    assert value(s, "parallelix_node_state") == 1  # exactly one state is current
    assert value(s, "parallelix_node_accepting") == 1
    assert value(s, "parallelix_build_info", version=cli_version()) == 1
    assert value(s, "parallelix_node_info", node_id=str(NODE_ID), address=served.address) == 1
    for slot in ("w0", "w1"):
        assert value(s, "parallelix_worker_up", slot=slot, ollama=served.ollama) == 1
        assert value(s, "parallelix_worker_ready", slot=slot, ollama=served.ollama) == 1
        assert value(s, "parallelix_worker_restarts_total", slot=slot) == 0
    assert {r: value(s, "parallelix_processes", role=r)
            for r in ("supervisor", "heartbeat", "worker")} == \
        {"supervisor": 1, "heartbeat": 1, "worker": 2}
    for role in ("supervisor", "heartbeat", "worker"):
        assert value(s, "parallelix_process_cpu_seconds_total", role=role) > 0
        assert value(s, "parallelix_process_resident_memory_bytes", role=role) > 10 * 2**20
    assert not [n for n in s if not n.startswith("parallelix_")]


def test_a_served_request_lands_once_in_every_stage(served):
    s = served.samples
    for stage in STAGES:
        if stage != "poll":
            assert value(s, "parallelix_stage_seconds_count", stage=stage) == len(GOOD), stage
        assert value(s, "parallelix_stage_seconds_sum", stage=stage) >= 0, stage
    # every inbox answer that carried a request, served or failed
    assert value(s, "parallelix_stage_seconds_count", stage="poll") == \
        len(served.stats["dispatches"]) == len(GOOD + BAD)
    assert value(s, "parallelix_stage_seconds_sum", stage="ollama") > 0
    assert value(s, "parallelix_stage_seconds_bucket", stage="sign", le="+Inf") == len(GOOD)


def test_the_scrape_holds_no_key_and_no_prompt(served):
    secret = read_key(Home(served.home))
    assert secret.hex() not in served.text.lower()
    assert not any(p["prompt"] in served.text for p in GOOD + BAD)
    assert "metrics prompt" not in served.text and "echo:" not in served.text


def test_a_real_prometheus_agrees_with_the_coordinator(served):
    port = served.url.split(":")[2].split("/")[0]
    with start_prometheus(served.base / "prom", [f"127.0.0.1:{port}"]) as prom:
        query = 'sum(parallelix_requests_total{job="parallelix-node",outcome="served"})'
        end = time.monotonic() + 30
        while True:
            r = requests.get(f"{prom}/api/v1/query", params={"query": query}, timeout=5).json()
            assert r["status"] == "success", r
            if r["data"]["result"]:
                break
            assert time.monotonic() < end, "Prometheus never scraped the node"
            time.sleep(0.2)
        up = requests.get(f"{prom}/api/v1/query", params={"query": "up"}, timeout=5).json()
    assert float(r["data"]["result"][0]["value"][1]) == served.stats["accepted"] == len(GOOD)
    assert [float(x["value"][1]) for x in up["data"]["result"]] == [1.0]


def test_without_an_address_only_loopback_127_0_0_1_answers(served):
    port = int(served.url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    with pytest.raises(ConnectionRefusedError):  # another loopback address: not bound to all
        socket.create_connection(("127.0.0.2", port), timeout=5).close()


def test_metrics_from_config_toml_on_an_explicit_address_before_attaching(node_home):
    home, _ = node_home
    with open(home / "config.toml", "a") as f:
        f.write('metrics = "127.0.0.2:0"\n')
    with run_daemon(home, NODE_ID, closed_port_url(), closed_port_url()) as node:
        url = metrics_url(node)
        assert url.startswith("http://127.0.0.2:")
        end = time.monotonic() + 30
        while True:  # the node keeps trying to attach to a coordinator that is down
            _, s = scrape(url)
            errors = [x for x in s.get("parallelix_coordinator_errors_total", [])
                      if x.labels == {"endpoint": "attach", "kind": "unreachable"}]
            if errors and errors[0].value >= 1:
                break
            assert time.monotonic() < end, s.get("parallelix_coordinator_errors_total")
            time.sleep(0.2)
        assert value(s, "parallelix_node_accepting") == 0
        assert value(s, "parallelix_node_state", state="ACTIVE") == 0
        port = int(url.split(":")[2].split("/")[0])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("text, host, port", [
    ("9464", "127.0.0.1", 9464), (":9464", "127.0.0.1", 9464),
    ("localhost:9464", "127.0.0.1", 9464), ("[::1]:9464", "::1", 9464),
    ("0.0.0.0:9100", "0.0.0.0", 9100), ("127.0.0.1:0", "127.0.0.1", 0), (9464, "127.0.0.1", 9464)])
def test_metrics_addresses(text, host, port):
    assert parse_metrics_address(text) == MetricsAddress(host, port)


@pytest.mark.parametrize("text", ["", "host.example:9464", "9464x", "127.0.0.1:70000",
                                  "127.0.0.1:-1", "::1", True, 9.5, "1.2.3:80"])
def test_bad_metrics_addresses_are_refused(text):
    with pytest.raises(ConfigError, match="metrics address"):
        parse_metrics_address(text)


def test_a_bad_metrics_flag_or_setting_is_one_line(cli, home):
    r = cli("start", "--node-id", "7", "--metrics", "example.com:9464")
    assert r.returncode == 2
    assert "--metrics" in one_error_line(r) and "not an IP address" in r.stderr
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('metrics = "127.0.0.1:99999"\n')
    r = cli("status")
    assert r.returncode == 2
    assert str(home / "config.toml") in one_error_line(r) and "port" in r.stderr


def test_a_metrics_port_in_use_stops_the_start_with_one_line(node_home):
    home, _ = node_home
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with run_daemon(home, NODE_ID, closed_port_url(), closed_port_url(),
                        "--metrics", str(port)) as node:
            assert node.wait_exit(60) == 2
    err = [l for l in node.stderr_lines if l.strip()]
    assert any(f"cannot serve metrics on 127.0.0.1:{port}" in l for l in err), err
    assert "Traceback" not in "".join(err)


# --- contrib/: the dashboard and the alert rules ------------------------------------------

def exported_names(samples: dict[str, list]) -> set[str]:
    """Metric names a PromQL expression may use: every sample name of a real scrape."""
    return set(samples)


def named_metrics(expr: str) -> set[str]:
    return set(re.findall(r"\bparallelix_[a-z_]+", expr))


def panel_exprs(panels: list[dict]) -> list[str]:
    exprs = []
    for p in panels:
        exprs += [t["expr"] for t in p.get("targets", [])]
        exprs += panel_exprs(p.get("panels", []))
    return exprs


def test_the_dashboard_is_importable_json_naming_exported_metrics(served):
    board = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    titles = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert titles[0].startswith("Fleet") and titles[1].startswith("Node")
    assert any(p["type"] == "table" for p in board["panels"])  # the fleet view, a row per node
    exprs = panel_exprs(board["panels"])
    assert len(exprs) >= 20
    exported = exported_names(served.samples)
    for expr in exprs:
        names = named_metrics(expr)
        assert names and names <= exported, (expr, names - exported)
    used = set().union(*map(named_metrics, exprs))
    assert {n for n in exported if not n.endswith(("_count", "_sum"))} - used == set()


def test_the_alert_rules_pass_promtool_and_name_exported_metrics(served):
    for args in (["check", "rules", "prometheus-alerts.yml"],
                 ["test", "rules", "prometheus-alerts.test.yml"]):
        r = subprocess.run(["promtool", *args], cwd=CONTRIB, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "SUCCESS" in r.stdout
    text = (CONTRIB / "prometheus-alerts.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", text)
    assert len(alerts) == 8
    tested = (CONTRIB / "prometheus-alerts.test.yml").read_text()
    assert set(re.findall(r"alertname: (\w+)", tested)) == set(alerts)
    assert named_metrics(text) - exported_names(served.samples) == set()
