"""The running daemon's live view, for `status`: a client of the control and event sockets.

The protocol is documented in the README ("Control socket"): a REQ socket sends a msgpack
`StatusRequest` and receives a `StatusReply`; a SUB socket receives `Event`s. zmq is imported
only when a daemon holds the home's lock, so `status` stays fast when none runs."""
from collections.abc import Iterator
from typing import Any

from node.home import Home
from node.daemon.runlock import running_pid


def ask(home: Home, request: Any = None, timeout_ms: int = 1000) -> Any:
    """Send a control request (a `StatusRequest` by default) and return the reply struct, or
    None when no daemon answers."""
    if running_pid(home) is None:
        return None
    import zmq

    from ipc import messages as m

    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
        sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        sock.connect(home.endpoint("control.sock"))
        try:
            sock.send(m.encoder.encode(request or m.StatusRequest()))
            return m.control_reply.decode(sock.recv())
        except (zmq.ZMQError, m.DecodeError):
            return None
    finally:
        ctx.destroy(linger=0)


def live_doc(reply: Any) -> dict[str, Any]:
    """A `StatusReply` as the camelCase dict `status --json` prints."""
    import msgspec
    doc = msgspec.to_builtins(reply)
    doc.pop("type", None)
    doc["ollama"] = list(dict.fromkeys(w["endpoint"] for w in doc["workers"]))  # what it uses
    return doc


def query_live(home: Home, timeout_ms: int = 1000) -> dict[str, Any] | None:
    """The daemon's status answer as a camelCase dict, or None when no daemon answers."""
    reply = ask(home, timeout_ms=timeout_ms)
    if reply is None:
        return None
    from ipc import messages as m
    return live_doc(reply) if isinstance(reply, m.StatusReply) else None


GONE_CHECK_MS = 1000  # a quiet stream checks this often that its daemon still runs


def watch_events(home: Home, pid: int) -> Iterator[dict[str, Any]]:
    """Yield the events (state transitions, served, failed) of the daemon `pid` as camelCase
    dicts; end once it no longer runs (checked whenever the stream is quiet for a second), after
    the events it sent before it stopped. A daemon started in its place is another run, which
    the stream does not follow."""
    import msgspec
    import zmq

    from ipc import messages as m

    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(home.endpoint("events.sock"))
    try:
        while True:
            if not sock.poll(GONE_CHECK_MS):
                if running_pid(home) != pid:
                    return
                continue
            try:
                event = m.event.decode(sock.recv())
            except m.DecodeError:
                continue
            yield msgspec.to_builtins(event)
    finally:
        ctx.destroy(linger=0)
