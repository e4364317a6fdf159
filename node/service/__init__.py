"""Run the node as a background service: systemd on Linux, launchd on macOS.

This module holds what both managers share: the platform and scope, the command line the
manager runs (`<entry point> start --node-id N --home <home>`), the templates, and a runner
that records every manager call (`systemctl`, `loginctl`, `launchctl`) it makes. Rendering and
the manager-specific install, uninstall and status live in node/service/systemd.py and
node/service/launchd.py.
"""
import importlib.resources
import os
import pwd
import shlex
import shutil
import string
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import ConfigError, NodeError
from node.home import Home
from node.settings import MetricsAddress

PROGRAM = "parallelix-node"
PLATFORMS = ("linux", "macos")
SCOPES = ("user", "system")

# What the daemon does, which the service files must match (see DESIGN.md, exit statuses).
GRACEFUL_TIMEOUT = 15          # the supervisor's drain on SIGTERM
STOP_TIMEOUT = 30              # manager's wait between SIGTERM and SIGKILL: above the drain
WATCHDOG_SEC = 30              # the supervisor pings WATCHDOG=1 every WATCHDOG_SEC/2
RESTART_SEC = 5
THROTTLE_INTERVAL = 30         # launchd: at most one spawn per 30 s (it cannot skip exit 2/3)

_CALL_TIMEOUT = 180            # `systemctl enable --now` waits for READY=1 (TimeoutStartSec 90 s)


@dataclass(frozen=True)
class Target:
    """Where and how the service is installed: platform, scope and the account it runs as."""

    platform: str               # "linux" | "macos"
    scope: str                  # "user" | "system"
    user: str                   # the account the daemon runs as
    uid: int
    gid: int
    user_home: Path             # that account's home folder (not the node home)


@dataclass(frozen=True)
class Spec:
    """Everything a service file says."""

    target: Target
    entry: Path                 # absolute path of the parallelix-node console script
    node_id: int
    home: Home
    metrics: MetricsAddress | None = None
    options: tuple[str, ...] = ()    # start's --workers N, --gpu or --cpu

    @property
    def argv(self) -> list[str]:
        metrics = ["--metrics", str(self.metrics)] if self.metrics else []
        return [str(self.entry), "start", "--node-id", str(self.node_id),
                "--home", str(self.home.root), *metrics, *self.options]


@dataclass
class Runner:
    """Runs the service manager's commands and records each argv, for --json and the tests."""

    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, *argv: str, ok: tuple[int, ...] | None = (0,),
                 hint: "str | Callable[[str], str]" = "") -> subprocess.CompletedProcess:
        exe = shutil.which(argv[0])
        if exe is None:
            raise ConfigError(f"{argv[0]} is not on PATH; {missing_tool_hint(argv[0])}")
        self.calls.append(list(argv))
        try:
            r = subprocess.run([exe, *argv[1:]], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True, timeout=_CALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise NodeError(f"`{shlex.join(argv)}` did not finish in {_CALL_TIMEOUT} s; "
                            f"check `{PROGRAM} service status` and the logs") from None
        if ok is not None and r.returncode not in ok:
            words = last_line(r.stderr) or last_line(r.stdout) or "no message"
            hint = hint(r.stderr + r.stdout) if callable(hint) else hint
            shown = shlex.join(argv[:3]) + (" …" if len(argv) > 3 else "")
            raise NodeError(f"`{shown}` failed (exit {r.returncode}): {words}"
                            + (f"; {hint}" if hint else ""))
        return r


def missing_tool_hint(tool: str) -> str:
    if tool == "launchctl":
        return "launchd services need macOS"
    return "this machine does not seem to run systemd; run the node under your own supervisor " \
           f"with `{PROGRAM} start --node-id N`"


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def current_platform() -> str | None:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    return None


def resolve_platform(flag: str | None, dry_run: bool) -> str:
    """The platform comes from the OS; --platform may name the other one with --dry-run only."""
    here = current_platform()
    if flag and flag != here:
        if not dry_run:
            raise ConfigError(f"--platform {flag} only renders the file for review here: "
                              f"add --dry-run, or run this command on {flag} itself")
        return flag
    if here is None:
        raise ConfigError(f"services are supported on Linux (systemd) and macOS (launchd), not "
                          f"{sys.platform}; use --dry-run --platform linux|macos to see the files")
    return here


def default_scope(user_flag: bool, system_flag: bool) -> str:
    if user_flag and system_flag:
        raise ConfigError("pass either --user or --system, not both")
    if user_flag:
        return "user"
    if system_flag:
        return "system"
    return "system" if os.geteuid() == 0 else "user"


def require_root(action: str, scope: str, home: Home) -> None:
    """A system-wide service is written, started and removed by root only."""
    if scope == "system" and os.geteuid() != 0:
        raise ConfigError(f"service {action} --system needs root: run it as "
                          f"`sudo \"$(command -v {PROGRAM})\" service {action} --system "
                          f"--home {shlex.quote(str(home.root))}`, or use --user")


def account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"there is no user {name!r} on this machine; pass --run-as with an "
                          "existing account (the one that owns the node home)") from None


