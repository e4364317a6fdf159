"""What `status` shows without the daemon, and how it is printed.

`offline_status` reads only state.json and the settings (never the key: only the signing
process reads it) and does no probing, so `status` starts fast. The daemon's live answer
(node.commands.livestatus) is merged over this document by the command: `{**offline, **live, "live": True}`.
"""
from typing import Any

from node.home import Home
from node.keyfile import missing_key_advice
from node.state import ACTIVE, COOLING, FRESH, INITED, RETIRED, current_state, read_state, state_problem

def offline_status(home: Home, settings: Any) -> dict[str, Any]:
    """The node as its files describe it: identity and state from state.json (written by init,
    verify and the daemon), nodeId/coordinator/Ollama/model from the settings, contract
    addresses from the cached /network answer (written by verify and the daemon)."""
    saved = read_state(home)
    tier = saved.get("tier")
    network = saved.get("network") if isinstance(saved.get("network"), dict) else None
    address = saved.get("address") if isinstance(saved.get("address"), str) else None
    key_hash = saved.get("nodeKeyHash") if isinstance(saved.get("nodeKeyHash"), str) else None
    state = current_state(home, saved)
    return {
        "state": state,
        "keyMissing": missing_key_advice(home) if state == FRESH else None,
        "address": address,
        "nodeKeyHash": key_hash,
        "nodeId": settings.node_id,
        "tier": tier if isinstance(tier, int) and not isinstance(tier, bool) else None,
        "coordinator": settings.coordinator,
        "ollama": [w.ollama for w in settings.workers],
        "model": settings.model,
        "network": network,
        "paused": saved.get("paused") is True,   # the live answer replaces it while one runs
        "home": str(home.root),
        "log": str(home.log),
        "warning": _warning(home),
    }


def _warning(home: Home) -> str | None:
    problem = state_problem(home)
    return problem and (f"{problem}; run parallelix-node verify (it records the address again) "
                        "or start the daemon (it rewrites the state)")


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def render_status(doc: dict[str, Any]) -> list[str]:
    """The plain `status` lines for a document from `offline_status` (maybe merged with live)."""
    rows: list[tuple[str, str]] = [("state", _state_text(doc))]
    if doc.get("state") == FRESH:
        rows.append(("", doc.get("keyMissing") or "no node key: run parallelix-node init"))
    else:
        rows.append(("address", doc.get("address") or "unknown (run parallelix-node verify "
                                                       "to record it)"))
        rows.append(("nodeKeyHash", doc.get("nodeKeyHash") or "unknown"))
    rows.append(("nodeId", _fmt(doc.get("nodeId")) if doc.get("nodeId") is not None
                 else "not set (parallelix-node start --node-id N sets it)"))
    rows.append(("tier", _fmt(doc.get("tier")) if doc.get("tier") is not None
                 else "unknown (run parallelix-node probe)"))
    rows.append(("coordinator", _fmt(doc.get("coordinator"))))
    rows.append(("ollama", _fmt(doc.get("ollama"))))
    rows.append(("model", _fmt(doc.get("model"))))
    network = doc.get("network")
    if isinstance(network, dict):
        contracts = network.get("contracts") if isinstance(network.get("contracts"), dict) else {}
        rows.append(("chainId", _fmt(network.get("chainId"))))
        for name, addr in contracts.items():
            rows.append((name, _fmt(addr)))
        source = network.get("coordinator")
        if source and source != doc.get("coordinator"):
            rows.append(("", f"(contracts cached from {source}, not the configured coordinator; "
                             "run parallelix-node verify)"))
    else:
        rows.append(("contracts", "unknown (run parallelix-node verify to fetch them)"))
    if doc.get("live"):
        rows += _live_rows(doc)
    else:
        rows.append(("daemon", "not running (or not answering)"))
        if doc.get("paused"):
            rows.append(("maintenance", "paused: the next start starts paused "
                                        "(parallelix-node resume once it runs)"))
    rows.append(("home", _fmt(doc.get("home"))))
    if doc.get("warning"):
        rows.append(("warning", doc["warning"]))
    width = max(len(k) for k, _ in rows)
    return [f"{k:<{width}}  {v}" if k else f"{'':<{width}}  {v}" for k, v in rows]


# What a saved state means while no daemon runs for the home.
_OFFLINE_MEANING = {ACTIVE: "on the network; daemon stopped — the node is offline",
                    COOLING: "in cooldown on the network; daemon stopped",
                    RETIRED: "retired on the network; daemon stopped",
                    INITED: "(not attached; daemon stopped)"}


def _state_text(doc: dict[str, Any]) -> str:
    state = doc.get("state") or "-"
    if doc.get("live") or state not in _OFFLINE_MEANING:
        return state
    return f"{state} {_OFFLINE_MEANING[state]}"


def _live_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The running daemon's view (the control socket's StatusReply)."""
    beat = doc.get("lastHeartbeatAckMs")
    rows = [("daemon", f"running, pid {doc.get('pid')}, up {_duration(doc.get('uptimeS'))}, "
                       f"version {doc.get('version')}"),
            ("served", f"{doc.get('served')} served, {doc.get('failed')} failed, "
                       f"{doc.get('outboxDepth')} in the outbox"),
            ("heartbeat", f"pid {_fmt(doc.get('heartbeatPid'))}, last acknowledged "
                          + (f"{_ago(beat)} ago" if isinstance(beat, int) else "never"))]
    if doc.get("draining"):
        rows.append(("maintenance", "draining: takes no new requests, stops once "
                                    f"{doc.get('inFlight')} in flight and the outbox are done "
                                    "(parallelix-node resume cancels)"))
    elif doc.get("paused"):
        rows.append(("maintenance", "paused: takes no new requests (parallelix-node resume)"))
    waiting = sorted({w["waitingFor"] for w in doc.get("workers") or [] if w.get("waitingFor")})
    why = ("draining" if doc.get("draining") else "paused" if doc.get("paused") else
           "waiting for " + "; ".join(waiting) if waiting else "")
    rows.append(("accepting", "yes" if doc.get("accepting") else f"no: {why}" if why else "no"))
    for w in doc.get("workers") or []:
        busy = f"busy {w.get('requestId') or ''}".strip() if w.get("busy") else \
            "idle" if w.get("ready") else "not ready"
        rows.append((f"worker {w.get('slot')}",
                     f"pid {_fmt(w.get('pid'))} {busy} on {w.get('endpoint')} "
                     f"({w.get('served')} served, {w.get('failed')} failed, "
                     f"{w.get('restarts')} restarts)"))
        if w.get("failed") and w.get("lastFailure"):
            rows.append(("", f"last failure: {w['lastFailure']}"))
    return rows


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int):
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _ago(ms: int) -> str:
    import time
    return _duration(max(0, int(time.time() - ms / 1000)))
