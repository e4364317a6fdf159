"""scripts/demo.py end to end, as a new user runs it: with the stand-in forced, and through
its probe of OLLAMA_HOST (a stand-in there plays the real Ollama, a closed port the absent one),
so the outcome does not depend on whether an Ollama runs on this machine."""
import os
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("answers", [True, False])
def test_demo_uses_the_ollama_at_ollama_host_when_it_answers_else_the_standin(
        answers, standin, closed_port):
    url = standin if answers else f"http://127.0.0.1:{closed_port}"
    env = {**os.environ, "OLLAMA_HOST": url}
    r = subprocess.run([sys.executable, str(SCRIPTS / "demo.py")], cwd=ROOT, env=env,
                       capture_output=True, text=True, encoding="utf-8", timeout=100)
    assert r.returncode == 0, r.stdout + r.stderr
    chosen = (f"Using the real Ollama at {url} (it has llama3.2)." if answers else
              f"no Ollama answered at {url}; using the project's Ollama stand-in")
    assert chosen in r.stdout
    assert "7/7 results accepted; every signature and PoE verified independently" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
