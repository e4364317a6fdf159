#!/usr/bin/env python3
"""A stand-in for Ollama's HTTP API (reference/ollama.md §1-2), for tests and for demos on a
machine without Ollama. Standard library only.

    ollama_standin.py [--host 127.0.0.1] [--port 0] [--models llama3.2,qwen2.5:0.5b]
                      [--cloud-model NAME] [--version-string 0.33.0] [--token-ms N]
                      [--load-ms N] [--pullable a,b]

The first stdout line is `LISTENING http://HOST:PORT`; it then serves until SIGTERM/SIGINT
(exit 0). Routes: GET/HEAD `/`, `/api/version`, `/api/tags`; GET `/api/ps`; POST
`/api/generate`, `/api/pull`. Streams are NDJSON in chunked transfer encoding, like Ollama's.

Reply rule (deterministic, so tests can predict it): the text is `"echo: " + prompt`, or
`"echo: [" + system + "] " + prompt` when a system prompt is given, split into consecutive
4-character tokens (the last may be shorter), one token per chunk. A positive
`options.num_predict` caps the token count (done_reason "length", else "stop"). An empty
prompt only loads the model (`done_reason: "load"`). If the prompt contains
`[[echo-request]]` the text is instead the request body as JSON with sorted keys
(`json.dumps(body, sort_keys=True, ensure_ascii=False)`), to check what a client sent.

Fault triggers, anywhere in the prompt (the text still echoes them):
    [[error-500]]       HTTP 500 "model runner has unexpectedly stopped, ..." before streaming
    [[busy]]            HTTP 503 "server busy, please try again.  maximum pending requests exceeded"
    [[error-midstream]] half the tokens (at least one), then a final {"error": ...} line, status 200
    [[eof]]             all tokens, then the stream ends without a done:true chunk
    [[hang]]            response headers, then nothing until the client goes away
    [[stall-after:N]]   N tokens, then nothing until the client goes away
    [[sleep:MS]]        wait MS milliseconds before the first chunk (before the headers)
With `stream: false`, [[error-midstream]] becomes an HTTP 500 and [[eof]] closes the connection
without an answer, as nothing has been written yet.

Metrics in the final chunk are measured wall times in integer nanoseconds; counts are tokens
(prompt_eval_count = the 4-character tokens of system + prompt). Zero values are omitted, as
Ollama's `omitempty` does. A model's first generate pays `--load-ms` (cold load) and then shows
in /api/ps. Digests are sha256 of the model name. The cloud stub (`--cloud-model`) is listed
with `remote_host` but cannot run here: generate answers 404 for it. Pull accepts the names
in `--pullable`, or by default any name not containing "missing"; others fail in-stream with
"pull model manifest: file does not exist".
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

TOKEN_CHARS = 4
KEEP_ALIVE = timedelta(minutes=5)
BUSY = "server busy, please try again.  maximum pending requests exceeded"
RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource limitations "
                  "or an internal error, check ollama server logs for details")
MIDSTREAM = "an error was encountered while running the model: unexpected EOF"
NO_MANIFEST = "pull model manifest: file does not exist"


def full_name(name: str) -> str:
    """Ollama's naming rule: a name without a tag means `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def now_rfc3339(offset: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + offset).isoformat().replace("+00:00", "Z")


