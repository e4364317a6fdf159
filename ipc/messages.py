"""Every message that crosses a socket: one msgspec tagged union per socket, msgpack-encoded.

Sockets (DESIGN.md):
- work:      supervisor ROUTER <-> worker DEALER     (`ToWorker` / `FromWorker`)
- heartbeat: supervisor PAIR   <-> heartbeat PAIR    (`ToHeartbeat` / `FromHeartbeat`)
- control:   supervisor ROUTER <-> local client REQ  (`ControlRequest` / `ControlReply`)
- events:    supervisor XPUB    -> local client SUB  (`Event`)

Nothing else crosses a socket: no pickles, no bare dicts, never the key.
"""
from typing import Any, Union

import msgspec

# Inbound size bounds (ZMQ_MAXMSGSIZE): a result is text of at most a few MB.
MAX_WORK_MESSAGE = 32 * 1024 * 1024
MAX_SMALL_MESSAGE = 64 * 1024


class _Msg(msgspec.Struct, tag=True, tag_field="type", frozen=True, forbid_unknown_fields=True):
    """Local-only messages: unknown fields are a bug, so decoding rejects them."""


# --- work socket ---------------------------------------------------------------------------

class Ready(_Msg):
    """A worker is up, and whether its Ollama answers. Sent once the first probe of Ollama has
    a verdict, again whenever that verdict changes, and again after each ZeroMQ reconnect."""
    slot: str
    pid: int
    endpoint: str
    ollama_up: bool = True
    reason: str = ""          # why Ollama is taken to be down ("" when up)


class Job(_Msg):
    """One whole inference request for one worker; `deadline_ms` is Unix milliseconds."""
    job: int
    request_id: str
    model: str
    prompt: str
    system: str | None
    options: dict[str, Any]
    deadline_ms: int
    cpu_only: bool = False


