"""Parsing of the coordinator's inbox answer: liberal in shape, strict in content.

A missing or null `request` means nothing is waiting. Anything that could not be carried to a
worker, signed or posted back (wrong types, text that is not valid Unicode, integers beyond
64 bits, a prompt larger than a worker accepts) is refused here, with a reason, before
anything acts on it."""
from dataclasses import dataclass
from typing import Any

import msgspec

from ipc.messages import encoder

MAX_PROMPT_BYTES = 8 * 1024 * 1024   # prompt + system; a worker frame is bounded at 32 MiB


class InboxRequest(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    model: str
    prompt: str
    deadline_ms: int
    system: str | None = None
    options: dict[str, Any] | None = None


class _Envelope(msgspec.Struct, frozen=True):
    request: InboxRequest | None = None


@dataclass(frozen=True)
class Malformed:
    reason: str
    request_id: str | None  # when the id itself was readable, the failure can be reported


def parse_inbox(body: dict[str, Any]) -> InboxRequest | Malformed | None:
    """The request in a 200 inbox body; None when it holds none; or why it cannot be served."""
    try:
        req = msgspec.convert(body, _Envelope).request
    except msgspec.ValidationError as e:
        return Malformed(str(e)[:200], _readable_id(body))
    if req is None:
        return None
    if _readable_id({"request": {"id": req.id}}) is None:
        return Malformed("request id is empty, too long or not valid Unicode", None)
    try:
        size = len(encoder.encode(req))  # every string UTF-8, every integer within 64 bits
    except (UnicodeEncodeError, OverflowError, TypeError, ValueError) as e:
        return Malformed(f"request cannot be carried to a worker ({type(e).__name__})", req.id)
    if size > MAX_PROMPT_BYTES:
        return Malformed(f"request is {size} bytes; at most {MAX_PROMPT_BYTES} are served", req.id)
    if not 0 < req.deadline_ms < 2**63:
        return Malformed(f"deadlineMs {req.deadline_ms} is not a Unix time in milliseconds", req.id)
    return req if req.options is not None else msgspec.structs.replace(req, options={})


def _readable_id(body: dict[str, Any]) -> str | None:
    """The request id when it can be signed and reported back, else None."""
    req = body.get("request")
    rid = req.get("id") if isinstance(req, dict) else None
    if not isinstance(rid, str) or not 0 < len(rid) <= 200:
        return None
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return rid
