"""`service install | uninstall | status`: rendered files checked by their own tools
(systemd-analyze verify, plistlib), and install/uninstall run against recording stand-ins for
systemctl, loginctl and launchctl first on PATH, so no test touches the real service managers,
the real ~/.config or /etc."""
import json
import os
import plistlib
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from node.settings import read_config
from tests.conftest import ROOT, clean_env, one_error_line

STANDINS = ROOT / "tests" / "fixtures" / "service-bin"
ENTRY = Path(sys.executable).parent / "parallelix-node"
UNIT = "parallelix-node.service"
LABEL = "io.parallelix.node"
ME = pwd.getpwuid(os.geteuid()).pw_name
# Runs the real CLI with sys.platform reporting macOS, so launchd install runs on this machine.
# Modules are imported first: the standard library picks macOS-only helpers at import time.
AS_MACOS = ("import sys, node.cli, node.commands.service; sys.platform = 'darwin'; "
            "node.cli.main()")


class Machine:
    """One fake machine: a HOME, XDG_CONFIG_HOME, node home and recording stand-ins on PATH."""

    def __init__(self, tmp: Path, home: Path | None = None) -> None:
        self.user_home = tmp / "userhome"
        self.config = tmp / "xdg-config"
        self.home = home or tmp / "node home"
        self.calls_file = tmp / "calls.jsonl"
        self.user_home.mkdir(exist_ok=True)
        self.env = clean_env(self.home, HOME=str(self.user_home), XDG_CONFIG_HOME=str(self.config),
                             STANDIN_CALLS=str(self.calls_file),
                             PATH=f"{STANDINS}:{ENTRY.parent}:/usr/bin:/bin")

    @property
    def unit_path(self) -> Path:
        return self.config / "systemd" / "user" / UNIT

    @property
    def plist_path(self) -> Path:
        return self.user_home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def run(self, *args: str, macos: bool = False, **env: str) -> subprocess.CompletedProcess:
        head = ["-c", AS_MACOS] if macos else ["-m", "node.cli"]
        return subprocess.run([sys.executable, *head, *args], cwd=ROOT, env={**self.env, **env},
                              capture_output=True, text=True, timeout=120)

    def json(self, *args: str, macos: bool = False, **env: str) -> dict:
        r = self.run(*args, "--json", macos=macos, **env)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def recorded(self) -> list[list[str]]:
        """The calls the stand-ins saw since the last look, and forget them."""
        if not self.calls_file.exists():
            return []
        calls = [json.loads(line) for line in self.calls_file.read_text().splitlines()]
        self.calls_file.write_text("")
        return calls


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def verify(unit_text: str, scope: str, folder: Path) -> list[str]:
    """Run systemd-analyze verify on the rendered unit; return the lines about our unit."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: run scripts/ensure-tools systemd-analyze=systemd"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / UNIT
    path.write_text(unit_text)
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    r = subprocess.run([analyze, *(["--user"] if scope == "user" else []), "verify", str(path)],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    about_us = [line for line in (r.stdout + r.stderr).splitlines()
                if UNIT in line or "parallelix" in line]
    assert r.returncode == 0 or about_us, (r.returncode, r.stdout, r.stderr)
    return about_us


def directives(unit_text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def unquote(value: str) -> list[str]:
    """Split a unit-file value as systemd does for the characters our test paths use."""
    return [w.replace("%%", "%") for w in shlex.split(value.replace("$$", "$"))]


LONG = "/srv/" + "very-long-folder-name/" * 5 + "node"
HOMES = {"plain": "/srv/parallelix", "odd": "/srv/parallelix node/a&b %c $d \"e\" 'f'",
         "long": LONG}


@pytest.mark.parametrize("scope", ["user", "system"])
@pytest.mark.parametrize("which", sorted(HOMES))
def test_rendered_unit_passes_systemd_analyze_verify(machine, tmp_path, scope, which):
    home = HOMES[which]
    doc = machine.json("service", "install", f"--{scope}", "--node-id", "4231", "--dry-run",
                       "--home", home, *(["--run-as", ME] if scope == "system" else []))
    assert doc["dryRun"] is True and doc["written"] is False and doc["calls"] == []
    text = doc["content"]
    assert verify(text, scope, tmp_path / "verify") == []
    d = directives(text)
    assert unquote(d["ExecStart"][0]) == [str(ENTRY), "start", "--node-id", "4231", "--home", home]
    assert unquote(d["Environment"][0]) == [f"PARALLELIX_HOME={home}"]
    rw = unquote(d["ReadWritePaths"][0])
    assert rw == ([home, "/tmp"] if which == "long" else [home])
    assert d["PrivateTmp"] == (["no"] if which == "long" else ["yes"])
    for key, value in {"Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
                       "RestartSec": "5", "RestartPreventExitStatus": "2 3", "WatchdogSec": "30",
                       "KillMode": "mixed", "TimeoutStopSec": "30", "NoNewPrivileges": "yes",
                       "ProtectSystem": "strict", "ProtectHome": "read-only",
                       "ExecReload": "/bin/kill -HUP $MAINPID", "LimitCORE": "0"}.items():
        assert d[key] == [value], key
    if scope == "system":
        assert d["User"] == [ME]
        assert d["Wants"] == ["network-online.target"]
        assert d["After"] == ["network-online.target nvidia-persistenced.service ollama.service"]
        assert d["WantedBy"] == ["multi-user.target"]
        assert doc["path"] == "/etc/systemd/system/parallelix-node.service"
    else:
        assert "User" not in d and "After" not in d
        assert d["WantedBy"] == ["default.target"]
        assert doc["path"] == str(machine.unit_path)
    assert machine.recorded() == [] and not machine.unit_path.exists()


def test_verify_check_catches_a_broken_unit(machine, tmp_path):
    """The verify helper must see a real mistake, or the test above proves nothing."""
    text = machine.json("service", "install", "--user", "--node-id", "1", "--dry-run",
                        "--home", HOMES["odd"])["content"]
    broken = "\n".join(line.replace('"', "") if line.startswith("ReadWritePaths=") else line
                       for line in text.splitlines())
    assert any("ReadWritePaths" in line for line in verify(broken, "user", tmp_path / "v"))


def test_home_in_tmp_turns_private_tmp_off(machine, tmp_path):
    text = machine.json("service", "install", "--user", "--node-id", "3", "--dry-run")["content"]
    assert directives(text)["PrivateTmp"] == ["no"]
    assert unquote(directives(text)["ReadWritePaths"][0]) == [str(machine.home)]
    assert verify(text, "user", tmp_path / "v") == []


@pytest.mark.parametrize("scope", ["user", "system"])
def test_plist_parses_and_has_the_keys(machine, scope):
    home = "/Users/alice/Node & <Co> \"q\""
    doc = machine.json("service", "install", f"--{scope}", "--node-id", "77", "--dry-run",
                       "--platform", "macos", "--home", home,
                       *(["--run-as", ME] if scope == "system" else []))
    assert doc["platform"] == "macos" and doc["written"] is False
    plist = plistlib.loads(doc["content"].encode())
    assert plist["Label"] == LABEL
    assert plist["ProgramArguments"] == [str(ENTRY), "start", "--node-id", "77", "--home", home]
    assert Path(plist["ProgramArguments"][0]).is_absolute()
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ThrottleInterval"] >= 10
    assert plist["ExitTimeOut"] > 15
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == f"{home}/launchd.log"
    env = plist["EnvironmentVariables"]
    assert env["PARALLELIX_HOME"] == home
    assert env["PATH"].split(":")[0] == str(ENTRY.parent) and "/usr/bin" in env["PATH"]
    if scope == "system":
        assert plist["UserName"] == ME
        assert doc["path"] == f"/Library/LaunchDaemons/{LABEL}.plist"
    else:
        assert "UserName" not in plist
        assert doc["path"] == str(machine.plist_path)


def test_dry_run_human_prints_only_the_file(machine):
    r = machine.run("service", "install", "--user", "--node-id", "5", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# parallelix-node") and "[Service]" in r.stdout
    assert "would write" in r.stderr and str(machine.unit_path) in r.stderr
    assert not machine.unit_path.exists() and not machine.home.exists()


def test_node_id_comes_from_config(machine):
    machine.home.mkdir(mode=0o700)
    (machine.home / "config.toml").write_text("node_id = 99\n")
    doc = machine.json("service", "install", "--user", "--dry-run")
    assert doc["nodeId"] == 99
    assert "--node-id 99 " in directives(doc["content"])["ExecStart"][0]


def test_no_node_id_is_a_usage_error(machine):
    r = machine.run("service", "install", "--user", "--dry-run")
    assert r.returncode == 2
    assert "pass --node-id N (from the Console)" in one_error_line(r)


def test_other_platform_needs_dry_run(machine):
    r = machine.run("service", "install", "--user", "--node-id", "1", "--platform", "macos")
    assert r.returncode == 2
    assert "--dry-run" in one_error_line(r)
    assert machine.recorded() == [] and not machine.plist_path.exists()


def test_user_and_system_together_is_a_usage_error(machine):
    r = machine.run("service", "install", "--user", "--system", "--node-id", "1", "--dry-run")
    assert r.returncode == 2 and "not both" in one_error_line(r)


def test_missing_entry_point_is_refused(machine, tmp_path):
    """A Python with no parallelix-node beside it and none on PATH: exit 2, one line."""
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    site = sysconfig.get_paths()["purelib"]
    env = {**machine.env, "PATH": f"{STANDINS}:/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}"}
    assert shutil.which("parallelix-node", path=env["PATH"]) is None
    r = subprocess.run([str(bare / "python3"), "-m", "node.cli", "service", "install", "--user",
                        "--node-id", "1", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "cannot find the parallelix-node program" in one_error_line(r)


def test_user_install_reinstall_status_uninstall_linux(machine):
    # First install: linger, reload, enable --now; the file is what --dry-run showed.
    shown = machine.json("service", "install", "--user", "--node-id", "7", "--dry-run")["content"]
    doc = machine.json("service", "install", "--user", "--node-id", "7")
    expected = [["loginctl", "enable-linger", ME],
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "--now", UNIT]]
    assert doc["calls"] == expected
    assert machine.recorded() == expected
    assert (doc["action"], doc["platform"], doc["scope"], doc["written"], doc["change"]) == \
           ("install", "linux", "user", True, "created")
    assert doc["path"] == str(machine.unit_path)
    assert machine.unit_path.read_text() == shown
    assert stat.S_IMODE(machine.unit_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(machine.home.stat().st_mode) == 0o700   # ReadWritePaths needs it to exist
    before = machine.unit_path.stat()

    # Again, same settings: harmless, the file is untouched.
    again = machine.json("service", "install", "--user", "--node-id", "7")
    assert (again["written"], again["change"]) == (False, "unchanged")
    assert machine.recorded() == expected
    after = machine.unit_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # A new node id: the file is replaced and the running service restarted onto it.
    changed = machine.json("service", "install", "--user", "--node-id", "8")
    assert changed["change"] == "updated" and changed["written"] is True
    assert machine.recorded() == [["loginctl", "enable-linger", ME],
                                  ["systemctl", "--user", "daemon-reload"],
                                  ["systemctl", "--user", "enable", UNIT],
                                  ["systemctl", "--user", "restart", UNIT]]
    assert "--node-id 8 " in machine.unit_path.read_text()

    status = machine.json("service", "status")
    assert (status["installed"], status["enabled"], status["active"]) == (True, True, True)
    assert status["scope"] == "user"
    assert status["manager"]["ActiveState"] == "active"
    assert status["manager"]["UnitFileState"] == "enabled"
    assert status["manager"]["MainPID"] != "0"
    show = machine.recorded()
    assert len(show) == 1 and show[0][:4] == ["systemctl", "--user", "show", UNIT]
    human = machine.run("service", "status")
    assert human.returncode == 0
    assert "ActiveState=active" in human.stdout and "journalctl --user -u parallelix-node" in human.stdout
    machine.recorded()

    gone = machine.json("service", "uninstall", "--user")
    assert gone["removed"] is True
    assert gone["calls"] == machine.recorded() == [
        ["systemctl", "--user", "disable", "--now", UNIT], ["systemctl", "--user", "daemon-reload"]]
    assert not machine.unit_path.exists() and machine.home.exists()
    status = machine.json("service", "status", "--user")
    assert (status["installed"], status["enabled"], status["active"]) == (False, False, False)
    machine.recorded()
    assert machine.json("service", "uninstall", "--user")["removed"] is False
    assert machine.recorded() == []


def test_linger_failure_stops_before_writing(machine):
    r = machine.run("service", "install", "--user", "--node-id", "7",
                    STANDIN_FAIL="loginctl enable-linger",
                    STANDIN_FAIL_MESSAGE="Could not enable linger: Access denied")
    assert r.returncode == 1
    line = one_error_line(r)
    assert "Access denied" in line and f"sudo loginctl enable-linger {ME}" in line
    assert machine.recorded() == [["loginctl", "enable-linger", ME]]
    assert not machine.unit_path.exists()


def test_unreachable_user_manager_says_how_to_log_in(machine):
    r = machine.run("service", "install", "--user", "--node-id", "7",
                    STANDIN_FAIL="systemctl --user daemon-reload",
                    STANDIN_FAIL_MESSAGE="Failed to connect to bus: No medium found")
    assert r.returncode == 1
    line = one_error_line(r)
    assert "Failed to connect to bus" in line and "not su or sudo -u" in line


def test_json_error_is_one_document(machine):
    r = machine.run("service", "install", "--user", "--dry-run", "--json")
    assert r.returncode == 2
    assert json.loads(r.stdout)["exitCode"] == 2


@pytest.fixture(scope="module")
def nobody_tree():
    """What the CLI needs to run as `nobody`, in a folder of its own: the checkout may sit
    in a folder other users cannot enter (CI clones into a 0700 `mktemp -d`). The packages,
    their dependencies, the service stand-ins and a `parallelix-node` entry point are copied
    into a 0755 folder; the base interpreter runs them (a venv's python is a link into it)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to another account")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    root = Path(tempfile.mkdtemp(prefix="parallelix-nobody-"))
    os.chmod(root, 0o755)
    lib, bin_dir = root / "lib", root / "bin"
    shutil.copytree(sysconfig.get_paths()["purelib"], lib,
                    ignore=shutil.ignore_patterns("__editable__*"))  # it points into ROOT
    code = shutil.ignore_patterns("__pycache__")
    for package in ("node", "workers", "ipc"):
        shutil.copytree(ROOT / package, lib / package, ignore=code)
    shutil.copytree(ROOT / "service-templates", lib / "node" / "service" / "templates",
                    ignore=code)
    shutil.copytree(STANDINS, bin_dir, ignore=code)
    python = Path(getattr(sys, "_base_executable", sys.executable))
    entry = bin_dir / "parallelix-node"
    entry.write_text(f"#!{python} -s\nfrom node.cli import main\nmain()\n")
    entry.chmod(0o755)
    try:
        yield setpriv, python, root
    finally:
        shutil.rmtree(root)


def _nobody_run(tree, args: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the CLI as nobody (uid/gid 65534) from `nobody_tree`; also return its scratch
    folder (its HOME, with the stand-ins' call log)."""
    setpriv, python, root = tree
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=root))
    os.chmod(scratch, 0o777)
    env = clean_env(scratch / "home", HOME=str(scratch), XDG_CONFIG_HOME=str(scratch / "cfg"),
                    STANDIN_CALLS=str(scratch / "calls.jsonl"), PYTHONPATH=str(root / "lib"),
                    PATH=f"{root / 'bin'}:/usr/bin:/bin")
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           str(python), "-s", "-m", "node.cli", *args], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=60), scratch


