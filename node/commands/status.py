"""`status`: the node's identity, state, settings and contracts; the daemon's live view when
it is running. Fast: no key, no HTTP, no probing (no requests, eth-account or zmq imports)."""
import click

from node.cliopts import load_from_flags, settings_options
from node.clikit import common_options, emit
from node.home import Home
from node.livestatus import query_live
from node.status_view import offline_status, render_status


@click.command("status")
@common_options
@settings_options()
def cmd(home: Home, as_json: bool, coordinator: str | None, ollama: tuple[str, ...],
        model: str | None) -> None:
    """Show the node's identity and state (the daemon's live view when it runs)."""
    settings = load_from_flags(home, coordinator, ollama, model)
    offline = offline_status(home, settings)
    live = query_live(home)
    doc = {**offline, **live, "live": True} if isinstance(live, dict) else {**offline, "live": False}
    emit(as_json, doc, render_status(doc))
