"""systemd: render the unit, install it into the user or system manager, remove it, report it."""
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.atomic import write_atomic
from node.service import (GRACEFUL_TIMEOUT, PROGRAM, RESTART_SEC, STOP_TIMEOUT, WATCHDOG_SEC,
                          Runner, Spec, check_printable, ensure_home, read_text, template)

UNIT = "parallelix-node.service"
SYSTEM_DIR = Path("/etc/systemd/system")
SHOW_PROPERTIES = ("LoadState", "UnitFileState", "ActiveState", "SubState", "Result", "MainPID",
                   "ExecMainStatus", "NRestarts", "StatusText", "FragmentPath")

_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def unit_path(scope: str) -> Path:
    if scope == "system":
        return SYSTEM_DIR / UNIT
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / UNIT


def quote(value: str, *, exec_line: bool = False) -> str:
    """One word of a unit file: `%` doubled (specifiers), `$` doubled on ExecStart= (variable
    expansion), and double quotes with C escapes when it holds anything but plain characters."""
    check_printable("the path", value)
    value = value.replace("%", "%%")
    if exec_line:
        value = value.replace("$", "$$")
    if _SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _under(path: Path, folder: str) -> bool:
    return path == Path(folder) or Path(folder) in path.parents


def render(spec: Spec) -> str:
    target, home = spec.target, spec.home.root
    if target.scope == "system":
        ordering = ("# Start once the network is up, and after the NVIDIA persistence daemon and\n"
                    "# Ollama where those units exist, so the GPUs are ready.\n"
                    "After=network-online.target nvidia-persistenced.service ollama.service\n"
                    "Wants=network-online.target")
        user = f"User={quote(target.user)}\n"
        wanted_by = "multi-user.target"
    else:
        ordering = ("# A user unit cannot order itself after system units (network-online.target,\n"
                    "# nvidia-persistenced.service): the node retries the coordinator and Ollama\n"
                    "# itself until they answer. Lingering starts this unit at boot.")
        user = ""
        wanted_by = "default.target"
    paths = [quote(str(home))]
    if _under(home, "/tmp") or _under(home, "/var/tmp"):
        private_tmp = ("# PrivateTmp is off: the node home is in a temporary folder that a\n"
                       "# private /tmp would hide.\nPrivateTmp=no")
    elif not spec.home.sockets_fit_in_run:
        private_tmp = ("# PrivateTmp is off: the home path is too long for ipc:// sockets, so\n"
                       "# they live in /tmp, where `parallelix-node status` must find them.\n"
                       "PrivateTmp=no")
        paths.append("/tmp")
    else:
        private_tmp = "PrivateTmp=yes"
    return template("parallelix-node.service.in").substitute(
        scope=target.scope, node_id=spec.node_id, ordering=ordering,
        exec_start=" ".join(quote(a, exec_line=True) for a in spec.argv),
        env_home=quote(f"PARALLELIX_HOME={home}"), user=user,
        read_write_paths=" ".join(paths), private_tmp=private_tmp, wanted_by=wanted_by,
        restart_sec=RESTART_SEC, watchdog_sec=WATCHDOG_SEC, stop_timeout=STOP_TIMEOUT,
        graceful_timeout=GRACEFUL_TIMEOUT)


def systemctl(scope: str, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if scope == "user" else []), *args]


def _no_systemd(output: str) -> bool:
    """systemctl's words when no systemd runs as PID 1 (a container, WSL without systemd):
    "System has not been booted with systemd…", or no bus at all ("Host is down")."""
    return "not been booted with systemd" in output or "Host is down" in output


