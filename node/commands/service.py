"""`service install | uninstall | status`: run the node under systemd (Linux) or launchd (macOS)."""
import os
import pwd
import shlex
from pathlib import Path
from typing import Any

import click

from node.service import launchd, systemd
from node.commands.clikit import common_options, emit
from node.errors import ConfigError
from node.home import Home
from node.service import (PLATFORMS, PROGRAM, Runner, Spec, Target, check_printable,
                          current_platform, default_scope, find_entry_point, notes, require_root,
                          resolve_platform, resolve_target)
from node.settings import load_settings


@click.group("service")
def cmd() -> None:
    """Install, remove or inspect the background service (systemd on Linux, launchd on macOS)."""


def scope_options(func: Any) -> Any:
    func = click.option("--system", "system_flag", is_flag=True,
                        help="System-wide service, started at boot (needs root).")(func)
    return click.option("--user", "user_flag", is_flag=True,
                        help="Your own user's service (the default unless you are root).")(func)


def _path(platform: str, target: Target) -> Path:
    return systemd.unit_path(target.scope) if platform == "linux" else launchd.plist_path(target)


def _self_target(platform: str, scope: str) -> Target:
    pw = pwd.getpwuid(os.geteuid())
    return Target(platform, scope, pw.pw_name, pw.pw_uid, pw.pw_gid,
                  Path(os.environ.get("HOME") or pw.pw_dir))


def _installed_scope(platform: str, user_flag: bool, system_flag: bool) -> str:
    """The scope asked for, else the one that is installed, else the default for this account."""
    if user_flag or system_flag:
        return default_scope(user_flag, system_flag)
    found = [s for s in ("user", "system") if _path(platform, _self_target(platform, s)).exists()]
    return found[0] if len(found) == 1 else default_scope(False, False)


def _here() -> str:
    platform = current_platform()
    if platform is None:
        resolve_platform(None, False)   # raises the one-line explanation
    return platform  # type: ignore[return-value]


@cmd.command("install")
@scope_options
@click.option("--node-id", type=int, metavar="N",
              help="The node id from the Console [default: node_id in config.toml].")
@click.option("--run-as", metavar="USER",
              help="With --system: the account the node runs as [default: the home's owner].")
@click.option("--metrics", metavar="[ADDR:]PORT", help="Serve Prometheus metrics (start "
              "--metrics) [default: metrics in config.toml].")
@click.option("--dry-run", is_flag=True,
              help="Print the file that would be written; change nothing.")
@click.option("--platform", type=click.Choice(PLATFORMS),
              help="With --dry-run: render the file for the other platform, for review.")
@common_options
def install(home: Home, as_json: bool, user_flag: bool, system_flag: bool, node_id: int | None,
            run_as: str | None, metrics: str | None, dry_run: bool, platform: str | None) -> None:
    """Write the service file, then enable and start the service. Running it again updates the
    file and restarts the service only if the file changed."""
    platform = resolve_platform(platform, dry_run)
    scope = default_scope(user_flag, system_flag)
    if not dry_run:
        require_root("install", scope, home)
    check_printable("the home", str(home.root))
    settings = load_settings(home, node_id=node_id, metrics=metrics)
    node_id = settings.node_id
    if node_id is None:
        raise ConfigError("no node id: pass --node-id N (from the Console)")
    entry = find_entry_point()
    target = resolve_target(platform, scope, home, run_as)
    spec = Spec(target, entry, node_id, home, settings.metrics)
    manager = systemd if platform == "linux" else launchd
    text = manager.render(spec)
    doc: dict[str, Any] = {"action": "install", "platform": platform, "scope": scope,
                           "path": str(_path(platform, target)), "nodeId": node_id,
                           "runAs": target.user,
                           "metrics": str(settings.metrics) if settings.metrics else None}
    if dry_run:
        doc.update({"dryRun": True, "written": False, "calls": [], "content": text})
        if not as_json:
            click.echo(f"# dry run: would write {doc['path']}; nothing was changed", err=True)
        emit(as_json, doc, text.rstrip("\n"))
        return
    warnings = notes(spec)
    run = Runner()
    doc.update({"dryRun": False, **manager.install(spec, text, run), "calls": run.calls})
    for note in warnings:
        click.echo(note, err=True)
    lines = [f"{'wrote' if doc['written'] else 'kept'} {doc['path']} ({doc['change']})"]
    lines += [f"ran: {shlex.join(c)}" for c in run.calls]
    lines += [f"parallelix-node runs as a {scope} service (node {node_id}, as {target.user}) and "
              "starts at boot.",
              f"check it with `{PROGRAM} service status`; follow it with `{PROGRAM} logs -f`"]
    emit(as_json, doc, lines)


@cmd.command("uninstall")
@scope_options
@common_options
def uninstall(home: Home, as_json: bool, user_flag: bool, system_flag: bool) -> None:
    """Stop and disable the service and remove its file (the node home is kept)."""
    platform = _here()
    scope = _installed_scope(platform, user_flag, system_flag)
    require_root("uninstall", scope, home)
    target = _self_target(platform, scope)
    run = Runner()
    if platform == "linux":
        result = systemd.uninstall(scope, target.user, run)
    else:
        result = launchd.uninstall(target, run)
    doc = {"action": "uninstall", "platform": platform, "scope": scope, **result,
           "calls": run.calls}
    lines = [f"ran: {shlex.join(c)}" for c in run.calls]
    lines.append(f"removed {doc['path']}; the node home is kept" if doc["removed"]
                 else f"nothing to remove: no {scope} service is installed ({doc['path']})")
    emit(as_json, doc, lines)


@cmd.command("status")
@scope_options
@common_options
def status(home: Home, as_json: bool, user_flag: bool, system_flag: bool) -> None:
    """Show whether the service is installed, enabled and active, in the manager's own words."""
    platform = _here()
    scope = _installed_scope(platform, user_flag, system_flag)
    target = _self_target(platform, scope)
    run = Runner()
    if platform == "linux":
        result, human = systemd.status(scope, target.user, run), systemd.human_status
    else:
        result, human = launchd.status(target, run), launchd.human_status
    doc = {"platform": platform, "scope": scope, **result}
    emit(as_json, doc, human(doc))
