"""state.json: the node's lifecycle state and what the CLI shows without the daemon.

States (DESIGN.md): FRESH (no key) -> INITED -> ACTIVE; 403 in_cooldown -> COOLING,
retired -> RETIRED, not_staked -> INITED. Written atomically; a corrupt file reads as
empty (with the reason) rather than stopping the daemon, since every field can be re-learnt.
"""
import json
from typing import Any

from node.atomic import write_atomic
from node.home import Home

FRESH, INITED, ACTIVE, COOLING, RETIRED = "FRESH", "INITED", "ACTIVE", "COOLING", "RETIRED"
STATES = (FRESH, INITED, ACTIVE, COOLING, RETIRED)

# The state a 403 error code moves the node to (PROTOCOL.md, "Stopping on unstake").
STATE_FOR_403 = {"not_staked": INITED, "in_cooldown": COOLING, "retired": RETIRED}


def read_state(home: Home) -> dict[str, Any]:
    """The saved state, or {} when there is none or it is unreadable."""
    try:
        data = json.loads(home.state.read_text())
    except (FileNotFoundError, ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def state_problem(home: Home) -> str | None:
    """Why state.json cannot be trusted (unreadable, not a JSON object, fields of the wrong
    type), or None when it is fine or absent."""
    try:
        data = json.loads(home.state.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as e:
        return f"{home.state} is unreadable ({type(e).__name__})"
    if not isinstance(data, dict):
        return f"{home.state} does not hold a JSON object"
    wrong = [k for k, kind in (("state", str), ("address", str), ("nodeKeyHash", str),
                               ("tier", int), ("network", dict), ("nodeId", int),
                               ("paused", bool), ("lastDrain", dict))
             if k in data and not isinstance(data[k], kind)]
    if "state" in data and data["state"] not in STATES:
        wrong.append("state")
    return f"{home.state} has fields of the wrong type: {', '.join(wrong)}" if wrong else None


def current_state(home: Home, saved: dict[str, Any] | None = None) -> str:
    """FRESH without a key; otherwise the saved state, INITED by default."""
    if not home.key.exists():
        return FRESH
    state = (read_state(home) if saved is None else saved).get("state")
    return state if state in STATES and state != FRESH else INITED


def update_state(home: Home, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into state.json atomically and return the new content."""
    data = read_state(home)
    data.update(fields)
    write_atomic(home.state, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(),
                 mode=0o600)
    return data


def record_network(home: Home, coordinator: str, info: Any, fetched_at_ms: int) -> None:
    """Cache a /network answer (a `NetworkInfo`) so `status` shows contracts offline."""
    update_state(home, network={"coordinator": coordinator, "chainId": info.chain_id,
                                "contracts": info.contracts, "version": info.version,
                                "fetchedAtMs": fetched_at_ms})
