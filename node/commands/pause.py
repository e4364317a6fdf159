"""`pause`: take no new requests; work in flight finishes and is delivered (README, "Maintenance")."""
from typing import Any

import click

from node.commands.clikit import common_options, emit
from node.errors import NodeError
from node.home import Home


def maintenance(home: Home, request: Any, action: str) -> dict[str, Any]:
    """Send a pause, resume or drain request to the running daemon; its status after it, as
    the camelCase dict `status --json` prints."""
    from ipc import messages as m
    from node.commands.livestatus import ask, live_doc

    reply = ask(home, request, timeout_ms=5000)
    if reply is None:
        raise NodeError(f"no daemon answers for {home.root}; nothing to {action} "
                        "(parallelix-node status shows whether one runs)")
    if isinstance(reply, m.ControlError):
        raise NodeError(f"the daemon refused to {action}: {reply.error}")
    return live_doc(reply)


def in_flight_text(doc: dict[str, Any]) -> str:
    return f"{doc['inFlight']} in flight, {doc['outboxDepth']} in the outbox"


@click.command("pause")
@common_options
def cmd(home: Home, as_json: bool) -> None:
    """Take no new requests; work in flight finishes and is delivered (resume undoes it)."""
    from ipc import messages as m

    doc = maintenance(home, m.PauseRequest(), "pause")
    emit(as_json, {"action": "pause", **doc},
         f"paused node {doc['nodeId']}: it takes no new requests and tells the coordinator so "
         f"({in_flight_text(doc)}, finishing and delivered); it stays paused across restarts "
         "until `parallelix-node resume`")
