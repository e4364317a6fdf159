"""launchd: render the property list, bootstrap it into the gui or system domain, remove it,
report it."""
import plistlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.atomic import write_atomic
from node.service import (PROGRAM, STOP_TIMEOUT, THROTTLE_INTERVAL, Runner, Spec, Target,
                          check_printable, ensure_home, read_text, template)

LABEL = "io.parallelix.node"
SYSTEM_DIR = Path("/Library/LaunchDaemons")
LOG_NAME = "launchd.log"    # only what escapes the node's own log (node.log): early errors
BASE_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def plist_path(target: Target) -> Path:
    if target.scope == "system":
        return SYSTEM_DIR / f"{LABEL}.plist"
    return target.user_home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def domain(target: Target) -> str:
    return "system" if target.scope == "system" else f"gui/{target.uid}"


def contents(spec: Spec) -> dict[str, Any]:
    """The property list as a dict: what the rendered XML must parse back to."""
    target, home = spec.target, spec.home
    env = {"PARALLELIX_HOME": str(home.root), "PYTHONUNBUFFERED": "1",
           "PATH": f"{spec.entry.parent}:{BASE_PATH}"}
    doc: dict[str, Any] = {"Label": LABEL, "ProgramArguments": spec.argv}
    if target.scope == "system":
        doc["UserName"] = target.user
        env["HOME"] = str(target.user_home)
    doc.update({"EnvironmentVariables": env, "RunAtLoad": True,
                "KeepAlive": {"SuccessfulExit": False}, "ThrottleInterval": THROTTLE_INTERVAL,
                "ExitTimeOut": STOP_TIMEOUT, "Umask": 0o077,
                "StandardOutPath": str(home.root / LOG_NAME),
                "StandardErrorPath": str(home.root / LOG_NAME)})
    return doc


def escape(text: str) -> str:
    """XML character data (xml.sax.saxutils.escape, without its urllib.request import)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _string(value: str) -> str:
    return f"<string>{escape(check_printable('the value', value))}</string>"


def render(spec: Spec) -> str:
    doc = contents(spec)
    env = doc["EnvironmentVariables"]
    text = template(f"{LABEL}.plist.in").substitute(
        scope=spec.target.scope, label=LABEL,
        program_arguments="\n".join(f"\t\t{_string(a)}" for a in doc["ProgramArguments"]),
        user_name=(f"\t<key>UserName</key>\n\t{_string(doc['UserName'])}\n"
                   if "UserName" in doc else ""),
        environment="\n".join(f"\t\t<key>{escape(k)}</key>\n\t\t{_string(v)}"
                              for k, v in env.items()),
        throttle_interval=doc["ThrottleInterval"], exit_timeout=doc["ExitTimeOut"],
        log_path=escape(doc["StandardOutPath"]))
    if plistlib.loads(text.encode()) != doc:    # escaping or the template went wrong
        raise RuntimeError("the rendered launchd property list does not match its contents")
    return text


def _hint(target: Target) -> Callable[[str], str]:
    def hint(output: str) -> str:
        if target.scope == "user" and ("125" in output or "Domain does not support" in output):
            return ("a --user agent needs you logged in at the Mac's screen; on a headless Mac "
                    f"install with `sudo \"$(command -v {PROGRAM})\" service install --system`")
        return f"see `{PROGRAM} service status` and `{PROGRAM} logs`"
    return hint


def install(spec: Spec, text: str, run: Runner) -> dict[str, Any]:
    """Write the plist, then bootstrap it (reloading it when it changed) and kickstart it."""
    target = spec.target
    path, service = plist_path(target), f"{domain(target)}/{LABEL}"
    old = read_text(path)
    change = "created" if old is None else "unchanged" if old == text else "updated"
    loaded = run("launchctl", "print", service, ok=None).returncode == 0
    ensure_home(spec)
    if change != "unchanged":
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text.encode(), mode=0o644)
    hint = _hint(target)
    if loaded and change != "unchanged":
        run("launchctl", "bootout", service, hint=hint)
    run("launchctl", "enable", service, hint=hint)
    if not loaded or change != "unchanged":
        run("launchctl", "bootstrap", domain(target), str(path), hint=hint)
    run("launchctl", "kickstart", service, hint=hint)
    return {"path": str(path), "written": change != "unchanged", "change": change}


def uninstall(target: Target, run: Runner) -> dict[str, Any]:
    path, service = plist_path(target), f"{domain(target)}/{LABEL}"
    loaded = run("launchctl", "print", service, ok=None).returncode == 0
    if loaded:
        run("launchctl", "bootout", service, hint=_hint(target))
    existed = path.exists()
    if existed:
        path.unlink()
    return {"path": str(path), "removed": loaded or existed}


def parse_print(text: str) -> dict[str, str]:
    """The service's own `key = value` lines from `launchctl print` (nested blocks skipped)."""
    words: dict[str, str] = {}
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.endswith("{"):
            depth += 1
            continue
        if stripped == "}":
            depth -= 1
            continue
        if depth == 1 and " = " in stripped:
            key, value = stripped.split(" = ", 1)
            words[key] = value
    return words


def status(target: Target, run: Runner) -> dict[str, Any]:
    path, service = plist_path(target), f"{domain(target)}/{LABEL}"
    printed = run("launchctl", "print", service, ok=None)
    words = parse_print(printed.stdout) if printed.returncode == 0 else {}
    words["loaded"] = "yes" if printed.returncode == 0 else "no"
    if printed.returncode != 0:
        words["error"] = (printed.stderr or printed.stdout).strip()
    overrides = run("launchctl", "print-disabled", domain(target), ok=None).stdout
    match = re.search(rf'"{re.escape(LABEL)}"\s*=>\s*(\w+)', overrides)
    words["override"] = match.group(1) if match else "none"
    disabled = words["override"] in ("disabled", "true")
    installed = path.exists()
    plist = read_text(path)
    log = None
    if plist is not None:
        try:
            log = plistlib.loads(plist.encode()).get("StandardErrorPath")
        except Exception:   # a hand-edited file: status still reports what launchd says
            log = None
    return {"path": str(path), "installed": installed, "enabled": installed and not disabled,
            "active": words.get("state") == "running", "manager": words,
            "logs": f"tail -f {log}" if log else None}


def human_status(doc: dict[str, Any]) -> list[str]:
    m = doc["manager"]
    kind = "agent" if doc["scope"] == "user" else "daemon"
    yes = {True: "yes", False: "no"}
    lines = [f"installed: {yes[doc['installed']]} ({doc['scope']} {kind} {doc['path']})",
             f"enabled:   {yes[doc['enabled']]} (loaded: {m['loaded']}, "
             f"override: {m['override']})",
             f"active:    {yes[doc['active']]} (state = {m.get('state', '?')}, "
             f"pid = {m.get('pid', '-')}, last exit code = {m.get('last exit code', '?')}, "
             f"runs = {m.get('runs', '0')})"]
    if m.get("error"):
        lines.append(f"launchctl: {m['error']}")
    also = f"   and   {doc['logs']}" if doc["logs"] else ""
    lines.append(f"logs:      {PROGRAM} logs -f{also}")
    return lines