def _hint(scope: str, user: str, *, inspecting: bool = False) -> Callable[[str], str]:
    """What to do when systemctl fails: run without systemd, reach the user manager, or read
    the journal (and `service status`, unless that is what failed)."""
    def hint(output: str) -> str:
        if _no_systemd(output):
            return (f"systemd does not run on this machine, so there is no service to "
                    f"{'show' if inspecting else 'manage'}; run the node under your own "
                    f"supervisor with `{PROGRAM} start` and check it with `{PROGRAM} status`")
        if scope == "user" and ("bus" in output.lower() or "XDG_RUNTIME_DIR" in output):
            return (f"log in as {user} directly over SSH (not su or sudo -u) so that your user "
                    "manager is reachable, or install with --system")
        if inspecting:
            return f"see `{_journal(scope)}`"
        return f"see `{_journal(scope)}` and `{PROGRAM} service status`"
    return hint


def plan(spec: Spec, change: str) -> list[list[str]]:
    """The manager calls an install makes: lingering first (a user manager that runs without a
    login and at boot), then reload, enable and start; restart when the unit changed."""
    scope = spec.target.scope
    calls = []
    if scope == "user":
        calls.append(["loginctl", "enable-linger", spec.target.user])
    calls.append(systemctl(scope, "daemon-reload"))
    if change == "updated":
        calls += [systemctl(scope, "enable", UNIT), systemctl(scope, "restart", UNIT)]
    else:
        calls.append(systemctl(scope, "enable", "--now", UNIT))
    return calls


def install(spec: Spec, text: str, run: Runner) -> dict[str, Any]:
    path = unit_path(spec.target.scope)
    old = read_text(path)
    change = "created" if old is None else "unchanged" if old == text else "updated"
    calls = plan(spec, change)
    hint = _hint(spec.target.scope, spec.target.user)
    if calls[0][0] == "loginctl":
        run(*calls.pop(0), hint=f"run `sudo loginctl enable-linger {spec.target.user}` once, "
                                "then this command again")
    ensure_home(spec)
    if change != "unchanged":
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode(), mode=0o644)
    for call in calls:
        run(*call, hint=hint)
    return {"path": str(path), "written": change != "unchanged", "change": change}


def _journal(scope: str) -> str:
    return f"journalctl {'--user ' if scope == 'user' else ''}-u {PROGRAM} -e"


def uninstall(scope: str, user: str, run: Runner) -> dict[str, Any]:
    path = unit_path(scope)
    if not path.exists():
        return {"path": str(path), "removed": False}
    run(*systemctl(scope, "disable", "--now", UNIT), hint=_hint(scope, user))
    path.unlink()
    run(*systemctl(scope, "daemon-reload"))
    return {"path": str(path), "removed": True}


def status(scope: str, user: str, run: Runner) -> dict[str, Any]:
    path = unit_path(scope)
    r = run(*systemctl(scope, "show", UNIT, "--property=" + ",".join(SHOW_PROPERTIES)),
            hint=_hint(scope, user, inspecting=True))
    words = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    return {"path": str(path), "installed": path.exists(),
            "enabled": words.get("UnitFileState") in ("enabled", "enabled-runtime", "linked",
                                                       "linked-runtime", "alias"),
            "active": words.get("ActiveState") == "active",
            "manager": words, "logs": _journal(scope).replace(" -e", " -f")}


def human_status(doc: dict[str, Any]) -> list[str]:
    m = doc["manager"]
    yes = {True: "yes", False: "no"}
    lines = [f"installed: {yes[doc['installed']]} ({doc['scope']} unit {doc['path']})",
             f"enabled:   {yes[doc['enabled']]} "
             f"(UnitFileState={m.get('UnitFileState', '?')})",
             f"active:    {yes[doc['active']]} (ActiveState={m.get('ActiveState', '?')}"
             f" SubState={m.get('SubState', '?')} MainPID={m.get('MainPID', '?')}"
             f" Result={m.get('Result', '?')} ExecMainStatus={m.get('ExecMainStatus', '?')})"]
    if m.get("StatusText"):
        lines.append(f"status:    {m['StatusText']}")
    lines.append(f"logs:      {doc['logs']}   or   {PROGRAM} logs -f")
    return lines
