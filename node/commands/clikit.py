"""What every command shares: --home and --json, and one way to print a result."""
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from node.home import resolve_home
from workers.logfmt import escape_controls


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --home and --json; the command receives `home: Home` and `as_json: bool`."""

    @click.option("--home", "home_flag", metavar="PATH", envvar=None,
                  help="Node home folder [env PARALLELIX_HOME; default ~/.parallelix].")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(func)
    def wrapper(*args: Any, home_flag: str | None, as_json: bool, **kwargs: Any) -> Any:
        return func(*args, home=resolve_home(home_flag), as_json=as_json, **kwargs)

    return wrapper


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
