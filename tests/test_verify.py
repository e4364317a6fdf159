"""`verify`: every check against loopback fakes, with the fix printed for each failure."""
import json
import os

import pytest

from tests.conftest import one_error_line
from tests.fakes import NETWORK, FakeCoordinator, FakeOllama, tag
from node.commands.diagnostics import check_disk
from node.home import Home


@pytest.fixture
def ollama():
    with FakeOllama([tag("llama3.2:latest")]) as fake:
        yield fake


@pytest.fixture
def coord():
    with FakeCoordinator() as fake:
        yield fake


def verify(cli, ollama_url, coord_url, *extra, env=None):
    r = cli("verify", "--json", "--ollama", ollama_url, "--coordinator", coord_url, *extra,
            env=env)
    doc = json.loads(r.stdout)  # one document, whatever the outcome
    return r, doc, {c["name"]: c for c in doc["checks"]}


def secret(home) -> str:
    return (home / "node.key").read_text().strip()[2:]


def test_all_checks_pass_and_network_is_cached(cli, home, ollama, coord):
    init = cli.json("init")
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 0 and doc["ok"] is True, r.stdout
    assert list(checks) == ["python", "key", "key-permissions", "key-loadable", "ollama", "model",
                            "coordinator", "clock", "disk"]
    assert all(c["ok"] and set(c) == {"name", "ok", "detail", "fix"} for c in checks.values())
    assert "0.12.6" in checks["ollama"]["detail"] and " ms" in checks["coordinator"]["detail"]
    assert doc["address"] == init["address"] and doc["nodeKeyHash"] == init["nodeKeyHash"]
    network = json.loads((home / "state.json").read_text())["network"]
    assert network["contracts"] == NETWORK["contracts"] and network["chainId"] == 8453
    assert network["version"] == "1.4.0" and network["coordinator"] == coord.url
    assert isinstance(network["fetchedAtMs"], int)
    assert coord.requests == ["/network"]
    assert secret(home) not in r.stdout + r.stderr
    plain = cli("verify", "--ollama", ollama.url, "--coordinator", coord.url)
    assert plain.returncode == 0 and plain.stdout.rstrip().endswith("all checks passed")


def test_no_key_fails_with_init_fix(cli, ollama, coord):
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 1 and doc["ok"] is False
    assert checks["key"]["fix"] == "parallelix-node init"
    assert checks["key-loadable"]["skipped"] is True
    assert checks["ollama"]["ok"] and checks["coordinator"]["ok"]


def test_key_readable_by_others_shows_chmod(cli, home, ollama, coord):
    cli.json("init")
    os.chmod(home / "node.key", 0o644)
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 1
    assert checks["key-permissions"]["ok"] is False
    assert checks["key-permissions"]["fix"] == f"chmod 600 {home / 'node.key'}"
    plain = cli("verify", "--ollama", ollama.url, "--coordinator", coord.url)
    assert plain.returncode == 1 and f"fix: chmod 600 {home / 'node.key'}" in plain.stdout


def test_open_home_folder_shows_chmod_700(cli, home, ollama, coord):
    cli.json("init")
    os.chmod(home, 0o755)
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 1 and checks["key-permissions"]["fix"] == f"chmod 700 {home}"


def test_corrupt_key_fails_without_printing_it(cli, home, ollama, coord):
    cli.json("init")
    junk = "0x" + "c0ffee" * 10 + "zz"
    (home / "node.key").write_text(junk + "\n")
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 1
    c = checks["key-loadable"]
    assert c["ok"] is False and "init --force" in c["fix"] and "backup" in c["fix"]
    plain = cli("verify", "--ollama", ollama.url, "--coordinator", coord.url)
    for out in (r.stdout, r.stderr, plain.stdout, plain.stderr):
        assert "c0ffee" not in out


def test_key_of_another_node_is_flagged(cli, home, ollama, coord, tmp_path):
    first = cli.json("init")
    other = tmp_path / "other"
    cli.json("init", "--home", str(other))
    (home / "node.key").write_bytes((other / "node.key").read_bytes())
    r, doc, checks = verify(cli, ollama.url, coord.url)
    assert r.returncode == 1 and checks["key-loadable"]["ok"] is False
    assert first["address"] in checks["key-loadable"]["detail"]
    assert secret(home) not in r.stdout + r.stderr


def test_unreachable_ollama(cli, coord, closed_port):
    cli.json("init")
    r, doc, checks = verify(cli, f"127.0.0.1:{closed_port}", coord.url)
    assert r.returncode == 1
    assert checks["ollama"]["ok"] is False
    assert f"not reachable at http://127.0.0.1:{closed_port}" in checks["ollama"]["detail"]
    assert checks["model"]["skipped"] is True


def test_missing_model_fix_is_models_pull(cli, ollama, coord):
    cli.json("init")
    r, doc, checks = verify(cli, ollama.url, coord.url, "--model", "qwen3")
    assert r.returncode == 1 and checks["model"]["ok"] is False
    assert checks["model"]["fix"] == f"parallelix-node models pull qwen3 --ollama {ollama.url}"


@pytest.mark.parametrize("skew", [120, -120])
def test_clock_skew_fails_with_time_sync_fix(cli, ollama, skew):
    cli.json("init")
    with FakeCoordinator(skew_s=skew) as skewed:
        r, doc, checks = verify(cli, ollama.url, skewed.url)
    assert r.returncode == 1
    assert checks["clock"]["ok"] is False and "timedatectl set-ntp true" in checks["clock"]["fix"]
    assert ("behind" if skew > 0 else "ahead") in checks["clock"]["detail"]
    assert checks["coordinator"]["ok"] is True


def test_small_skew_passes(cli, ollama):
    cli.json("init")
    with FakeCoordinator(skew_s=10) as skewed:
        r, doc, checks = verify(cli, ollama.url, skewed.url)
    assert checks["clock"]["ok"] is True and "behind" in checks["clock"]["detail"], checks["clock"]


def test_unreachable_coordinator(cli, ollama, closed_port):
    cli.json("init")
    r, doc, checks = verify(cli, ollama.url, f"http://127.0.0.1:{closed_port}")
    assert r.returncode == 1
    assert checks["coordinator"]["ok"] is False and checks["clock"]["skipped"] is True


def test_non_loopback_http_coordinator_is_exit_2(cli):
    r = cli("verify", "--coordinator", "http://example.com")
    assert r.returncode == 2
    assert "http://example.com" in one_error_line(r)


def test_bad_config_is_exit_2_naming_the_file(cli, home):
    cli.json("init")
    (home / "config.toml").write_text("[workers\n")
    r = cli("verify")
    assert r.returncode == 2
    assert str(home / "config.toml") in one_error_line(r)


def test_disk_check(tmp_path):
    home = Home(tmp_path / "not" / "yet")
    assert check_disk(home, minimum=0).ok is True
    low = check_disk(home, minimum=1 << 62)
    assert low.ok is False and low.fix and str(tmp_path) in low.detail
