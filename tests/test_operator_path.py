"""The operator's path walked as a person would, with real processes and a throwaway home:
a lost key, a mistyped node id, the settings a `start` remembers, and the small surprises
(issue 13)."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from node.settings import read_config
from tests.conftest import ROOT, one_error_line
from tests.coord import admin, start_dev_coordinator
from tests.nodeproc import init_home, is_event, run_daemon, run_start
from tests.procs import read_line, start_standin, stop_process

NODE_ID = 7


def config(home) -> dict:
    return read_config(home / "config.toml")


def serve_once_and_stop(home, address, standin) -> None:
    """Attach node 7 to a fresh coordinator, then stop it with SIGTERM."""
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            node.wait_event(is_event("attached"))
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0


def test_a_lost_key_names_the_old_node_and_init_refuses_to_orphan_it(cli, standin):
    home = cli.home
    address = init_home(home)
    serve_once_and_stop(home, address, standin)
    stopped = cli("status")
    assert "ACTIVE on the network; daemon stopped — the node is offline" in stopped.stdout
    (home / "node.key").unlink()  # the operator lost the key (a reinstall, a wrong rm)

    expected = f"node.key is missing; this home was node {NODE_ID} ({address})"
    status = cli("status")
    assert status.returncode == 0 and expected in status.stdout
    assert "restore" in status.stdout and "init --force" in status.stdout
    verify = cli("verify", "--coordinator", "http://127.0.0.1:9", "--ollama", standin)
    assert verify.returncode == 1 and expected in verify.stdout
    start = cli("start", "--node-id", str(NODE_ID), "--ollama", standin)
    assert start.returncode == 2 and expected in one_error_line(start)

    init = cli("init")
    assert init.returncode == 2
    line = one_error_line(init)
    assert expected in line and "restore" in line and "init --force" in line
    assert not (home / "node.key").exists()
    assert json.loads((home / "state.json").read_text())["address"] == address

    # The operator decides to start over: --force makes a new node and forgets node 7.
    fresh = cli.json("init", "--force")
    assert fresh["replaced"] is True and fresh["oldAddress"] == address
    assert fresh["address"] != address
    assert "node_id" not in config(home)
    assert cli("start", "--ollama", standin).returncode == 2  # no node id any more


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the key to another user needs root")
def test_a_key_owned_by_another_user_gets_the_chown_advice_everywhere(cli, standin):
    home = cli.home
    init_home(home)
    os.chown(home / "node.key", 65534, 65534)
    fix = f"sudo chown {os.getuid()} {home / 'node.key'}"
    start = cli("start", "--node-id", "7", "--ollama", standin)
    line = one_error_line(start)
    assert start.returncode == 2 and fix in line and "init --force" not in line
    verify = cli("verify", "--coordinator", "http://127.0.0.1:9", "--ollama", standin)
    assert fix in verify.stdout


def test_a_mistyped_node_id_is_not_saved_and_the_right_one_is(cli, standin):
    home = cli.home
    address = init_home(home)
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, 99, url, standin) as typo:
            assert typo.wait_exit(30) == 3
            typo.wait_event(lambda e: "exitCode" in e)  # stdout read to the end
        assert "node_id" not in config(home)
        # --json: numbers are numbers, and the failure ends as one {error, exitCode} document.
        starting = next(e for e in typo.events if e.get("event") == "starting")
        assert starting["node"] == 99 and isinstance(starting["workers"], int)
        assert typo.events[-1]["exitCode"] == 3 and "unknown_node" in typo.events[-1]["error"]
        assert typo.stderr_lines[-1].startswith("error: ") and "--node-id" in typo.stderr_lines[-1]

        with run_daemon(home, NODE_ID, url, standin, "--model", "llama3.2") as node:
            node.wait_event(is_event("config.saved"))
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    saved = config(home)
    assert saved["node_id"] == NODE_ID and saved["coordinator"] == url
    assert saved["ollama"] == standin and saved["model"] == "llama3.2"


def test_a_plain_start_returns_to_the_coordinator_it_worked_with(cli, standin):
    home = cli.home
    address = init_home(home)
    with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
        with run_daemon(home, NODE_ID, url, standin) as node:
            node.wait_event(is_event("config.saved"))
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
        status = cli.json("status")
        assert (status["nodeId"], status["coordinator"], status["ollama"]) == \
            (NODE_ID, url, [standin])
        # A plain `start` (no flags) attaches to the same node at the same coordinator.
        with run_start(home) as plain:
            attached = plain.wait_event(is_event("attached"))
            assert attached["node"] == NODE_ID
            assert plain.wait_event(is_event("state.kept"))["state"] == "ACTIVE"
            assert not [e for e in plain.events if e.get("event") == "state.transition"]
            plain.signal(signal.SIGTERM)
            assert plain.wait_exit(30) == 0


def test_gpu_and_cpu_together_are_refused(cli, standin):
    init_home(cli.home)
    r = cli("start", "--node-id", "7", "--ollama", standin, "--gpu", "--cpu")
    assert r.returncode == 2 and "--gpu and --cpu" in one_error_line(r)


def test_a_key_set_twice_in_config_is_named(cli):
    init_home(cli.home)
    with open(cli.home / "config.toml", "a") as f:
        f.write("node_id = 3\nnode_id = 4\n")
    r = cli("status")
    line = one_error_line(r)
    assert r.returncode == 2 and "node_id is set twice" in line and "Cannot overwrite" not in line


def test_probe_records_the_tier_that_status_shows(cli, standin):
    init_home(cli.home)
    assert cli.json("status")["tier"] is None
    tier = cli.json("probe", "--ollama", standin)["tier"]
    assert cli.json("status")["tier"] == tier
    assert "unknown (run parallelix-node probe)" not in cli("status").stdout


def test_a_mistyped_command_gets_the_nearest_one(cli):
    for typed, meant in ((["strat"], "start"), (["service", "instal"], "install")):
        r = cli(*typed)
        assert r.returncode == 2 and f"Did you mean '{meant}'?" in one_error_line(r)


def test_json_may_come_before_the_command(cli):
    init_home(cli.home)
    assert cli.json("status") == json.loads(cli("--json", "status").stdout)
    r = cli("--json", "strat")
    assert r.returncode == 2 and json.loads(r.stdout)["exitCode"] == 2


def test_verify_says_what_it_waits_for(cli, standin):
    init_home(cli.home)
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "verify", "--coordinator",
                                 url, "--ollama", standin], cwd=ROOT, env=cli.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = read_line(proc.stderr, 8)  # long before the 10 s timeout
        finally:
            proc.kill()
            proc.wait(10)
    assert line.startswith(f"waiting for the coordinator at {url}")


def test_with_ollama_down_status_names_the_cause_of_the_failures(cli):
    home = cli.home
    address = init_home(home)
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--max-attempts", "1") as (_, url):
        with start_standin("--models", "llama3.2") as (ollama, ollama_url):
            with run_daemon(home, NODE_ID, url, ollama_url) as node:
                node.wait_event(is_event("attached"))
                stop_process(ollama)  # Ollama goes down while the node serves
                admin(url, "enqueue", {"prompt": "hello"})
                node.wait_event(is_event("failed"))
                live = cli.json("status")
                cause = live["workers"][0]["lastFailure"]
                assert live["workers"][0]["failed"] == 1 and ollama_url in cause
                assert f"last failure: {cause}" in cli("status").stdout
