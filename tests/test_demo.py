"""scripts/demo.py end to end, as a new user runs it (with the stand-in forced, so the outcome
does not depend on whether an Ollama runs on this machine)."""
import subprocess
import sys

from tests.conftest import ROOT, SCRIPTS


def test_demo_serves_and_verifies_every_prompt():
    r = subprocess.run([sys.executable, str(SCRIPTS / "demo.py"), "--standin"], cwd=ROOT,
                       capture_output=True, text=True, encoding="utf-8", timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--standin given; using the project's Ollama stand-in" in r.stdout
    assert "7/7 results accepted; every signature and PoE verified independently" in r.stdout
    assert "✗" not in r.stdout
    assert "The node stopped with exit status 0." in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
