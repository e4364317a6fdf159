"""`resume`: take requests again after `pause` (or stop a drain under way)."""
import click

from node.commands.clikit import common_options, emit
from node.commands.pause import in_flight_text, maintenance
from node.home import Home


@click.command("resume")
@common_options
def cmd(home: Home, as_json: bool) -> None:
    """Take requests again after pause (a drain under way stops: the daemon keeps running)."""
    from ipc import messages as m

    doc = maintenance(home, m.ResumeRequest(), "resume")
    emit(as_json, {"action": "resume", **doc},
         f"resumed node {doc['nodeId']}: taking requests again ({in_flight_text(doc)})")
