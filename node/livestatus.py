"""The running daemon's live view, for `status`."""
from node.home import Home


def query_live(home: Home, timeout_ms: int = 1000) -> dict | None:
    """Ask the daemon's control socket (`<home>/run/control.sock`) for its `status` answer.

    The daemon's control socket answer goes here: a dict of live fields (state, nodeId, tier,
    uptime, workers, served/failed counts, last heartbeat, outbox depth) that `status` merges
    over the offline document, or None when no daemon answers within `timeout_ms`.
    Not implemented yet: always None (status then shows the offline view).
    """
    return None
