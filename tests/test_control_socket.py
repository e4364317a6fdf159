"""The control socket is a documented interface: the README's example must work as written."""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, one_error_line
from tests.coord import admin, start_dev_coordinator, wait_for
from tests.nodeproc import init_home, is_event, run_daemon, wait_busy
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
            wait_busy(home)
            r = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path,
                               env=clean_env(home), capture_output=True, text=True, timeout=30)
            modes = [(p.name, p.stat().st_mode & 0o777) for p in
                     [home / "run", *sorted((home / "run").glob("*.sock"))]]
    assert modes == [("run", 0o700), ("control.sock", 0o600), ("events.sock", 0o600),
                     ("heartbeat.sock", 0o600), ("work.sock", 0o600)]
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ACTIVE", "7", "0", "[True]"]


def test_status_shows_the_live_view_and_watch_streams_events(tmp_path):
    home = tmp_path / "h"
    address = init_home(home)
    with start_standin("--models", "llama3.2") as (_, ollama), \
            start_dev_coordinator("--node", f"7={address}") as (_, url):
        with run_daemon(home, 7, url, ollama) as node:
            node.wait_event(is_event("attached"))
            watcher = subprocess.Popen([sys.executable, "-m", "node.cli", "status", "--watch",
                                        "--json"], cwd=ROOT, env=clean_env(home),
                                       stdout=subprocess.PIPE, text=True)
            try:
                hello = json.loads(watcher.stdout.readline())
                rid = admin(url, "enqueue", {"prompt": "watch [[sleep:3000]]"})["requestId"]
                wait_busy(home)
                plain = subprocess.run([sys.executable, "-m", "node.cli", "status"], cwd=ROOT,
                                       env=clean_env(home), capture_output=True, text=True,
                                       timeout=30)
                line = json.loads(watcher.stdout.readline())
            finally:
                watcher.terminate()
                watcher.wait(10)
    assert plain.returncode == 0, plain.stderr
    assert re.search(rf"worker w0 +pid \d+ busy {rid} on {re.escape(ollama)}", plain.stdout)
    assert "running, pid" in plain.stdout
    assert hello == {"type": "watch.hello", "atMs": hello["atMs"], "state": "ACTIVE"}
    assert line["type"] == "request.served" and line["requestId"] == rid
    assert line["poe"].startswith("0x") and line["model"] == "llama3.2"


@pytest.mark.parametrize("as_json", [True, False])
def test_status_watch_ends_with_a_last_line_when_its_daemon_stops(tmp_path, standin, as_json):
    home = tmp_path / "h"
    address = init_home(home)
    with start_dev_coordinator("--node", f"7={address}") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            node.wait_event(is_event("attached"))
            pid = node.proc.pid
            watcher = subprocess.Popen([sys.executable, "-m", "node.cli", "status", "--watch",
                                        *(["--json"] if as_json else [])], cwd=ROOT,
                                       env=clean_env(home), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            try:
                first = watcher.stdout.readline()
                node.signal(signal.SIGTERM)
                assert node.wait_exit(30) == 0
                out, err = watcher.communicate(timeout=30)
            finally:
                watcher.kill()
                watcher.wait(10)
    assert watcher.returncode == 0, err
    last = out.splitlines()[-1]
    if as_json:
        assert json.loads(first)["type"] == "watch.hello"
        doc = json.loads(last)
        assert (doc["type"], doc["pid"]) == ("watch.stopped", pid) and doc["atMs"] > 0
    else:
        assert first.startswith("watching ")
        assert last == f"the daemon (pid {pid}) stopped; parallelix-node logs says why"


def test_status_watch_without_a_daemon_says_so(cli):
    r = cli("status", "--watch")
    assert r.returncode == 1 and "no daemon runs" in one_error_line(r)


def test_a_home_too_long_for_unix_sockets_uses_a_short_private_folder(tmp_path, standin):
    home = tmp_path / ("a-rather-long-folder-name-for-a-node-home-" * 3) / "h"
    assert len(str(home / "run" / "control.sock")) > 107
    address = init_home(home)
    with start_dev_coordinator("--node", f"7={address}", "--prompt", "long home") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="served")
            folder = Path((home / "run.path").read_text().strip())
            mode = folder.stat().st_mode & 0o777
            sock_mode = (folder / "control.sock").stat().st_mode & 0o777
            doc = json.loads(subprocess.run(
                [sys.executable, "-m", "node.cli", "status", "--json"], cwd=ROOT,
                env=clean_env(home), capture_output=True, text=True, timeout=30).stdout)
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert len(str(folder / "control.sock")) < 100 and (mode, sock_mode) == (0o700, 0o600)
    assert doc["live"] is True and doc["served"] == 1
    assert not (home / "run.path").exists() and not folder.exists() and not (home / "run").exists()


def test_garbage_on_the_daemons_sockets_is_refused_and_it_keeps_serving(node_home, standin):
    import zmq

    from ipc import messages as m
    home, address = node_home
    with start_dev_coordinator("--node", f"7={address}") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            node.wait_event(is_event("attached"))
            ctx = zmq.Context()
            try:
                control = ctx.socket(zmq.REQ)
                control.setsockopt(zmq.RCVTIMEO, 5000)
                control.connect(f"ipc://{home}/run/control.sock")
                control.send(b"\x93not a request")
                refused = m.control_reply.decode(control.recv())
                control.send(m.encoder.encode(m.StatusRequest()))
                still = m.control_reply.decode(control.recv())
                intruder = ctx.socket(zmq.DEALER)
                intruder.setsockopt(zmq.IDENTITY, b"intruder")
                intruder.connect(f"ipc://{home}/run/work.sock")
                intruder.send(b"garbage")
                intruder.send(m.encoder.encode(m.Done(job=99, request_id="req_forged", text="x",
                                                      metrics=m.Metrics())))
                node.wait_event(is_event("work.unknown_peer"))
            finally:
                ctx.destroy(linger=0)
            admin(url, "enqueue", {"prompt": "after the garbage"})
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="still serving")
    assert isinstance(refused, m.ControlError) and "bad request" in refused.error
    assert isinstance(still, m.StatusReply) and still.state == "ACTIVE"
    assert "req_forged" not in done["results"]
