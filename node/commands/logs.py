"""`logs`: the last lines of <home>/node.log, or follow it (-f) across rotation until Ctrl-C.
Fast: no requests, no eth-account, no zmq."""
import os
import signal
import sys

import click

from node.commands.clikit import common_options, emit, emit_json_line
from node.errors import ConfigError
from node.home import Home
from node.logtail import follow, tail_lines
from workers.escape import escape_controls


class _Stop(Exception):
    """SIGTERM while following: stop quietly, exit 0."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stop()


def _follow(home: Home, n: int, as_json: bool) -> None:
    if not home.log.exists():
        click.echo(f"no log yet at {home.log}: the daemon writes it once started; "
                   "waiting for it (Ctrl-C to stop)", err=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        for line in follow(home.log, n):
            if as_json:
                emit_json_line({"line": line})
            else:
                sys.stdout.write(escape_controls(line) + "\n")
                sys.stdout.flush()
    except (KeyboardInterrupt, _Stop):
        return
    except BrokenPipeError:  # `logs -f | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:
        raise ConfigError(f"cannot read {home.log}: {e.strerror}") from None


@click.command("logs")
@click.option("-n", "--lines", "n", type=click.IntRange(min=0), default=50, show_default=True,
              help="How many of the last lines to show.")
@click.option("-f", "--follow", "follow_", is_flag=True,
              help="Keep printing new lines (across log rotation) until Ctrl-C.")
@common_options
def cmd(home: Home, as_json: bool, n: int, follow_: bool) -> None:
    """Show the last lines of the node log, or follow it."""
    if home.log.exists() and not home.log.is_file():
        raise ConfigError(f"{home.log} is not a regular file (the daemon writes its log there); "
                          "move it aside")
    if follow_:
        _follow(home, n, as_json)
        return
    try:
        lines = tail_lines(home.log, n)
    except FileNotFoundError:
        message = f"no log yet at {home.log}: the daemon writes it once started"
        emit(as_json, {"path": str(home.log), "exists": False, "lines": [], "message": message},
             message)
        return
    except OSError as e:
        raise ConfigError(f"cannot read {home.log}: {e.strerror}") from None
    if as_json or lines:
        emit(as_json, {"path": str(home.log), "exists": True, "lines": lines}, lines)
