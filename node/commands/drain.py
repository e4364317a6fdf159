"""`drain`: pause, wait until everything in flight is served and delivered, then stop the daemon
with exit status 0, so the service manager leaves it stopped (README, "Maintenance")."""
import sys
import time
from typing import Any

import click

from node.commands.clikit import common_options, emit
from node.commands.pause import in_flight_text, maintenance
from node.home import Home

REFRESH = 0.5     # seconds between progress updates


@click.command("drain")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="S",
              help="After S seconds, give what is still in flight back to the coordinator and "
                   "stop anyway [default: wait as long as it takes].")
@common_options
def cmd(home: Home, as_json: bool, timeout: float | None) -> None:
    """Finish and deliver everything in flight, then stop the daemon (Ctrl-C: stays paused)."""
    from ipc import messages as m

    began_ms = time.time_ns() // 1_000_000
    doc = maintenance(home, m.DrainRequest(timeout_s=timeout), "drain")
    line = ProgressLine()
    try:
        while doc is not None:
            line.show(progress_text(doc, time.time() - began_ms / 1000, timeout),
                      (in_flight_text(doc), doc.get("deliveryError")))
            time.sleep(REFRESH)
            doc = _status(home)
    except KeyboardInterrupt:
        line.end()
        _interrupted(home, as_json)
    line.end()
    _finished(home, as_json, began_ms)


def _status(home: Home) -> dict[str, Any] | None:
    """The daemon's status, or None once it has exited (its run lock is free)."""
    from node.commands.livestatus import query_live
    from node.daemon.runlock import running_pid

    while running_pid(home) is not None:
        doc = query_live(home)
        if doc is not None:
            return doc
    return None


def progress_text(doc: dict[str, Any], elapsed: float, timeout: float | None) -> str:
    text = f"draining node {doc['nodeId']}: {in_flight_text(doc)}, {elapsed:.0f}s"
    if doc["outboxDepth"] and doc.get("deliveryError"):
        text += f"; waiting for the coordinator: {doc['deliveryError']}"
    if timeout is not None:
        text += f"; gives the rest back in {max(0.0, timeout - elapsed):.0f}s"
    return text


class ProgressLine:
    """One line on stderr, rewritten in place on a terminal; elsewhere a line per change."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.last_state: object = None

    def show(self, text: str, state: object) -> None:
        """`state` is what a new line is printed for off a terminal (counts, the delivery
        error), never the clock."""
        from workers.logfmt import escape_controls
        text = escape_controls(text)
        if self.tty:
            sys.stderr.write("\r\033[K" + text)
            sys.stderr.flush()
        elif state != self.last_state:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        self.last, self.last_state = text, state

    def end(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
            self.last = ""


def _interrupted(home: Home, as_json: bool) -> None:
    """Ctrl-C: stop draining, stay paused (the daemon keeps running and serving what it has)."""
    from ipc import messages as m
    from node.errors import NodeError

    try:
        doc = maintenance(home, m.PauseRequest(), "pause")
    except NodeError:
        return  # the daemon finished the drain meanwhile: report it as finished
    emit(as_json, {"action": "drain", "interrupted": True, **doc},
         f"drain interrupted: node {doc['nodeId']} stays paused and running "
         f"({in_flight_text(doc)}); `parallelix-node resume` takes requests again, "
         "`parallelix-node drain` drains it again")
    sys.exit(130)


def _finished(home: Home, as_json: bool, began_ms: int) -> None:
    """The daemon is gone: print what its drain recorded in state.json."""
    from node.errors import NodeError
    from node.state import read_state

    record = read_state(home).get("lastDrain")
    if not isinstance(record, dict) or not isinstance(record.get("atMs"), int) \
            or record["atMs"] < began_ms:
        raise NodeError("the daemon stopped before finishing the drain (killed?); "
                        "see parallelix-node logs; results not yet delivered stay in the "
                        "outbox for the next start")
    complete = not record.get("timedOut") and not record.get("givenBack") \
        and not record.get("outbox")
    seconds = round((record["atMs"] - began_ms) / 1000, 1)
    doc = {"action": "drain", "drained": complete, "seconds": seconds,
           **{k: record.get(k) for k in ("served", "failed", "givenBack", "outbox", "timedOut")}}
    head = (f"drained in {seconds:.0f}s" if complete else
            f"drain stopped after {seconds:.0f}s" + (" (timeout)" if record.get("timedOut") else ""))
    lines = [f"{head}: {doc['served']} served, {doc['failed']} failed, {doc['givenBack']} given "
             f"back to the coordinator, {doc['outbox']} left in the outbox"
             + (" (delivered at the next start)" if doc["outbox"] else ""),
             "the daemon stopped with exit status 0 and stays stopped: start it with "
             "`parallelix-node start` or `systemctl [--user] start parallelix-node`"]
    emit(as_json, doc, lines)
    if not complete:
        sys.exit(1)
