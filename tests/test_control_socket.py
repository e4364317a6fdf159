"""The control socket is a documented interface: the README's example must work as written."""
import re
import subprocess
import sys

from tests.conftest import ROOT, clean_env
from tests.coord import start_dev_coordinator, wait_for
from tests.nodeproc import init_home, is_event, run_daemon
from tests.procs import start_standin


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- control-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its control-socket example"
    return match.group(1)


def test_readme_control_socket_example_reports_a_busy_worker(tmp_path):
    home = tmp_path / "h"
    address = init_home(home)
    with start_standin("--models", "llama3.2") as (_, ollama), \
            start_dev_coordinator("--node", f"7={address}",
                                  "--prompt", "hold on [[sleep:3000]]") as (_, url):
        with run_daemon(home, 7, url, ollama) as node:
            node.wait_event(is_event("attached"))
            wait_for(url, lambda s: s["inflight"], what="a busy worker")
            r = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path,
                               env=clean_env(home), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ACTIVE", "7", "0", "[True]"]
