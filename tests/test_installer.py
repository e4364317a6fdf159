"""install.sh, the one-line installer, run for real: shellcheck, dash and `bash --posix`, an
end-to-end install in a throwaway HOME from this checkout (fresh, upgrade, uninstall, purge),
the Ollama step against stand-ins on PATH, and its refusals.

PATH holds only what a test puts there: links to the system tools the installer uses (python3
among them unless a test leaves it out), the recording stand-ins of tests/fixtures/installer-bin
(curl, systemctl, brew) and a folder where Ollama's installer or brew drop the ollama stand-in.
Nothing is downloaded: the curl stand-in serves tests/fixtures/installer/ollama-install.sh, and
pip installs from the package index this machine is configured with. One fresh install is
shared by the module (it takes about a minute); later runs reinstall a wheel built once.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

# A fresh install creates a venv and pip-installs the node with its dependencies (about a
# minute, more on a busy machine), within the first test's time: its budget, not a retry.
pytestmark = pytest.mark.timeout(600)

INSTALL = ROOT / "install.sh"
FIXTURES = ROOT / "tests" / "fixtures"
STANDINS = FIXTURES / "installer-bin"
SERVICE_STANDINS = FIXTURES / "service-bin"
OLLAMA_URL = "https://ollama.com/install.sh"
TOOLS = ("sh", "dash", "bash", "uname", "id", "df", "awk", "mktemp", "rm", "mkdir", "chmod",
         "dirname", "basename", "ln", "cat", "grep", "mv", "sleep", "tr", "nohup", "cp", "sed")
SHELLS = {"dash": ["dash"], "bash --posix": ["bash", "--posix"]}
VERSION = "0.1.0"


def base_python() -> str:
    """The interpreter the test venv was made from: what an operator's python3 would be."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def closed_url() -> str:
    """A loopback address nothing listens on: verify's coordinator and Ollama checks fail fast."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Machine:
    """A throwaway HOME with its own PATH; `run` runs install.sh there with no terminal."""

    def __init__(self, root: Path, python: bool = True) -> None:
        self.home = root / "home"
        self.drop = root / "drop-bin"      # where the ollama stand-in lands
        self.system = root / "system-bin"
        self.calls = root / "calls.jsonl"
        for folder in (self.home, self.drop, self.system):
            folder.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            (self.system / tool).symlink_to(shutil.which(tool))
        if python:
            (self.system / "python3").symlink_to(base_python())
        self.coordinator = closed_url()

    @property
    def venv(self) -> Path:
        return self.home / ".parallelix" / "venv"

    @property
    def link(self) -> Path:
        return self.home / ".local" / "bin" / "parallelix-node"

    @property
    def key(self) -> Path:
        return self.home / ".parallelix" / "node.key"

    def env(self, extra_path: tuple[Path, ...] = (), **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
        env.update(HOME=str(self.home), LANG="C.UTF-8", STANDIN_CALLS=str(self.calls),
                   PATH=":".join(map(str, (*extra_path, self.drop, self.system))),
                   PARALLELIX_COORDINATOR=self.coordinator, OLLAMA_HOST=closed_url(),
                   OLLAMA_STANDIN_BIN=str(self.drop),
                   OLLAMA_STANDIN_BINARY=str(FIXTURES / "installer" / "ollama"),
                   OLLAMA_STANDIN_PYTHON=sys.executable,
                   OLLAMA_STANDIN_SERVER=str(ROOT / "scripts" / "ollama_standin.py"))
        env.update(extra)
        return env

    def run(self, *args: str, shell: str = "dash", spec: Path | None = None,
            extra_path: tuple[Path, ...] = (), **extra: str) -> subprocess.CompletedProcess:
        """install.sh with its own session (no controlling terminal, as in CI or over a pipe)."""
        if spec is not None:
            extra["PARALLELIX_NODE_SPEC"] = str(spec)
        return subprocess.run([*SHELLS[shell], str(INSTALL), *args], cwd=self.home,
                              env=self.env(extra_path, **extra), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=600,
                              start_new_session=True)

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.link), *args], env=self.env(**extra),
                              capture_output=True, text=True, timeout=60)

    def recorded(self, program: str | None = None) -> list[list[str]]:
        """The stand-ins' calls since the last look (those of `program` only), then forget all."""
        if not self.calls.exists():
            return []
        calls = [json.loads(line) for line in self.calls.read_text().splitlines()]
        self.calls.write_text("")
        return [c for c in calls if program is None or c[0] == program]

    def stop_ollama(self) -> None:
        """Stop the `ollama serve` a stand-in service manager started, if any."""
        pidfile = Path(f"{self.calls}.ollama-serve.pid")
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pidfile.unlink()

    def nothing_installed(self) -> bool:
        return not self.venv.exists() and not os.path.lexists(self.link)


