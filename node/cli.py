"""Entry point of `parallelix-node`. Each command lives in node/commands/<name>.py and is
imported only when it runs, so `version`, `status` and `logs` never pay for eth-account or zmq."""
import importlib
import os
import sys

import click

from node.commands.clikit import SuggestingGroup, global_options
from node.errors import NodeError

# name -> module under node.commands exposing `cmd`; order is the --help order.
COMMANDS = {
    "init": "Make the node key and config (run once).",
    "start": "Attach to a node id and serve inference (the daemon).",
    "probe": "Detect CPU, RAM, GPUs and Ollama; show the tier.",
    "models": "List or pull local Ollama models.",
    "verify": "Check key, Ollama, coordinator, clock and disk.",
    "status": "Show the node's identity and state.",
    "pause": "Take no new requests; finish and deliver what is in flight.",
    "resume": "Take requests again after pause.",
    "drain": "Finish and deliver everything in flight, then stop the daemon.",
    "logs": "Show or follow the node log.",
    "version": "Show version information.",
    "service": "Install, remove or inspect the background service.",
}


class LazyGroup(SuggestingGroup):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"node.commands.{name}").cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Run a ParalleliX inference node: serve Ollama inference for the network, signed."""


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    if "--json" in sys.argv[1:]:
        import json
        click.echo(json.dumps({"error": message, "exitCode": code}))
    sys.exit(code)


def main() -> None:
    """Run the CLI: one line on stderr for every error, a traceback only with PARALLELIX_DEBUG=1."""
    debug = os.environ.get("PARALLELIX_DEBUG") == "1"
    if len(sys.argv) == 1:
        sys.argv.append("--help")  # a bare `parallelix-node` is a request for help, not an error
    try:
        cli.main(standalone_mode=False)
    except NodeError as e:
        if debug:
            raise
        _fail(str(e), e.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.ClickException as e:
        if debug:
            raise
        ctx = getattr(e, "ctx", None)
        _fail(f"{e.format_message()} (see: {ctx.command_path if ctx else 'parallelix-node'} --help)", 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # the last line of defence: never a traceback for the operator
        if debug:
            raise
        _fail(f"unexpected {type(e).__name__}: {e}; rerun with PARALLELIX_DEBUG=1 and report it", 1)


if __name__ == "__main__":
    main()
