"""`service install | uninstall | status`: run the node under systemd (Linux) or launchd (macOS)."""
import os
import pwd
import shlex
from pathlib import Path
from typing import Any

import click

from node.service import launchd, systemd
from node.commands.clikit import SuggestingGroup, common_options, emit
from node.errors import ConfigError
from node.home import Home
from node.service import (PLATFORMS, PROGRAM, Runner, Spec, Target, check_printable,
                          current_platform, default_scope, ensure_home, find_entry_point, notes,
                          require_root, resolve_platform, resolve_target)
from node.commands.cliopts import gpu_choice, node_options, settings_options
from node.settings import (ENV_COORDINATOR, ENV_METRICS, ENV_MODEL, ENV_NODE_ID, ENV_OLLAMA,
                           ENV_WORKERS, Settings, config_values, load_settings,
                           remember)


@click.group("service", cls=SuggestingGroup)
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


# The settings a shell's environment can give `start`; the service does not see that shell.
_ENV_OF = {"node_id": ENV_NODE_ID, "coordinator": ENV_COORDINATOR, "ollama": ENV_OLLAMA,
           "model": ENV_MODEL, "metrics": ENV_METRICS}


@cmd.command("install")
@scope_options
@node_options
@click.option("--run-as", metavar="USER",
              help="With --system: the account the node runs as [default: the home's owner].")
@click.option("--dry-run", is_flag=True,
              help="Print the file that would be written; change nothing.")
@click.option("--platform", type=click.Choice(PLATFORMS),
              help="With --dry-run: render the file for the other platform, for review.")
@common_options
@settings_options()
def install(home: Home, as_json: bool, user_flag: bool, system_flag: bool, node_id: int | None,
            gpu: bool, cpu: bool, workers: int | None, metrics: str | None,
            coordinator: str | None, ollama: tuple[str, ...], model: str | None,
            run_as: str | None, dry_run: bool, platform: str | None) -> None:
    """Write the service file, then enable and start the service. Running it again updates the
    file and restarts the service only if the file changed.

    Takes the settings flags of `start`. The node id, coordinator, Ollama, model and metrics
    given as flags, or set only in this shell's environment (which the service never sees),
    are saved in config.toml; --workers (or PARALLELIX_WORKERS) and --gpu/--cpu go on the
    service's command line. The settings the service will run with are printed first."""
    platform = resolve_platform(platform, dry_run)
    scope = default_scope(user_flag, system_flag)
    if not dry_run:
        require_root("install", scope, home)
    check_printable("the home", str(home.root))
    use_gpu = gpu_choice(gpu, cpu)
    settings = load_settings(home, coordinator=coordinator, ollama=ollama, model=model,
                             node_id=node_id, workers=workers, metrics=metrics)
    if settings.node_id is None:
        raise ConfigError("no node id: pass --node-id N (from the Console)")
    flags = {"node_id": node_id, "coordinator": coordinator, "ollama": ollama, "model": model,
             "metrics": metrics}
    save, options, carried = _carry_over(settings, flags, workers, use_gpu, dry_run)
    entry = find_entry_point()
    target = resolve_target(platform, scope, home, run_as)
    spec = Spec(target, entry, settings.node_id, home, settings.metrics, options)
    manager = systemd if platform == "linux" else launchd
    text = manager.render(spec)
    if not dry_run and save:
        ensure_home(spec)
        carried += [f"note: {n}" for n in remember(home, save)]
        if os.geteuid() == 0 and target.uid != 0:
            os.chown(home.config, target.uid, target.gid)  # root wrote it for the service's user
        settings = load_settings(home, node_id=settings.node_id, workers=workers, env={})
    doc: dict[str, Any] = {"action": "install", "platform": platform, "scope": scope,
                           "path": str(_path(platform, target)), "nodeId": settings.node_id,
                           "runAs": target.user, "coordinator": settings.coordinator,
                           "ollama": [w.ollama for w in settings.workers],
                           "model": settings.model,
                           "metrics": str(settings.metrics) if settings.metrics else None,
                           "options": list(options), "saved": save, "notes": carried}
    if not as_json:  # before enabling; on stderr for --dry-run, whose stdout is the file
        for line in carried:
            click.echo(line, err=True)
        click.echo("\n".join(_effective(doc)), err=dry_run)
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
    if save:
        lines.append(f"saved in {home.config}: {', '.join(save)}")
    lines += [f"ran: {shlex.join(c)}" for c in run.calls]
    lines += [f"parallelix-node runs as a {scope} service (node {settings.node_id}, as "
              f"{target.user}) and starts at boot.",
              f"check it with `{PROGRAM} service status`; follow it with `{PROGRAM} logs -f`"]
    emit(as_json, doc, lines)


def _carry_over(settings: Settings, flags: dict[str, Any], workers: int | None,
                use_gpu: bool | None, dry_run: bool) -> tuple[dict[str, Any], tuple[str, ...],
                                                              list[str]]:
    """What the service must be given because it will not see this shell: the config.toml
    values to save (flags, and settings only the environment gave), start's options for its
    command line (--workers, --gpu/--cpu), and a note for each environment variable carried."""
    from_env = [k for k, var in _ENV_OF.items() if not flags[k] and os.environ.get(var)]
    save = config_values(settings, [k for k, v in flags.items() if v] + from_env)
    per_endpoint = workers or (settings.workers[0].slots if os.environ.get(ENV_WORKERS) else None)
    options = (*(["--workers", str(per_endpoint)] if per_endpoint else []),
               *{True: ["--gpu"], False: ["--cpu"], None: []}[use_gpu])
    verb = "would be saved" if dry_run else "saved"
    told = [f"note: {_ENV_OF[k]} is set only in this shell's environment, which the service "
             f"does not see: {verb} in {settings.home.config}" for k in from_env]
    if os.environ.get(ENV_WORKERS) and not workers:
        told.append(f"note: {ENV_WORKERS} is set only in this shell's environment: the service "
                     f"runs with --workers {per_endpoint}")
    return save, options, told


def _effective(doc: dict[str, Any]) -> list[str]:
    """The settings the service will run with, as `install` prints them before enabling it."""
    lines = [f"the service will run node {doc['nodeId']} with:",
             f"  coordinator  {doc['coordinator']}",
             f"  ollama       {', '.join(doc['ollama'])}",
             f"  model        {doc['model']}"]
    lines += [f"  metrics      {doc['metrics']}"] if doc["metrics"] else []
    lines += [f"  options      {shlex.join(doc['options'])}"] if doc["options"] else []
    return lines


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