def fake(folder: Path, name: str, script: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return folder


def uname(folder: Path, system: str, machine: str, release: str) -> Path:
    return fake(folder, "uname", f'case "$1" in -s) echo {system} ;; -m) echo {machine} ;; '
                                 f'-r) echo {release} ;; esac')


def one_error(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


@pytest.fixture
def ollama_port() -> Iterator[int]:
    """A loopback port held (bound, SO_REUSEADDR, not listening) so no other test takes it
    before the stand-in `ollama serve` binds it (Linux lets it, since nothing listens)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# ------------------------------------------------------------------ the script itself

def test_shellcheck_is_clean():
    scripts = [INSTALL, FIXTURES / "installer" / "ollama-install.sh", FIXTURES / "installer" / "ollama"]
    r = subprocess.run(["shellcheck", "--shell=sh", *map(str, scripts)], capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize("shell", SHELLS)
def test_help_and_a_bad_option(tmp_path, shell):
    machine = Machine(tmp_path)
    r = machine.run("--help", shell=shell)
    assert r.returncode == 0 and r.stdout.startswith("Install parallelix-node"), r
    assert "PARALLELIX_NODE_SPEC" in r.stdout and "--uninstall" in r.stdout
    r = machine.run("--frobnicate", shell=shell)
    assert r.returncode == 2
    assert one_error(r) == "error: unknown option --frobnicate; see: sh install.sh --help"


# ------------------------------------------------------------------ refusals

def debian_like() -> bool:
    text = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    return any(word in text for word in ("ID=debian", "ID=ubuntu", "ID_LIKE=debian"))


@pytest.mark.parametrize("shell", SHELLS)
def test_missing_python_names_the_package(tmp_path, shell):
    machine = Machine(tmp_path, python=False)
    r = machine.run("--no-ollama", shell=shell, spec=ROOT)
    assert r.returncode == 1
    line = one_error(r)
    assert line.startswith("error: Python 3.10 or newer is needed and none was found on PATH; "
                           "install it: ")
    if debian_like():
        assert line.endswith("install it: sudo apt-get install -y python3 python3-venv")
    assert machine.nothing_installed()


@pytest.mark.parametrize("shell", SHELLS)
def test_an_old_python_is_named_and_wsl2_is_recognised(tmp_path, shell):
    machine = Machine(tmp_path, python=False)
    fakes = fake(tmp_path / "fake", "python3", 'case "$1" in --version) echo "Python 3.8.10" ;; '
                 '*) exit 1 ;; esac')
    uname(fakes, "Linux", "x86_64", "5.15.153.1-microsoft-standard-WSL2")
    r = machine.run("--no-ollama", shell=shell, spec=ROOT, extra_path=(fakes,))
    assert r.returncode == 1
    assert r.stdout == "Machine:  WSL2 (Linux x86_64)\n"
    line = one_error(r)
    assert line.startswith("error: Python 3.10 or newer is needed and python3 is Python 3.8.10; "
                           "install it: ")
    if debian_like():
        assert line.endswith("install it: sudo apt-get install -y python3 python3-venv")
    assert machine.nothing_installed()


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("system, arch, release, message", [
    ("FreeBSD", "amd64", "14.1-RELEASE", "error: unsupported operating system: FreeBSD; "
     "parallelix-node runs on Linux (x86_64, arm64), macOS and Windows through WSL 2"),
    ("Linux", "riscv64", "6.6.0", "error: unsupported processor: riscv64 on Linux; "
     "parallelix-node runs on x86_64 and arm64"),
    ("Linux", "x86_64", "4.4.0-19041-Microsoft", "error: this is WSL 1, which cannot run the "
     "node; convert the distribution to WSL 2 from Windows (wsl --set-version <distro> 2) and "
     "run this again"),
])
def test_unsupported_machines_are_refused(tmp_path, shell, system, arch, release, message):
    machine = Machine(tmp_path)
    r = machine.run("--no-ollama", shell=shell, spec=ROOT,
                    extra_path=(uname(tmp_path / "fake", system, arch, release),))
    assert (r.returncode, one_error(r)) == (1, message)
    assert machine.nothing_installed()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_full_disk_is_refused(tmp_path, shell):
    machine = Machine(tmp_path)
    df = fake(tmp_path / "fake", "df", 'echo "Filesystem 1024-blocks Used Available Capacity '
              'Mounted on"; echo "/dev/vda 1000000 990000 10240 99% /"')
    r = machine.run("--no-ollama", shell=shell, spec=ROOT, extra_path=(df,))
    assert r.returncode == 1
    assert one_error(r) == (f"error: only 10 MiB free under {machine.home}; parallelix-node "
                            "needs 1 GiB (and a model several more): free some space and run "
                            "this again")
    assert machine.nothing_installed()


@pytest.mark.parametrize("shell", SHELLS)
def test_a_failed_download_stops_before_installing_anything(tmp_path, shell):
    machine = Machine(tmp_path)
    r = machine.run("--yes", shell=shell, spec=ROOT, extra_path=(STANDINS,), STANDIN_FAIL="curl",
                    STANDIN_FAIL_MESSAGE="curl: (6) Could not resolve host: ollama.com",
                    STANDIN_FAIL_STATUS="6")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "curl: (6) Could not resolve host: ollama.com"  # curl's own line first
    assert lines[1:] == [f"error: could not download Ollama's installer from {OLLAMA_URL} (curl "
                         "exit 6); check the network and run this again, or install Ollama "
                         "yourself and use --no-ollama"]
    assert [c[:3] for c in machine.recorded()] == [["curl", "-fsSL", OLLAMA_URL]]
    assert machine.nothing_installed() and not (machine.drop / "ollama").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_without_a_terminal_it_needs_yes_or_no_ollama(tmp_path, shell):
    machine = Machine(tmp_path)
    r = machine.run(shell=shell, spec=ROOT, extra_path=(STANDINS,))
    assert r.returncode == 1
    assert one_error(r) == ("error: Ollama is not installed and there is no terminal to ask: "
                            "run again with --yes to install it, or --no-ollama to skip it")
    assert machine.recorded() == [] and machine.nothing_installed()


@pytest.mark.parametrize("spec, message", [
    ("not a spec", "error: PARALLELIX_NODE_SPEC=not a spec must be a version, a wheel or a "
                   "source folder"),
    ("/nowhere/parallelix_node-0.1.0-py3-none-any.whl",
     "error: PARALLELIX_NODE_SPEC=/nowhere/parallelix_node-0.1.0-py3-none-any.whl: no such file "
     "or folder"),
])
def test_a_bad_spec_is_refused(tmp_path, spec, message):
    machine = Machine(tmp_path)
    r = machine.run("--no-ollama", PARALLELIX_NODE_SPEC=spec)
    assert (r.returncode, one_error(r)) == (1, message)
    assert machine.nothing_installed()


def test_a_failed_fresh_install_leaves_nothing_behind(tmp_path):
    """pip fails (the spec is a folder that is no Python project): the new venv goes, no link."""
    machine = Machine(tmp_path)
    empty = tmp_path / "not-a-project"
    empty.mkdir()
    r = machine.run("--no-ollama", spec=empty)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        f"error: pip could not install {empty} (see its message above); nothing was linked, run "
        "this again once the cause is fixed")
    assert machine.nothing_installed() and (machine.home / ".parallelix").is_dir()


TOOL_STANDIN = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["STANDIN_CALLS"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
args = sys.argv[1:]
if "install" in args:
    link = os.path.join(os.environ[BIN_VARIABLE], "parallelix-node")
    with open(link, "w") as f:
        f.write("#!/bin/sh\\necho 'parallelix-node 0.1.0 (installed by the stand-in)'\\n")
    os.chmod(link, 0o755)
elif "list" in args:
    print(LISTED)
"""


@pytest.mark.parametrize("flag, tool, bin_variable, listed, install, uninstall", [
    ("--pipx", "pipx", "PIPX_BIN_DIR", "parallelix-node 0.1.0", ["install", "--force"],
     ["uninstall", "parallelix-node"]),
    ("--uv", "uv", "UV_TOOL_BIN_DIR", "parallelix-node v0.1.0", ["tool", "install", "--force"],
     ["tool", "uninstall", "parallelix-node"]),
])
def test_pipx_and_uv_when_asked_for(tmp_path, flag, tool, bin_variable, listed, install,
                                    uninstall):
    machine = Machine(tmp_path)
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / tool).write_text(TOOL_STANDIN.replace("BIN_VARIABLE", repr(bin_variable))
                               .replace("LISTED", repr(listed)))
    (folder / tool).chmod(0o755)
    machine.link.parent.mkdir(parents=True)
    r = machine.run("--no-ollama", flag, spec=ROOT, extra_path=(folder,))
    assert r.returncode == 0, r
    assert machine.recorded() == [[tool, *install, str(ROOT)]]
    assert f"Installed: parallelix-node 0.1.0 (installed by the stand-in) at {machine.link}" \
        in r.stdout
    r = machine.run("--uninstall", extra_path=(folder,))
    assert r.returncode == 0, r
    calls = machine.recorded()
    assert calls[-1] == [tool, *uninstall], calls


# ------------------------------------------------------------------ end to end, one HOME

@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Iterator[Machine]:
    machine = Machine(tmp_path_factory.mktemp("installer"))
    yield machine
    machine.stop_ollama()


@pytest.fixture(scope="module")
def fresh(machine) -> subprocess.CompletedProcess:
    """The first run, from this checkout: a fresh install."""
    r = machine.run("--no-ollama", spec=ROOT)
    assert r.returncode == 0, r
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """This checkout as a wheel, built once: reinstalling the same version is quick."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("parallelix_node-*.whl"))


def test_fresh_install_links_a_command_that_runs(machine, fresh):
    out = fresh.stdout
    assert f"==> Installing parallelix-node into {machine.venv}" in out
    assert "Ollama:   skipped (--no-ollama)" in out
    assert os.readlink(machine.link) == str(machine.venv / "bin" / "parallelix-node")
    r = machine.cli("version")
    assert r.returncode == 0 and r.stdout.startswith(f"parallelix-node {VERSION} "), r
    assert f"Installed: {r.stdout.strip()} at {machine.link}" in out
    assert f"{machine.link.parent} is not on your PATH; add it" in out
    assert f"ok    packages         node, workers, ipc from {machine.venv}/lib/" in out
    assert "  1. parallelix-node init" in out and "service install --node-id N" in out
    assert not (machine.home / ".profile").exists()  # no --modify-path: no profile edited


def test_second_run_upgrades_in_place_and_keeps_the_key(machine, fresh):
    if not machine.key.exists():
        assert machine.cli("init").returncode == 0
    key, stat = machine.key.read_bytes(), machine.key.stat()
    r = machine.run("--no-ollama", "--modify-path", shell="bash --posix", spec=ROOT)
    assert r.returncode == 0, r
    assert f"==> Upgrading parallelix-node in {machine.venv}" in r.stdout
    assert machine.key.read_bytes() == key and machine.key.stat().st_mtime_ns == stat.st_mtime_ns
    assert f"your node key is already there ({machine.key})" in r.stdout
    profile = (machine.home / ".profile").read_text()
    assert profile == (f'export PATH="{machine.link.parent}:$PATH"  '
                       "# added by the parallelix-node installer\n")
    assert machine.cli("version").returncode == 0


def test_verify_reports_a_file_another_package_overwrote(machine, fresh):
    site = next(machine.venv.glob("lib/python3.*/site-packages"))
    target = site / "ipc" / "__init__.py"
    original = target.read_bytes()
    target.write_bytes(original + b'"""ipc 1.2.1"""\n')
    try:
        r = machine.cli("verify", "--json")
    finally:
        target.write_bytes(original)
    packages = {c["name"]: c for c in json.loads(r.stdout)["checks"]}["packages"]
    assert r.returncode == 1 and packages["ok"] is False
    assert packages["detail"] == "ipc/__init__.py is not the file parallelix-node installed"
    after = machine.cli("verify", "--json")
    assert {c["name"]: c for c in json.loads(after.stdout)["checks"]}["packages"]["ok"] is True


def test_ollama_on_linux_through_its_own_installer(machine, fresh, wheel, ollama_port):
    for leftover in machine.drop.iterdir():
        leftover.unlink()
    machine.recorded()
    host = f"http://127.0.0.1:{ollama_port}"
    try:
        r = machine.run("--yes", spec=wheel, extra_path=(STANDINS,), OLLAMA_HOST=host)
        calls = machine.recorded()
        models = machine.cli("models", "--json", OLLAMA_HOST=host)
    finally:
        machine.stop_ollama()
    assert r.returncode == 0, r
    downloads = [c for c in calls if c[0] == "curl"]
    assert len(downloads) == 1 and downloads[0][:4] == ["curl", "-fsSL", OLLAMA_URL, "-o"]
    assert [c for c in calls if c[0] == "systemctl"] == [
        ["systemctl", "is-system-running"], ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "ollama"], ["systemctl", "restart", "ollama"]]
    assert [c for c in calls if c[0] == "ollama"] == [["ollama", "serve"]]
    assert (machine.drop / "ollama").exists()
    assert ">>> Enabling and starting ollama service..." in r.stderr
    assert f"Ollama answers at {host}" in r.stdout and "==> Pulling llama3.2" in r.stdout
    assert models.returncode == 0, models
    names = [m["name"] for m in json.loads(models.stdout)["models"]]
    assert sorted(names) == ["llama3.2:latest", "qwen2.5:0.5b"]  # the pull reached the stand-in


def test_ollama_on_macos_through_homebrew(machine, fresh, wheel, ollama_port, tmp_path):
    for leftover in machine.drop.iterdir():
        leftover.unlink()
    machine.recorded()
    host = f"http://127.0.0.1:{ollama_port}"
    mac = uname(tmp_path / "mac", "Darwin", "arm64", "23.6.0")
    try:
        r = machine.run("--yes", "--model", "phi3:mini", spec=wheel, extra_path=(mac, STANDINS),
                        OLLAMA_HOST=host)
        calls = machine.recorded()
        models = machine.cli("models", "--json", OLLAMA_HOST=host)
    finally:
        machine.stop_ollama()
    assert r.returncode == 0, r
    assert "Machine:  macOS arm64" in r.stdout
    assert [c for c in calls if c[0] in ("brew", "ollama", "curl", "systemctl")] == [
        ["brew", "install", "ollama"], ["brew", "services", "start", "ollama"],
        ["ollama", "serve"]]
    assert "==> Pulling phi3:mini" in r.stdout
    names = [m["name"] for m in json.loads(models.stdout)["models"]]
    assert sorted(names) == ["phi3:mini", "qwen2.5:0.5b"]


def test_piped_through_sh_it_asks_on_the_terminal(machine, fresh, wheel):
    """`curl … | sh`: the script arrives on stdin, so the question goes to /dev/tty and the
    answer comes from there (a pseudo-terminal made by util-linux's `script`)."""
    for leftover in machine.drop.iterdir():
        leftover.unlink()
    machine.recorded()
    command = f"cat {INSTALL} | dash -s -- --model llama3.2"
    r = subprocess.run([shutil.which("script"), "-qec", command, "/dev/null"], input="n\n",
                       env=machine.env((STANDINS,), PARALLELIX_NODE_SPEC=str(wheel)),
                       cwd=machine.home, capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    assert r.returncode == 0, r
    assert "Ollama is not installed. Install it now? [Y/n] " in r.stdout
    assert "Ollama:   not installed (you said no)" in r.stdout
    assert "==> Pulling" not in r.stdout and machine.recorded() == []
    assert machine.cli("version").returncode == 0


def test_macos_without_homebrew_names_the_download(machine, fresh, wheel, tmp_path):
    for leftover in machine.drop.iterdir():
        leftover.unlink()
    mac = uname(tmp_path / "mac", "Darwin", "x86_64", "23.6.0")
    r = machine.run("--yes", spec=wheel, extra_path=(mac,))
    assert r.returncode == 0, r
    assert "Ollama:   not installed, and there is no Homebrew to install it with" in r.stdout
    assert ("Download Ollama for macOS from https://ollama.com/download/Ollama.dmg, open it "
            "once, then run:\n    parallelix-node models pull llama3.2") in r.stdout


def test_uninstall_keeps_the_key_and_purge_asks_then_removes_it(machine, fresh):
    if not machine.key.exists():
        assert machine.cli("init").returncode == 0
    key = machine.key.read_bytes()
    profile = machine.home / ".profile"
    marker = "# added by the parallelix-node installer"
    if not profile.exists():  # the --modify-path run did not happen in this session (-k)
        profile.write_text(f'export PATH="{machine.link.parent}:$PATH"  {marker}\n')
    profile.write_text("umask 022\n" + profile.read_text())
    unit = machine.home / ".config" / "systemd" / "user" / "parallelix-node.service"
    service = (SERVICE_STANDINS,)
    installed = subprocess.run([str(machine.link), "service", "install", "--user", "--node-id",
                                "7"], env=machine.env(service), capture_output=True, text=True,
                               timeout=60)
    assert installed.returncode == 0 and unit.exists(), installed
    machine.recorded()

    r = machine.run("--uninstall", shell="bash --posix", extra_path=service)
    assert r.returncode == 0, r
    assert ["systemctl", "--user", "disable", "--now", "parallelix-node.service"] in \
        machine.recorded()
    assert not unit.exists() and machine.nothing_installed()
    assert machine.key.read_bytes() == key
    assert f"Kept {machine.key.parent} (node key, config, outbox); --purge deletes it" in r.stdout
    assert profile.read_text() == "umask 022\n"  # only the installer's line is gone

    r = machine.run("--purge")
    assert r.returncode == 1
    assert one_error(r) == ("error: --purge deletes the node key and there is no terminal to "
                            "ask: run again with --purge --yes to confirm")
    assert machine.key.read_bytes() == key

    r = machine.run("--purge", "--yes")
    assert r.returncode == 0, r
    assert not machine.key.parent.exists()