SYSTEM_SCOPE = [["install", "--system", "--node-id", "7"], ["uninstall", "--system"]]


@pytest.mark.parametrize("args", SYSTEM_SCOPE)
def test_system_scope_without_root_is_refused(args, request, tmp_path):
    if os.geteuid() == 0:  # switch to nobody
        r, scratch = _nobody_run(request.getfixturevalue("nobody_tree"), ["service", *args])
    else:
        scratch = tmp_path
        r = subprocess.run([sys.executable, "-m", "node.cli", "service", *args], cwd=ROOT,
                           env=clean_env(tmp_path / "home", HOME=str(tmp_path),
                                         STANDIN_CALLS=str(tmp_path / "calls.jsonl"),
                                         PATH=f"{STANDINS}:/usr/bin:/bin"),
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    line = one_error_line(r)
    assert "needs root" in line and "sudo" in line
    assert not (scratch / "calls.jsonl").exists()


def test_system_dry_run_needs_no_root(nobody_tree):
    r, _ = _nobody_run(nobody_tree, ["service", "install", "--system", "--node-id", "7",
                                     "--dry-run", "--run-as", ME, "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert directives(doc["content"])["User"] == [ME]
    assert "/bin/parallelix-node " in directives(doc["content"])["ExecStart"][0]


def test_user_install_reinstall_status_uninstall_macos(machine):
    uid = os.geteuid()
    service = f"gui/{uid}/{LABEL}"
    doc = machine.json("service", "install", "--user", "--node-id", "12", macos=True)
    assert (doc["platform"], doc["scope"], doc["change"]) == ("macos", "user", "created")
    assert doc["path"] == str(machine.plist_path)
    expected = [["launchctl", "print", service],
                ["launchctl", "enable", service],
                ["launchctl", "bootstrap", f"gui/{uid}", str(machine.plist_path)],
                ["launchctl", "kickstart", service]]
    assert doc["calls"] == machine.recorded() == expected
    plist = plistlib.loads(machine.plist_path.read_bytes())
    assert plist["ProgramArguments"][2:4] == ["--node-id", "12"]

    # Again: already loaded and unchanged, so no second bootstrap (which launchd would refuse).
    again = machine.json("service", "install", "--user", "--node-id", "12", macos=True)
    assert again["change"] == "unchanged"
    assert machine.recorded() == [["launchctl", "print", service],
                                  ["launchctl", "enable", service],
                                  ["launchctl", "kickstart", service]]

    changed = machine.json("service", "install", "--user", "--node-id", "13", macos=True)
    assert changed["change"] == "updated"
    assert machine.recorded() == [["launchctl", "print", service],
                                  ["launchctl", "bootout", service],
                                  ["launchctl", "enable", service],
                                  ["launchctl", "bootstrap", f"gui/{uid}", str(machine.plist_path)],
                                  ["launchctl", "kickstart", service]]

    status = machine.json("service", "status", macos=True)
    assert (status["installed"], status["enabled"], status["active"]) == (True, True, True)
    assert status["manager"]["state"] == "running"
    assert status["manager"]["path"] == str(machine.plist_path)
    assert status["manager"]["override"] == "enabled"
    assert status["manager"]["last exit code"] == "(never exited)"
    assert machine.recorded() == [["launchctl", "print", service],
                                  ["launchctl", "print-disabled", f"gui/{uid}"]]

    gone = machine.json("service", "uninstall", macos=True)
    assert gone["removed"] is True and not machine.plist_path.exists()
    assert machine.recorded() == [["launchctl", "print", service], ["launchctl", "bootout", service]]
    status = machine.json("service", "status", "--user", macos=True)
    assert (status["installed"], status["active"]) == (False, False)
    assert status["manager"]["loaded"] == "no" and "Could not find service" in status["manager"]["error"]


def test_templates_are_found(machine):
    """Without the package mapping (editable install) the repository folder is used."""
    r = subprocess.run([sys.executable, "-c",
                        "from node.service import template; "
                        "print(template('parallelix-node.service.in').template[:16]); "
                        "print(template('io.parallelix.node.plist.in').template[:5])"],
                       cwd=tempfile.gettempdir(), env=machine.env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["# parallelix-nod", "<?xml"]


def test_run_as_must_own_the_home(machine):
    machine.home.mkdir(mode=0o700)
    owner = pwd.getpwuid(machine.home.stat().st_uid).pw_name
    other = "nobody" if owner != "nobody" else "root"
    r = machine.run("service", "install", "--system", "--node-id", "1", "--dry-run",
                    "--run-as", other)
    assert r.returncode == 2
    assert f"pass --run-as {owner}" in one_error_line(r)
    r = machine.run("service", "install", "--system", "--node-id", "1", "--dry-run",
                    "--run-as", "no-such-user-here")
    assert r.returncode == 2 and "no user 'no-such-user-here'" in one_error_line(r)


def test_metrics_pass_through_to_the_service_from_the_flag_or_config(machine):
    doc = machine.json("service", "install", "--user", "--node-id", "5", "--dry-run",
                       "--metrics", "9464")
    assert doc["metrics"] == "127.0.0.1:9464"
    assert directives(doc["content"])["ExecStart"][0].endswith(" --metrics 127.0.0.1:9464")
    machine.home.mkdir(mode=0o700)
    (machine.home / "config.toml").write_text('node_id = 5\nmetrics = "[::1]:9100"\n')
    doc = machine.json("service", "install", "--user", "--dry-run", "--platform", "macos")
    assert plistlib.loads(doc["content"].encode())["ProgramArguments"][-2:] == \
        ["--metrics", "[::1]:9100"]
    doc = machine.json("service", "install", "--user", "--dry-run")
    assert "--metrics" in directives(doc["content"])["ExecStart"][0]
    r = machine.run("service", "install", "--user", "--dry-run", "--metrics", "nowhere:1")
    assert r.returncode == 2 and "--metrics" in one_error_line(r)


def test_install_takes_the_settings_of_start_and_saves_what_only_the_shell_had(machine):
    """Issue 13: the service runs with what the operator's shell and flags said, and says so."""
    assert machine.run("init").returncode == 0
    shell = {"OLLAMA_HOST": "127.0.0.1:11500", "PARALLELIX_COORDINATOR": "http://127.0.0.1:8999"}
    dry = machine.json("service", "install", "--user", "--node-id", "7", "--model", "qwen2",
                       "--workers", "2", "--cpu", "--dry-run", **shell)
    assert "node_id" not in read_config(machine.home / "config.toml")
    assert dry["saved"] == {"node_id": 7, "coordinator": "http://127.0.0.1:8999",
                            "ollama": "http://127.0.0.1:11500", "model": "qwen2"}

    r = machine.run("service", "install", "--user", "--node-id", "7", "--model", "qwen2",
                    "--workers", "2", "--cpu", **shell)
    assert r.returncode == 0, r.stderr
    for name in shell:
        assert f"note: {name} is set only in this shell's environment" in r.stderr
    assert "coordinator  http://127.0.0.1:8999" in r.stdout
    assert "ollama       http://127.0.0.1:11500" in r.stdout and "model        qwen2" in r.stdout
    assert r.stdout.index("model        qwen2") < r.stdout.index("ran: systemctl")
    saved = read_config(machine.home / "config.toml")
    assert (saved["node_id"], saved["coordinator"], saved["ollama"], saved["model"]) == \
        (7, "http://127.0.0.1:8999", "http://127.0.0.1:11500", "qwen2")
    exec_start = unquote(directives(machine.unit_path.read_text())["ExecStart"][0])
    assert exec_start[-3:] == ["--workers", "2", "--cpu"]
    # What the service's own process resolves, with none of the shell's variables:
    seen = machine.json("status")
    assert (seen["nodeId"], seen["coordinator"], seen["ollama"], seen["model"]) == \
        (7, "http://127.0.0.1:8999", ["http://127.0.0.1:11500"], "qwen2")


def test_install_refuses_gpu_with_cpu(machine):
    r = machine.run("service", "install", "--user", "--node-id", "7", "--gpu", "--cpu",
                    "--dry-run")
    assert r.returncode == 2 and "--gpu and --cpu" in one_error_line(r)


def test_status_without_systemd_says_so_without_recommending_itself(machine):
    r = machine.run("service", "status", "--user", STANDIN_FAIL="systemctl --user show",
                    STANDIN_FAIL_MESSAGE="System has not been booted with systemd as init "
                                         "system (PID 1). Can't operate.")
    assert r.returncode == 1
    line = one_error_line(r)
    assert "systemd does not run on this machine" in line and "parallelix-node status" in line
    assert "service status" not in line and "--property" not in line