class Metrics(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Ollama's final-chunk metrics, durations already converted from nanoseconds."""
    eval_count: int = 0
    prompt_eval_count: int = 0
    total_duration_ms: int = 0
    load_duration_ms: int = 0
    done_reason: str = ""
    model_digest: str = ""


class Timing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The worker's own share of a job, in seconds: durations on its clock, never timestamps
    (two processes' clocks are not compared). The supervisor's metrics split a request's time
    into stages with them (parallelix_stage_seconds)."""
    to_ollama: float = 0.0     # the job thread took the job -> the request went to Ollama
    ollama: float = 0.0        # the request went -> Ollama's last line was read
    reply: float = 0.0         # the last line was read -> Done was built


class Done(_Msg):
    job: int
    request_id: str
    text: str
    metrics: Metrics
    timing: Timing | None = None


class Failed(_Msg):
    """The request could not be served; `code` is a PROTOCOL.md failure code."""
    job: int
    request_id: str
    code: str
    message: str


class Ping(_Msg):
    seq: int


class Pong(_Msg):
    """Answer to Ping; `job` is the job in progress (0 when idle)."""
    seq: int
    job: int


class Stop(_Msg):
    """Exit after the job in progress (if any) is answered."""


ToWorker = Union[Job, Ping, Stop]
FromWorker = Union[Ready, Done, Failed, Pong]


# --- heartbeat socket ----------------------------------------------------------------------

class Load(_Msg):
    """The supervisor's current load (PROTOCOL.md heartbeat `load`); arriving at all is the
    supervisor's sign of life."""
    busy: int
    slots: int
    served: int
    ready: int = 0            # PROTOCOL.md load.ready: slots up whose Ollama answers
    accepting: bool = False   # PROTOCOL.md load.accepting: false while paused, draining, or no slot ready


class StopHeartbeat(_Msg):
    """Stop sending heartbeats and exit."""


class BeatResult(_Msg):
    """Outcome of one heartbeat POST; `status` is the HTTP status (0 for no answer)."""
    seq: int
    ok: bool
    status: int
    at_ms: int
    error: str = ""


class Denied(_Msg):
    """The coordinator refused this node (403/404): the whole daemon must stop."""
    status: int
    code: str
    detail: str = ""


ToHeartbeat = Union[Load, StopHeartbeat]
FromHeartbeat = Union[BeatResult, Denied]


# --- control socket ------------------------------------------------------------------------

class StatusRequest(_Msg):
    pass


class PauseRequest(_Msg):
    """Take no new requests (a drain under way stops, the node stays paused); reply: status."""


class ResumeRequest(_Msg):
    """Take requests again (a drain under way stops); reply: status."""


class DrainRequest(_Msg):
    """Pause, then exit 0 once everything in flight is served and delivered; after
    `timeout_s`, give the rest back and exit. Reply: status."""
    timeout_s: float | None = None


class WorkerStatus(msgspec.Struct, frozen=True, rename="camel"):
    slot: str
    pid: int | None
    endpoint: str
    busy: bool
    request_id: str | None
    served: int
    failed: int
    restarts: int
    last_failure: str | None = None  # "code: reason" of its latest failed request
    ready: bool = False                 # the worker is up and its Ollama answers
    waiting_for: str | None = None      # why not: the endpoint it waits for, and the reason


class StatusReply(msgspec.Struct, tag=True, tag_field="type", frozen=True, rename="camel"):
    """A snapshot of the running daemon, answered from memory."""
    pid: int
    version: str
    state: str
    node_id: int
    address: str
    node_key_hash: str
    tier: int
    coordinator: str
    uptime_s: int
    workers: list[WorkerStatus]
    heartbeat_pid: int | None
    served: int
    failed: int
    last_heartbeat_ack_ms: int | None
    outbox_depth: int
    paused: bool = False                 # maintenance: no new requests (also while draining)
    draining: bool = False               # the daemon exits once in flight and outbox are empty
    in_flight: int = 0                   # requests taken and not yet answered by a worker
    delivery_error: str | None = None    # why results wait in the outbox, while they do
    accepting: bool = False


class ControlError(msgspec.Struct, tag=True, tag_field="type", frozen=True):
    error: str


ControlRequest = Union[StatusRequest, PauseRequest, ResumeRequest, DrainRequest]
ControlReply = Union[StatusReply, ControlError]


# --- event socket --------------------------------------------------------------------------

class _Event(msgspec.Struct, tag_field="type", frozen=True, rename="camel"):
    at_ms: int


class StateTransition(_Event, tag="state.transition"):
    from_state: str
    to_state: str
    reason: str


class RequestServed(_Event, tag="request.served"):
    request_id: str
    model: str
    ms: int
    poe: str


class RequestFailed(_Event, tag="request.failed"):
    request_id: str
    code: str
    reason: str


class Maintenance(_Event, tag="maintenance"):
    """Serving, paused or draining changed (`pause`, `resume`, `drain`)."""
    mode: str                 # "serving" | "paused" | "draining"
    in_flight: int
    outbox_depth: int


class WatchHello(_Event, tag="watch.hello"):
    """Published when a subscriber joins: proof to it that its subscription is live."""
    state: str


Event = Union[StateTransition, RequestServed, RequestFailed, Maintenance, WatchHello]

class _Decoder:
    """A strict msgpack decoder for one union. A frame nested deeper than the stack (a 64 KiB
    frame of one-element arrays is) raises the DecodeError every receiver handles, not the
    RecursionError msgspec lets through, which would end the receiving task."""

    def __init__(self, kind: Any) -> None:
        self._decoder = msgspec.msgpack.Decoder(kind)

    def decode(self, data: bytes) -> Any:
        try:
            return self._decoder.decode(data)
        except RecursionError:
            raise msgspec.DecodeError("nested too deeply") from None


encoder = msgspec.msgpack.Encoder()
from_worker = _Decoder(FromWorker)
to_worker = _Decoder(ToWorker)
from_heartbeat = _Decoder(FromHeartbeat)
to_heartbeat = _Decoder(ToHeartbeat)
control_request = _Decoder(ControlRequest)
control_reply = _Decoder(ControlReply)
event = _Decoder(Event)

# Raised by every decoder above on a malformed frame; receivers log and drop.
DecodeError = msgspec.DecodeError
