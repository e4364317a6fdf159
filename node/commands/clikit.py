"""What every command shares: --home and --json, and one way to print a result."""
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from node.home import resolve_home
from workers.escape import escape_controls


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --home and --json; the command receives `home: Home` and `as_json: bool`."""

    @click.option("--home", "home_flag", metavar="PATH", envvar=None,
                  help="Node home folder [env PARALLELIX_HOME; default ~/.parallelix].")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(func)
    def wrapper(*args: Any, home_flag: str | None, as_json: bool, **kwargs: Any) -> Any:
        shared = click.get_current_context().find_root().meta  # `parallelix-node --json status`
        home_flag = home_flag if home_flag is not None else shared.get(HOME_KEY)
        as_json = as_json or shared.get(JSON_KEY, False)
        return func(*args, home=resolve_home(home_flag), as_json=as_json, **kwargs)

    return wrapper


HOME_KEY, JSON_KEY = "parallelix.home", "parallelix.json"


def global_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--home and --json before the command name (`parallelix-node --json status`): kept in the
    root context for `common_options`, where the command's own flag wins."""

    def keep(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
        def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
            if value:
                ctx.meta[key] = value
            return value
        return callback

    func = click.option("--home", metavar="PATH", expose_value=False, callback=keep(HOME_KEY),
                        help="Node home folder, for any command.")(func)
    return click.option("--json", is_flag=True, expose_value=False, callback=keep(JSON_KEY),
                        help="One JSON document on stdout, for any command.")(func)


class SuggestingGroup(click.Group):
    """A group that answers a mistyped command name with the nearest one (`strat` -> `start`),
    as click already does for mistyped flags."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.6)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)


def emit(as_json: bool, document: dict[str, Any], lines: list[str] | str) -> None:
    """Print `document` as one JSON document, or the human `lines`."""
    if as_json:
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    else:
        click.echo(escape_controls(lines if isinstance(lines, str) else "\n".join(lines)))


def emit_json_line(document: dict[str, Any]) -> None:
    """One NDJSON line, flushed: for streams (`logs -f --json`, `models pull --json`)."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()