def resolve_target(platform: str, scope: str, home: Home, run_as: str | None) -> Target:
    """Which account the daemon runs as: you for --user; for --system, --run-as, else the owner
    of the node home, else the user who ran sudo, else you."""
    if scope == "user":
        if run_as:
            raise ConfigError("--run-as is for --system; a --user service runs as you")
        pw = pwd.getpwuid(os.geteuid())
        return Target(platform, scope, pw.pw_name, pw.pw_uid, pw.pw_gid,
                      Path(os.environ.get("HOME") or pw.pw_dir))
    if run_as:
        pw = account(run_as)
        if home.root.exists() and home.root.stat().st_uid != pw.pw_uid:
            owner = _owner_name(home.root)
            raise ConfigError(f"{home.root} belongs to {owner}, but the service would run as "
                              f"{pw.pw_name}; pass --run-as {owner} or choose another --home")
    elif home.root.exists():
        pw = pwd.getpwuid(home.root.stat().st_uid)
    elif os.environ.get("SUDO_USER"):
        pw = account(os.environ["SUDO_USER"])
    else:
        pw = pwd.getpwuid(os.geteuid())
    return Target(platform, scope, pw.pw_name, pw.pw_uid, pw.pw_gid, Path(pw.pw_dir))


def _owner_name(path: Path) -> str:
    uid = path.stat().st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def find_entry_point() -> Path:
    """The installed `parallelix-node` console script: next to this Python first (a pipx or
    venv install), else on PATH. Its absolute path goes into the service file."""
    beside = Path(sys.executable).parent / PROGRAM
    try:
        if beside.is_file() and os.access(beside, os.X_OK):
            return beside.absolute()
    except OSError:  # a folder this user may run from but not look into: try PATH
        pass
    found = shutil.which(PROGRAM)
    if found:
        return Path(found).absolute()
    raise ConfigError(f"cannot find the {PROGRAM} program next to {sys.executable} or on PATH; "
                      f"install it (e.g. `pipx install {PROGRAM}`) and run this command again")


def check_printable(what: str, value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{what} {value!r} contains control characters; use another path")
    return value


def template(name: str) -> string.Template:
    """A template from the installed package `node.service.templates`, or from the repository's
    service-templates/ folder when running from a checkout (editable install)."""
    try:
        text = (importlib.resources.files("node.service.templates") / name).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        path = Path(__file__).resolve().parent.parent / "service-templates" / name
        try:
            text = path.read_text("utf-8")
        except OSError:
            raise NodeError(f"the service template {name} is missing from this installation; "
                            f"reinstall {PROGRAM}") from None
    return string.Template(text)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def ensure_home(spec: Spec) -> None:
    """The service makes the home writable (ReadWritePaths=), which needs it to exist; for a
    system service, a new home is given to the account the daemon runs as."""
    root = spec.home.root
    if root.exists():
        return
    root.mkdir(mode=0o700, parents=True)
    if os.geteuid() == 0 and spec.target.uid != 0:
        os.chown(root, spec.target.uid, spec.target.gid)


def notes(spec: Spec) -> list[str]:
    """Warnings worth a line on stderr: they do not stop the install."""
    out = []
    if not spec.home.key.exists():
        out.append(f"note: {spec.home.key} does not exist yet; run `{PROGRAM} init --home "
                   f"{shlex.quote(str(spec.home.root))}` or the service stops with status 2")
    if spec.target.scope == "system" and spec.target.uid == 0:
        out.append("note: the service will run as root; pass --run-as USER to run it as the "
                   "account that owns the node home")
    return out

