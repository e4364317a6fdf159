"""scripts/soak --short: every fault at once through the real daemon, under two minutes."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(400)
def test_short_soak_loses_nothing_doubles_nothing_and_recovers():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--short"], cwd=ROOT,
                       capture_output=True, text=True, timeout=380)
    print(r.stdout)
    figures = dict(line.split(None, 1) for line in r.stdout.splitlines() if line.strip())
    assert r.returncode == 0, (r.stdout, r.stderr[-3000:])
    assert figures["result"] == "PASS"
    assert figures["lost"] == "0" and figures["doubled"].startswith("0 ")
    assert int(figures["requests"].split()[0]) >= 300
    injected = dict(re.findall(r"([A-Za-z][^,]*?) (\d+)(?:,|$)", figures["faults"]))
    for kind in ("coordinator 5xx", "acknowledgements lost", "malformed inbox answers",
                 "Ollama mid-stream failures", "daemon SIGKILL", "worker SIGKILL",
                 "worker SIGSTOP", "Ollama stopped 20 s", "outbox writes failed (disk full)"):
        assert int(injected.get(kind, 0)) > 0, (kind, figures["faults"])
