"""`verify`: every diagnostic an operator needs before and after `start`: Python, the node's own
packages (not shadowed or overwritten by PyPI's unrelated node/workers/ipc), the key file
(mode, owner, loadable), Ollama and the model, the coordinator, clock skew, free disk.
Exit 0 only when every check passes, else 1."""
import sys

import click

from node.commands.cliopts import load_from_flags, settings_options
from node.commands.clikit import common_options, emit
from node.home import Home


@click.command("verify")
@common_options
@settings_options()
def cmd(home: Home, as_json: bool, coordinator: str | None, ollama: tuple[str, ...],
        model: str | None) -> None:
    """Check packages, key, Ollama, model, coordinator, clock and disk; print each failure's fix."""
    from node.commands.diagnostics import run_all
    from node.state import current_state, read_state

    settings = load_from_flags(home, coordinator, ollama, model)
    checks = run_all(home, settings,
                     waiting=lambda text: None if as_json else click.echo(text, err=True))
    ok = all(c.ok for c in checks)
    failed = [c for c in checks if not c.ok and not c.skipped]
    saved = read_state(home)  # after the checks: the key check may have recorded the address
    doc = {"ok": ok, "checks": [c.as_dict() for c in checks],
           "address": saved.get("address"), "nodeKeyHash": saved.get("nodeKeyHash"),
           "state": current_state(home, saved), "home": str(home.root),
           "coordinator": settings.coordinator, "ollama": [w.ollama for w in settings.workers],
           "model": settings.model}
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("skip" if c.skipped else "FAIL")
        lines.append(f"{mark}  {c.name:<{width}}  {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    lines.append("all checks passed" if ok else
                 f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed")
    emit(as_json, doc, lines)
    if not ok:
        sys.exit(1)
