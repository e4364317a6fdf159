"""`models`: the local Ollama models (cloud stubs skipped); `models pull [NAME]` downloads one,
with a progress bar on a terminal and NDJSON progress events with --json."""
import sys
from typing import Any

import click

from node.commands.cliopts import human_bytes, load_from_flags, settings_options
from node.commands.clikit import common_options, emit, emit_json_line
from node.errors import ConfigError, NodeError
from node.home import Home
from workers.escape import escape_controls


def _row(m: dict[str, Any]) -> dict[str, Any]:
    details = m.get("details") if isinstance(m.get("details"), dict) else {}
    size = m.get("size")
    return {"name": m["name"], "size": size if isinstance(size, int) else None,
            "family": details.get("family"), "quantization": details.get("quantization_level"),
            "parameterSize": details.get("parameter_size"), "digest": m.get("digest"),
            "modifiedAt": m.get("modified_at")}


def _list(base: str, model: str, as_json: bool) -> None:
    from workers.ollama import OllamaError, has_model, list_models
    try:
        models = list_models(base)
    except OllamaError as e:
        raise NodeError(str(e)) from None
    rows = [_row(m) for m in models]
    present = has_model(models, model)
    doc = {"ollama": base, "model": model, "modelPresent": present, "models": rows}
    table = [("NAME", "SIZE", "FAMILY", "QUANTIZATION")] + [
        (r["name"], human_bytes(r["size"]), r["family"] or "-", r["quantization"] or "-")
        for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    if not rows:
        lines = [f"no local models in Ollama at {base}"]
    lines.append(f"configured model {model}: " + (
        "present" if present else f"not pulled; run: parallelix-node models pull {model}"))
    emit(as_json, doc, lines)


class _Progress:
    """Plain progress: one click progress bar per layer on a terminal, status lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.bar: Any = None
        self.digest: str | None = None
        self.done = 0
        self.last_status: str | None = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()
            self.bar = None
        self.digest = None

    def event(self, ev: dict[str, Any]) -> None:
        status = str(ev.get("status", ""))
        digest, total = ev.get("digest"), ev.get("total")
        if self.tty and isinstance(digest, str) and isinstance(total, int) and total > 0:
            if digest != self.digest:
                self.close()
                self.digest, self.done = digest, 0
                self.bar = click.progressbar(length=total, label=status, show_pos=False,
                                             show_percent=True, width=30)
                self.bar.render_progress()
            completed = ev.get("completed", 0)
            if isinstance(completed, int) and completed > self.done:
                self.bar.update(completed - self.done)
                self.done = completed
            return
        if status != self.last_status and status != "success":
            self.close()
            if isinstance(digest, str) and isinstance(total, int):
                status = f"{status} ({human_bytes(total)})"
            click.echo(escape_controls(str(status)))
            self.last_status = str(ev.get("status", ""))


def _pull(base: str, name: str, as_json: bool) -> None:
    from workers.ollama import OllamaError, pull
    progress = None if as_json else _Progress()
    try:
        for ev in pull(base, name):
            if progress is None:
                emit_json_line(ev)
            else:
                progress.event(ev)
    except OllamaError as e:
        raise NodeError(str(e)) from None
    finally:
        if progress is not None:
            progress.close()
    if progress is not None:
        click.echo(f"pulled {name}")


@click.command("models")
@click.argument("action", required=False, type=click.Choice(["list", "pull"]), default="list")
@click.argument("name", required=False)
@common_options
@settings_options(coordinator=False)
def cmd(home: Home, as_json: bool, action: str, name: str | None, coordinator: str | None,
        ollama: tuple[str, ...], model: str | None) -> None:
    """List the local Ollama models, or pull one: models pull [NAME] (default: the configured
    model). With --json, pull prints one JSON progress event a line, ending with "success"."""
    if name and action != "pull":
        raise ConfigError(f"unexpected argument {name!r}; to download a model run: "
                          f"parallelix-node models pull {name}")
    settings = load_from_flags(home, coordinator, ollama, name or model)
    if action == "pull":
        _pull(settings.ollama, settings.model, as_json)
    else:
        _list(settings.ollama, settings.model, as_json)
