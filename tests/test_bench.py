"""scripts/bench.py smoke test: the tiny configuration runs and measures everything. Only that
each number is positive is checked, never its value (wall-clock numbers vary by machine)."""
import json
import subprocess
import sys

from tests.conftest import ROOT, SCRIPTS


def test_quick_bench_measures_everything():
    r = subprocess.run([sys.executable, str(SCRIPTS / "bench.py"), "--quick", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    names = [m["name"] for m in doc["measurements"]]
    assert names == ["start-up, version", "start-up, status", "signing",
                     "end to end, 1 worker(s)", "end to end, 4 worker(s)"]
    for m in doc["measurements"]:
        assert m["value"] > 0 and m["baseline"] > 0 and m["ratio"] > 0, m
    assert doc["config"]["requests"] == 20