def model_entry(name: str, modified_at: str, remote_host: str | None = None) -> dict[str, Any]:
    """A plausible /api/tags entry, derived from the name alone so it is stable across runs."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    base, _, tag = name.rpartition(":")
    family = re.match(r"[a-z]*", base.rsplit("/", 1)[-1]).group() or "llama"
    size_tag = re.fullmatch(r"(\d+(?:\.\d+)?)([bm])", tag)
    entry: dict[str, Any] = {
        "name": name, "model": name, "modified_at": modified_at,
        "size": 384 if remote_host else 1_000_000_000 + int(digest[:6], 16) * 64,
        "digest": digest,
        "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                    "parameter_size": (size_tag.group(1) + size_tag.group(2).upper()
                                       if size_tag else "3.2B"),
                    "quantization_level": "Q4_K_M"},
    }
    if remote_host:
        entry.update(remote_model=name.removesuffix("-cloud"), remote_host=remote_host)
    return entry


class Catalog:
    """The models the stand-in has, which of them are loaded, and which it can pull."""

    def __init__(self, names: list[str], cloud: str | None,
                 pullable: Callable[[str], bool]) -> None:
        self._lock = threading.Lock()
        self._modified_at = now_rfc3339()
        self._models = {full_name(n): model_entry(full_name(n), self._modified_at) for n in names}
        self._cloud = ([model_entry(full_name(cloud), self._modified_at, "https://ollama.com:443")]
                       if cloud else [])
        self._loaded: dict[str, str] = {}  # name -> expires_at
        self.pullable = pullable

    def tags(self) -> dict[str, Any]:
        with self._lock:
            return {"models": [*self._models.values(), *self._cloud]}

    def ps(self) -> dict[str, Any]:
        with self._lock:
            return {"models": [{**self._models[n], "expires_at": exp,
                                "size_vram": self._models[n]["size"], "context_length": 4096}
                               for n, exp in self._loaded.items()]}

    def find(self, name: str) -> dict[str, Any] | None:
        """A runnable (local) model by name."""
        with self._lock:
            return self._models.get(full_name(name))

    def add(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._models.setdefault(name, model_entry(name, now_rfc3339()))

    def use(self, name: str) -> bool:
        """Mark the model loaded for another KEEP_ALIVE; True when it was not loaded (cold)."""
        with self._lock:
            cold = name not in self._loaded
            self._loaded[name] = now_rfc3339(KEEP_ALIVE)
            return cold


@dataclass(frozen=True)
class Faults:
    """The fault triggers found in one prompt."""
    error_500: bool = False
    busy: bool = False
    midstream: bool = False
    eof: bool = False
    hang: bool = False
    stall_after: int | None = None
    sleep_ms: int = 0
    close: bool = False             # HTTP/1.0 style: no chunks, the body ends with the connection
    surrogate: bool = False         # a token and done_reason carry a lone surrogate, "\ud800"
    long_line: int | None = None    # one streamed line padded to this many bytes

    @classmethod
    def parse(cls, prompt: str) -> Faults:
        stall = re.search(r"\[\[stall-after:(\d+)\]\]", prompt)
        sleep = re.search(r"\[\[sleep:(\d+)\]\]", prompt)
        long_line = re.search(r"\[\[long-line:(\d+)\]\]", prompt)
        return cls(error_500="[[error-500]]" in prompt, busy="[[busy]]" in prompt,
                   midstream="[[error-midstream]]" in prompt, eof="[[eof]]" in prompt,
                   hang="[[hang]]" in prompt,
                   stall_after=int(stall.group(1)) if stall else None,
                   sleep_ms=int(sleep.group(1)) if sleep else 0,
                   close="[[close]]" in prompt, surrogate="[[surrogate]]" in prompt,
                   long_line=int(long_line.group(1)) if long_line else None)


def tokens_of(text: str) -> list[str]:
    return [text[i:i + TOKEN_CHARS] for i in range(0, len(text), TOKEN_CHARS)]


def reply(body: dict[str, Any]) -> tuple[list[str], str]:
    """The reply tokens for a generate body and its done_reason (see the module docstring)."""
    prompt, system = body.get("prompt") or "", body.get("system")
    if "[[echo-request]]" in prompt:
        text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    else:
        text = f"echo: [{system}] {prompt}" if system else "echo: " + prompt
    tokens = tokens_of(text)
    cap = (body.get("options") or {}).get("num_predict")
    if isinstance(cap, int) and 0 < cap < len(tokens):
        return tokens[:cap], "length"
    return tokens, "stop"


def compact(obj: Any) -> bytes:
    """JSON as Go's encoder writes it: no spaces, UTF-8 left as is."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def omit_zero(**metrics: int) -> dict[str, int]:
    """Ollama's `omitempty`: a zero metric is absent, not 0."""
    return {k: v for k, v in metrics.items() if v}


