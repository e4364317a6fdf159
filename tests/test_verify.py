"""`verify`: every check against loopback fakes, with the fix printed for each failure."""
import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert list(checks) == ["python", "packages", "key", "key-permissions", "key-loadable",
                            "ollama", "model", "coordinator", "clock", "disk"]
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


def installed_distribution(site: Path, name: str, version: str, *files: str) -> None:
    """What pip leaves in site-packages for a distribution: its dist-info with METADATA and RECORD."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in (*files, f"{info.name}/RECORD")))
    for f in files:
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        (site / f).write_text("")


def test_another_distribution_installing_node_is_reported(cli, home, ollama, coord, tmp_path):
    """PyPI's `node` 2.0.0 and `workers` 0.1 in the same environment: verify names them."""
    site = tmp_path / "site"
    installed_distribution(site, "node", "2.0.0")
    installed_distribution(site, "workers", "0.1")
    (site / "node-2.0.0.dist-info" / "RECORD").write_text("node/__init__.py,,\n")
    (site / "workers-0.1.dist-info" / "RECORD").write_text("workers/core.py,,\n")
    r, doc, checks = verify(cli, ollama.url, coord.url, env={"PYTHONPATH": str(site)})
    assert r.returncode == 1 and checks["packages"]["ok"] is False
    assert checks["packages"]["detail"] == (
        "the distribution node 2.0.0 also installs node in this environment; "
        "the distribution workers 0.1 also installs workers in this environment")
    assert checks["packages"]["fix"].startswith("reinstall parallelix-node in an environment of its own")
    assert checks["ollama"]["ok"] and checks["coordinator"]["ok"]


def test_a_foreign_ipc_package_first_on_the_path_is_reported(cli, ollama, coord, tmp_path):
    """Run as the installed command (not `python -m` from the checkout, which puts the checkout
    first on sys.path), so a foreign `ipc` earlier on the path is the one Python finds."""
    site = tmp_path / "site"
    installed_distribution(site, "ipc", "1.2.1", "ipc/__init__.py")
    command = Path(sys.executable).parent / "parallelix-node"
    r = subprocess.run([command, "verify", "--json", "--ollama", ollama.url, "--coordinator",
                        coord.url], cwd=tmp_path, env={**cli.env, "PYTHONPATH": str(site)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    detail = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["packages"]["detail"]
    assert detail.startswith(f"ipc resolves to {site / 'ipc'}, not to ")
    assert detail.endswith("; the distribution ipc 1.2.1 also installs ipc in this environment")


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
