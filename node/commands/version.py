"""`version`: what is installed, for bug reports."""
import platform
import sys

import click

from node.commands.clikit import common_options, emit
from node.home import Home
from node.version import cli_version


@click.command("version")
@common_options
def cmd(home: Home, as_json: bool) -> None:
    """Show the CLI version, Python version and platform."""
    doc = {"version": cli_version(), "python": platform.python_version(),
           "platform": f"{sys.platform}-{platform.machine()}"}
    emit(as_json, doc, f"parallelix-node {doc['version']} (Python {doc['python']}, {doc['platform']})")