@dataclass
class Run:
    """One generate request in progress: its reply and the clock readings its metrics need."""
    model: str
    tokens: list[str]
    reason: str
    faults: Faults
    prompt_tokens: int
    started: int
    loaded: int
    first: int = 0  # monotonic ns of the first token, 0 until then

    def final(self, text: str, sent: int) -> dict[str, Any]:
        """The done:true object; durations are integer nanoseconds, zero metrics omitted."""
        end = time.monotonic_ns()
        first = self.first or end
        return {"model": self.model, "created_at": now_rfc3339(), "response": text,
                "done": True, "done_reason": self.reason,
                **omit_zero(total_duration=end - self.started,
                            load_duration=self.loaded - self.started,
                            prompt_eval_count=self.prompt_tokens,
                            prompt_eval_duration=first - self.loaded,
                            eval_count=sent, eval_duration=end - first)}


class BadRequest(Exception):
    """A request the stand-in answers with an HTTP error before any body is written."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], catalog: Catalog, version: str,
                 token_ms: int, load_ms: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.catalog, self.version = catalog, version
        self.token_s, self.load_s = token_ms / 1000, load_ms / 1000


class Handler(BaseHTTPRequestHandler):
    """Routes requests; every body shape follows reference/ollama.md §1."""

    protocol_version = "HTTP/1.1"
    # One small write per token: without TCP_NODELAY, Nagle meets the client's delayed ACK and
    # every call on a reused connection stalls ~40 ms.
    disable_nagle_algorithm = True
    server: StandinServer

    # --- plumbing ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, compact(obj), "application/json; charset=utf-8")

    def _start_stream(self, chunked: bool = True) -> None:
        """Chunked, as Ollama streams; or, for [[close]], a body the connection's end ends."""
        self._chunked = chunked
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self._end_headers()

    def _end_headers(self) -> None:
        """Say so when this answer ends the connection (a client asked for it), as HTTP/1.1 wants."""
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _line(self, obj: dict[str, Any], raw: bytes | None = None) -> None:
        data = (raw or compact(obj)) + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)

    def _end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _wait_for_client_to_leave(self) -> None:
        """Hold the connection open and silent (a hung Ollama) until the client closes it."""
        self.close_connection = True
        while not select.select([self.connection], [], [], 1.0)[0]:
            pass

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            raise BadRequest(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise BadRequest(400, f"invalid JSON: {e}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "request body must be a JSON object")
        return body

    def _dispatch(self, routes: dict[str, Callable[[], None]]) -> None:
        route = routes.get(self.path.split("?", 1)[0])
        try:
            if route is None:
                self._send(404, b"404 page not found", "text/plain")
            else:
                route()
        except BadRequest as e:
            self._json(e.status, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch({"/": self._root, "/api/version": self._version, "/api/tags": self._tags,
                        "/api/ps": self._ps})

    def do_HEAD(self) -> None:
        self._dispatch({"/": self._root, "/api/version": self._version, "/api/tags": self._tags})

    def do_POST(self) -> None:
        self._dispatch({"/api/generate": self._generate, "/api/pull": self._pull})

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"standin: {self.address_string()} {format % args}\n")

    # --- routes ---------------------------------------------------------------------------

    def _root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self) -> None:
        self._json(200, {"version": self.server.version})

    def _tags(self) -> None:
        self._json(200, self.server.catalog.tags())

    def _ps(self) -> None:
        self._json(200, self.server.catalog.ps())

    def _generate(self) -> None:
        started = time.monotonic_ns()
        body = self._body()
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequest(400, "model is required")
        if not isinstance(body.get("options", {}), dict):
            raise BadRequest(400, "options must be an object")
        if self.server.catalog.find(name) is None:
            raise BadRequest(404, f"model '{name}' not found")
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str) or not isinstance(body.get("system") or "", str):
            raise BadRequest(400, "prompt and system must be strings")
        faults = Faults.parse(prompt)
        if faults.busy:
            raise BadRequest(503, BUSY)
        if faults.error_500:
            raise BadRequest(500, RUNNER_STOPPED)
        if self.server.catalog.use(full_name(name)):
            time.sleep(self.server.load_s)
        tokens, reason = reply(body) if prompt else ([], "load")
        run = Run(name, tokens, reason, faults, len(tokens_of((body.get("system") or "") + prompt)),
                  started, loaded=time.monotonic_ns())
        time.sleep(faults.sleep_ms / 1000)
        if body.get("stream", True) is False:
            self._generate_whole(run)
        else:
            self._generate_stream(run)

    def _generate_stream(self, run: Run) -> None:
        self._start_stream(chunked=not run.faults.close)
        if run.faults.hang:
            return self._wait_for_client_to_leave()
        limit = len(run.tokens)
        if run.faults.midstream:
            limit = max(1, limit // 2)
        if run.faults.stall_after is not None:
            limit = min(limit, run.faults.stall_after)
        pad = run.faults.long_line
        for token in run.tokens[:limit]:
            time.sleep(self.server.token_s)
            run.first = run.first or time.monotonic_ns()
            line = {"model": run.model, "created_at": now_rfc3339(), "response": token,
                    "done": False}
            if pad:  # the first line only
                line["pad"] = ""
                line["pad"] = "x" * max(0, pad - len(compact(line)))
                pad = None
            self._line(line)
        if run.faults.surrogate:  # as JSON allows and Go's encoder never writes: an escape
            self._line({}, b'{"model":"%s","response":" \\ud800","done":false}'
                       % run.model.encode())
        if run.faults.stall_after is not None and run.faults.stall_after < len(run.tokens):
            return self._wait_for_client_to_leave()
        if run.faults.midstream:
            self._line({"error": MIDSTREAM})
        elif run.faults.surrogate:
            self._line({}, compact(run.final("", limit)).replace(
                b'"done_reason":"%s"' % run.reason.encode(), b'"done_reason":"\\ud800"'))
        elif not run.faults.eof:
            self._line(run.final("", limit))
        self._end_stream()

    def _generate_whole(self, run: Run) -> None:
        if run.faults.midstream:
            raise BadRequest(500, MIDSTREAM)
        if run.faults.hang or run.faults.stall_after is not None:
            return self._wait_for_client_to_leave()
        if run.faults.eof:
            self.close_connection = True
            return
        time.sleep(self.server.token_s * len(run.tokens))
        run.first = run.loaded
        self._json(200, run.final("".join(run.tokens), len(run.tokens)))

    def _pull(self) -> None:
        body = self._body()
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w./:-]+", name):
            raise BadRequest(400, "invalid model name")
        name = full_name(name)
        ok = self.server.catalog.pullable(name)
        if body.get("stream", True) is False:
            if not ok:
                raise BadRequest(500, NO_MANIFEST)
            self.server.catalog.add(name)
            return self._json(200, {"status": "success"})
        self._start_stream()
        self._line({"status": "pulling manifest"})
        if not ok:
            self._line({"error": NO_MANIFEST})
            return self._end_stream()
        entry = model_entry(name, "")
        layers = [(entry["digest"], entry["size"]),
                  (hashlib.sha256(f"{name} params".encode()).hexdigest(), 1_202)]
        for digest, total in layers:
            for completed in (0, total // 3, 2 * total // 3, total):
                time.sleep(self.server.token_s)
                self._line({"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}",
                            **omit_zero(total=total, completed=completed)})
        for status in ("verifying sha256 digest", "writing manifest"):
            self._line({"status": status})
        self.server.catalog.add(name)
        self._line({"status": "success"})
        self._end_stream()


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serve a stand-in for Ollama's HTTP API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--models", type=_names, default=["llama3.2"],
                   help="comma-separated names; a name without a tag gets :latest")
    p.add_argument("--cloud-model", help="also list this cloud stub (has remote_host)")
    p.add_argument("--version-string", default="0.33.0")
    p.add_argument("--token-ms", type=int, default=0, help="delay per streamed token/line")
    p.add_argument("--load-ms", type=int, default=0, help="cold-load delay on a model's first use")
    p.add_argument("--pullable", type=_names,
                   help="names /api/pull accepts (default: any name without 'missing')")
    return p.parse_args(argv)


def _exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pullable = ({full_name(n) for n in args.pullable}.__contains__ if args.pullable is not None
                else lambda name: "missing" not in name)
    catalog = Catalog(args.models, args.cloud_model, pullable)
    server = StandinServer((args.host, args.port), catalog, args.version_string,
                           args.token_ms, args.load_ms)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"LISTENING http://{host}:{server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
