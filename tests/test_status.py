"""`status`: offline view from state.json and settings, never the key; fast imports; live merge."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, clean_env, one_error_line
from tests.fakes import NETWORK, FakeCoordinator, FakeOllama, tag
from node.home import Home
from node.settings import load_settings
from node.commands.status_view import offline_status, render_status


def test_fresh_before_init(cli):
    doc = cli.json("status")
    assert doc["state"] == "FRESH" and doc["address"] is None and doc["live"] is False
    r = cli("status")
    assert r.returncode == 0 and "parallelix-node init" in r.stdout


def test_inited_identity_and_settings(cli, home):
    init = cli.json("init")
    doc = cli.json("status", "--coordinator", "http://127.0.0.1:9", env={
        "OLLAMA_HOST": "127.0.0.1:11500", "PARALLELIX_NODE_ID": "77"})
    assert doc["state"] == "INITED"
    assert doc["address"] == init["address"] and doc["nodeKeyHash"] == init["nodeKeyHash"]
    assert doc["nodeId"] == 77 and doc["tier"] is None
    assert doc["coordinator"] == "http://127.0.0.1:9"
    assert doc["ollama"] == ["http://127.0.0.1:11500"]
    assert doc["network"] is None and doc["live"] is False
    plain = cli("status").stdout
    assert init["address"] in plain and "unknown (run parallelix-node probe)" in plain


def test_node_id_from_config_and_tier_and_state_from_state_json(cli, home):
    cli.json("init")
    with open(home / "config.toml", "a") as f:
        f.write("node_id = 4231\n")
    saved = json.loads((home / "state.json").read_text())
    saved.update(state="ACTIVE", tier=3)
    (home / "state.json").write_text(json.dumps(saved))
    doc = cli.json("status")
    assert (doc["nodeId"], doc["tier"], doc["state"]) == (4231, 3, "ACTIVE")


def test_contracts_shown_offline_after_verify(cli, home):
    cli.json("init")
    with FakeCoordinator() as coord, FakeOllama([tag("llama3.2:latest")]) as ollama:
        r = cli("verify", "--coordinator", coord.url, "--ollama", ollama.url)
        assert r.returncode == 0, r.stdout
        url = coord.url
    doc = cli.json("status", "--coordinator", url)  # the fake coordinator is gone now
    assert doc["network"]["contracts"] == NETWORK["contracts"]
    assert doc["network"]["chainId"] == 8453 and doc["network"]["coordinator"] == url
    plain = cli("status", "--coordinator", url).stdout
    assert "NodeRegistryLocker" in plain and NETWORK["contracts"]["NodeRegistryLocker"] in plain


def test_status_never_opens_the_key(cli, home):
    """node.key replaced by a FIFO: opening it would block, so status must finish anyway."""
    init = cli.json("init")
    (home / "node.key").unlink()
    os.mkfifo(home / "node.key", 0o600)
    doc = cli.json("status", timeout=10)
    assert doc["address"] == init["address"] and doc["state"] == "INITED"


def test_non_loopback_http_coordinator_is_refused(cli):
    r = cli("status", "--coordinator", "http://example.com")
    assert r.returncode == 2
    assert "https://" in one_error_line(r)


def test_bad_config_names_the_file(cli, home):
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text("model = \n")
    r = cli("status", "--json")
    assert r.returncode == 2
    assert str(home / "config.toml") in one_error_line(r)
    assert json.loads(r.stdout)["exitCode"] == 2


# What the fast commands never import: HTTP, signing, zmq and metrics libraries, and (for
# start-up time) the package-metadata scan, logging and tempfile.
HEAVY = ("requests", "eth_account", "zmq", "coincurve", "prometheus_client", "psutil",
         "importlib.metadata", "logging", "tempfile")


def test_status_imports_no_http_or_signing_library(home):
    code = ("import sys\nfrom node.cli import main\nsys.argv=['parallelix-node', %r]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    for command in ("status", "logs", "version"):
        r = subprocess.run([sys.executable, "-c", code % command], cwd=ROOT, env=clean_env(home),
                           capture_output=True, text=True, timeout=30)
        assert "HEAVY []" in r.stderr, (command, r.stderr)


def test_live_answer_is_merged_over_the_offline_view(tmp_path, monkeypatch):
    import node.commands.status as status_cmd
    home = tmp_path / "h"
    monkeypatch.setattr(status_cmd, "query_live",
                        lambda h, timeout_ms=1000: {"state": "ACTIVE", "uptimeS": 12})
    r = CliRunner().invoke(status_cmd.cmd, ["--home", str(home), "--json"], env={
        "PARALLELIX_NODE_ID": "", "OLLAMA_HOST": "", "PARALLELIX_COORDINATOR": ""})
    doc = json.loads(r.output)
    assert doc["live"] is True and doc["state"] == "ACTIVE" and doc["uptimeS"] == 12
    lines = render_status(doc)
    assert any("running" in l and "up 0m12s" in l for l in lines)


def test_offline_status_is_a_plain_dict(tmp_path):
    home = Home(tmp_path / "h")
    doc = offline_status(home, load_settings(home, env={}))
    assert doc["state"] == "FRESH" and doc["ollama"] == ["http://127.0.0.1:11434"]
    json.dumps(doc)
    assert render_status({**doc, "live": False})[0].startswith("state")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"address": 5, "state": "ACTIVE"}',
                                     '{"state": "SLEEPING"}', '{"network": "x"}'])
def test_a_corrupt_state_file_is_named_with_what_to_do(cli, home, content):
    r = cli("init")
    assert r.returncode == 0
    (home / "state.json").write_text(content)
    doc = cli.json("status")
    plain = cli("status")
    assert doc["warning"].startswith(f"{home / 'state.json'}") and "verify" in doc["warning"]
    assert plain.returncode == 0 and "warning" in plain.stdout and "Traceback" not in plain.stderr
    assert doc["address"] is None or isinstance(doc["address"], str)
