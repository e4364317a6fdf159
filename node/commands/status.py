"""`status`: the node's identity, state, settings and contracts; the daemon's live view when
it is running. Fast: no key, no HTTP, no probing (no requests, eth-account or zmq imports)."""
import signal
import sys
import time

import click

from node.commands.cliopts import load_from_flags, settings_options
from node.commands.clikit import common_options, emit, emit_json_line
from node.home import Home
from node.commands.livestatus import query_live
from node.commands.status_view import offline_status, render_status
from workers.escape import escape_controls


@click.command("status")
@click.option("--watch", is_flag=True, help="Stream the running daemon's events until it stops "
                                             "(Ctrl-C stops sooner).")
@common_options
@settings_options()
def cmd(home: Home, as_json: bool, coordinator: str | None, ollama: tuple[str, ...],
        model: str | None, watch: bool) -> None:
    """Show the node's identity and state (the daemon's live view when it runs)."""
    if watch:
        return watch_events(home, as_json)
    settings = load_from_flags(home, coordinator, ollama, model)
    offline = offline_status(home, settings)
    live = query_live(home)
    doc = {**offline, **live, "live": True} if isinstance(live, dict) else {**offline, "live": False}
    emit(as_json, doc, render_status(doc))


def watch_events(home: Home, as_json: bool) -> None:
    """Print each event the daemon publishes: one line, or one JSON object per line."""
    from node.errors import NodeError
    from node.commands.livestatus import watch_events as events
    from node.daemon.runlock import running_pid

    pid = running_pid(home)
    if pid is None:
        raise NodeError(f"no daemon runs for {home.root}; start it with parallelix-node start")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as Ctrl-C: a normal way to stop
    greeted = False
    try:
        for event in events(home, pid):
            if event["type"] == "watch.hello":
                if greeted:  # a hello for another watcher that joined later
                    continue
                greeted = True
            if as_json:
                emit_json_line(event)
            elif event["type"] == "watch.hello":
                click.echo(f"watching {home.root} (state {event['state']}); Ctrl-C stops")
            else:
                fields = " ".join(f"{k}={v}" for k, v in event.items()
                                  if k not in ("type", "atMs"))
                click.echo(escape_controls(f"{event['type']} {fields}").replace("\n", "\\n"))
    except KeyboardInterrupt:
        return
    if as_json:
        emit_json_line({"type": "watch.stopped", "atMs": time.time_ns() // 1_000_000,
                        "pid": pid})
    else:
        click.echo(f"the daemon (pid {pid}) stopped; parallelix-node logs says why")
