"""Strict parsing of the coordinator's inbox answer: a malformed request is refused here, with
a reason, before anything acts on it."""
from dataclasses import dataclass
from typing import Any

import msgspec


class InboxRequest(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    model: str
    prompt: str
    deadline_ms: int
    system: str | None = None
    options: dict[str, Any] = {}


class _Envelope(msgspec.Struct, frozen=True):
    request: InboxRequest


@dataclass(frozen=True)
class Malformed:
    reason: str
    request_id: str | None  # when the id itself was readable, the failure can be reported


def parse_inbox(body: dict[str, Any]) -> InboxRequest | Malformed:
    """The request in a 200 inbox body, or why it cannot be served."""
    try:
        req = msgspec.convert(body, _Envelope).request
    except msgspec.ValidationError as e:
        return Malformed(str(e)[:200], _readable_id(body))
    if not req.id or len(req.id) > 200:
        return Malformed("request id is empty or longer than 200 characters", None)
    return req


def _readable_id(body: dict[str, Any]) -> str | None:
    req = body.get("request")
    rid = req.get("id") if isinstance(req, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 200 else None
