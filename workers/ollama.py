"""Ollama's HTTP API as the node uses it (reference/ollama.md §1-2). No key, no zmq, no
requests: workers and the CLI both import it. Every call has a deadline and every answer a size
bound (ipc/httpclient.py); every failure is an `OllamaError` with one line an operator can act
on. Every string Ollama sends is made valid Unicode (a lone surrogate becomes U+FFFD) before
anything signs, encodes or prints it."""
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from ipc import httpclient

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
MAX_ANSWER = 16 * 1024 * 1024   # /api/tags of a large library is a few hundred KB
# One NDJSON line: a token, or the final chunk whose `context` array can reach ~1 MB.
MAX_LINE = 4 * 1024 * 1024


class OllamaError(Exception):
    """Ollama unreachable, or answered with an error; `status` is the HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def session() -> httpclient.Client:
    """Keep-alive connections to Ollama; never through a proxy (ipc/httpclient.py reads no
    proxy settings): a proxy must never sit between us and local Ollama."""
    return httpclient.Client(connect_timeout=CONNECT_TIMEOUT)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(value: Any) -> Any:
    """`value` with every string in it (keys too) made encodable: lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def parse_json(raw: bytes) -> Any:
    """msgspec on the hot path; it refuses a lone surrogate escape ("\\ud800"), which JSON
    allows, so such a body is read again by the json module and cleaned."""
    try:
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return clean(json.loads(raw))  # ValueError when it really is not JSON
    except RecursionError:  # nested deeper than the stack: no Ollama answer is
        raise ValueError("JSON nested too deeply") from None


def error_text(body: bytes, reason: str = "") -> str:
    """The `error` of an Ollama error body, else its first 200 characters."""
    try:
        obj = parse_json(body)
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            return obj["error"]
    except ValueError:
        pass
    return clean(body[:200].decode("utf-8", "replace").strip()) or reason or "no detail"


def get_json(base: str, path: str, http: httpclient.Client | None = None,
             timeout: float = READ_TIMEOUT) -> Any:
    """GET base+path and return its JSON body, or raise OllamaError."""
    http = http or session()
    try:
        resp = http.request("GET", base + path, timeout=CONNECT_TIMEOUT + timeout,
                            max_bytes=MAX_ANSWER, read_timeout=timeout)
    except httpclient.Unreachable:
        raise OllamaError(f"Ollama is not reachable at {base}; start it with: ollama serve") from None
    except httpclient.Timeout:
        raise OllamaError(f"Ollama at {base} did not answer within {timeout:.0f} s") from None
    except httpclient.HttpError as e:
        raise OllamaError(f"Ollama at {base} could not be read ({e})") from None
    if resp.status != 200:
        raise OllamaError(f"Ollama at {base} answered {resp.status}: {error_text(resp.body)}",
                          resp.status)
    try:
        return parse_json(resp.body)
    except ValueError:
        raise OllamaError(f"{base} answered {path} with something that is not JSON: is "
                          "something other than Ollama listening there? check --ollama / "
                          "OLLAMA_HOST", resp.status) from None


def get_version(base: str, http: httpclient.Client | None = None,
                timeout: float = READ_TIMEOUT) -> str:
    body = get_json(base, "/api/version", http, timeout)
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise OllamaError(f"{base} answered /api/version without a version: is something other "
                          "than Ollama listening there? check --ollama / OLLAMA_HOST", 200)
    return body["version"]


def list_models(base: str, http: httpclient.Client | None = None,
                timeout: float = READ_TIMEOUT) -> list[dict[str, Any]]:
    """Local models from /api/tags; cloud stubs (`remote_host`) are skipped: they cannot run here."""
    body = get_json(base, "/api/tags", http, timeout)
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise OllamaError(f"{base} answered /api/tags without a model list: is something other "
                          "than Ollama listening there? check --ollama / OLLAMA_HOST", 200)
    return [m for m in models
            if isinstance(m, dict) and isinstance(m.get("name"), str) and not m.get("remote_host")]


