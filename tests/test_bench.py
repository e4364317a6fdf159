"""scripts/bench.py smoke test: the quick configuration runs and reports every figure of
issue 8, (a) to (i), the outbox and the stages of a request. Only that each number was
measured is checked, never its value (timings vary by machine and load)."""
import json
import math
import subprocess
import sys

from node.daemon.metrics import STAGES
from tests.conftest import ROOT, SCRIPTS


def test_quick_bench_reports_every_figure():
    r = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    figures = {m["figure"] for m in doc["measurements"]}
    assert figures == set("abcdefghi") | {"outbox", "stages"}
    names = [m["name"] for m in doc["measurements"]]
    assert any("p50" in n for n in names) and any("p99" in n for n in names)
    assert sum(n.startswith("scaling") for n in names) == 4
    assert any("verifies 1 in 20 signatures" in n for n in names)
    stages = [m for m in doc["measurements"] if m["figure"] == "stages"]
    for workers in ("4 workers", "1 worker"):
        rows = [m for m in stages if m["name"].endswith(f", 0 ms, {workers}")]
        assert len(rows) == len(STAGES), (workers, rows)
        assert {m["baseline_name"] for m in rows} == {"mean turnaround"}
        assert len({m["baseline"] for m in rows}) == 1   # one turnaround per run
    for who in ("supervisor", "heartbeat", "worker"):
        assert any(n.startswith(f"CPU per request, of which {who}") for n in names)
        assert any(n.startswith(f"resident memory, {who}") for n in names)
        assert any(n.startswith(f"memory growth, {who}") for n in names)
    for m in doc["measurements"]:
        assert math.isfinite(m["value"]) and m["value"] >= 0 and m["baseline"] > 0, m
    assert doc["config"]["requests"] == 60
    assert len(doc["machine"]["loadavg"]) == 3