def find_model(models: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry of `models` for `name`, with Ollama's rule that a missing tag means :latest."""
    want = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
    return next((m for m in models if m["name"] in (name, want)), None)


def has_model(models: list[dict[str, Any]], name: str) -> bool:
    """Whether `name` is among `models` (see `find_model`)."""
    return find_model(models, name) is not None


def complete_lines(blocks: Iterable[bytes], max_line: int = MAX_LINE) -> Iterator[bytes]:
    """A byte stream cut after its last newline as blocks arrive (each piece holds whole lines;
    the end of the stream may hold one without its newline), in linear time, refusing a line
    longer than `max_line` before it is all read (requests' iter_lines is quadratic on long
    lines). Ollama sends a line per chunk, so a piece is usually a block as it came."""
    pending = bytearray()
    for block in blocks:
        end = block.rfind(b"\n") + 1
        if not end:
            pending += block
            _refuse_past(len(pending), max_line)
            continue
        if pending:
            pending += memoryview(block)[:end]
            piece = bytes(pending)
            pending.clear()
        else:
            piece = block[:end]
        if end < len(block):
            pending += memoryview(block)[end:]
        if len(piece) > max_line:
            _refuse_past(max(map(len, piece.split(b"\n"))), max_line)
        yield piece
    if pending.strip():
        _refuse_past(len(pending), max_line)
        yield bytes(pending)


def _refuse_past(line_bytes: int, max_line: int) -> None:
    if line_bytes > max_line:
        raise OllamaError(f"Ollama sent a line longer than {max_line} bytes")


_NDJSON = msgspec.json.Decoder()


def _line_value(line: bytes) -> Any:
    try:
        return parse_json(line)
    except ValueError:
        raise OllamaError("Ollama sent a line that is not JSON") from None


def iter_ndjson(stream: httpclient.Stream) -> Iterator[dict[str, Any]]:
    """Yield each NDJSON object; an in-stream `{"error": …}` line raises OllamaError. Whole
    lines are decoded together; a piece msgspec refuses is read again line by line (see
    parse_json), so a bad line fails only when it is reached."""
    for piece in complete_lines(stream.blocks()):
        try:
            values: Iterable[Any] = _NDJSON.decode_lines(piece)
        except (msgspec.DecodeError, RecursionError):
            values = map(_line_value, filter(bytes.strip, piece.split(b"\n")))
        for obj in values:
            if not isinstance(obj, dict):
                raise OllamaError("Ollama sent a line that is not a JSON object")
            if "error" in obj:
                raise OllamaError(str(obj["error"]), stream.status)
            yield obj


PULL_READ_TIMEOUT = 60.0  # Ollama sends pull progress every ~60 ms; a minute of silence is a stall


def pull(base: str, name: str, http: httpclient.Client | None = None) -> Iterator[dict[str, Any]]:
    """Stream `POST /api/pull` for `name`, yielding each progress object up to and including
    `{"status": "success"}`. Raises OllamaError on an HTTP error, an in-stream `{"error": …}`
    line, a stall, or a stream that ends without `success` (reference/ollama.md §1). A pull
    may take hours: only silence bounds it, never the whole."""
    http = http or session()
    try:
        stream = http.open("POST", base + "/api/pull", deadline=math.inf, why="",
                           body=msgspec.json.encode({"model": name, "stream": True}),
                           headers={"Content-Type": "application/json"},
                           read_timeout=PULL_READ_TIMEOUT)
    except httpclient.Unreachable:
        raise OllamaError(f"Ollama is not reachable at {base}; start it with: ollama serve") from None
    except httpclient.HttpError:
        raise OllamaError(f"Ollama at {base} did not start the pull of {name} "
                          f"within {PULL_READ_TIMEOUT:.0f} s") from None
    with stream:
        if stream.status != 200:
            raise OllamaError(f"pulling {name} failed: Ollama answered {stream.status}: "
                              f"{error_text(_error_body(stream))}", stream.status)
        try:
            for obj in iter_ndjson(stream):
                yield obj
                if obj.get("status") == "success":
                    return
        except OllamaError as e:
            raise OllamaError(f"pulling {name} failed: {e}", e.status) from None
        except httpclient.HttpError as e:
            raise OllamaError(f"pulling {name} failed: the stream from Ollama at {base} broke "
                              f"or stalled for {PULL_READ_TIMEOUT:.0f} s ({e})") from None
    raise OllamaError(f"pulling {name} failed: Ollama closed the stream before 'success'; "
                      "run the pull again (it resumes)")


def _error_body(stream: httpclient.Stream) -> bytes:
    """The body of an error answer, for its message; b"" if it cannot be read."""
    try:
        return stream.read(64 * 1024)
    except httpclient.HttpError:
        return b""
