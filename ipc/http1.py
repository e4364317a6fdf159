"""HTTP/1.1 framing shared by the node's two clients (ipc/httpclient.py, blocking, for workers,
the heartbeat process and the CLI; ipc/asynchttp.py, on the supervisor's event loop).

Sans-IO: the callers own the sockets, this module turns a call into bytes and bytes into an
answer. Answers are parsed by httptools (llhttp, the parser in Node.js) rather than by
http.client, whose email-package header parse and file-object layering cost ~20 µs per answer
on the hot path; llhttp also does the framing (Content-Length, chunked, read-until-close) and
refuses what is ambiguous (two Content-Lengths, a Content-Length beside chunked)."""
from collections.abc import Callable

import httptools


class FramingError(Exception):
    """The bytes are not an HTTP/1.x answer (or not one we accept)."""


class AnswerTooLarge(FramingError):
    """The answer's body exceeds the caller's cap (announced or as it arrives)."""


def encode_headers(headers: dict[str, str]) -> bytes:
    """A header block to send with every call (made once per client, not per call)."""
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent")
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")


def request_head(method: str, target: str, host: str, fixed: bytes,
                 extra: dict[str, str] | None, body: bytes | None) -> bytes:
    """The request line and headers of one call; `fixed` comes from encode_headers."""
    if any(c in target for c in " \r\n\0"):
        raise ValueError("the request target holds a space or a control character")
    head = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1"), fixed]
    if extra:
        head.append(encode_headers(extra))
    if body is not None:
        head.append(b"Content-Length: %d\r\n" % len(body))
    head.append(b"\r\n")
    return b"".join(head)


class Answer:
    """One answer as it arrives: `feed` it bytes; the head, then body blocks, then the end.

    With `on_body`, blocks go to it as they arrive (a stream) and are not kept; otherwise they
    are kept, at most `max_bytes`, and `body` joins them. `keep_alive` says whether the
    connection may carry another call once `complete`."""

    __slots__ = ("status", "headers", "complete", "keep_alive", "max_bytes", "size",
                 "_parts", "_on_body", "_parser", "_name", "_until_close")

    def __init__(self, max_bytes: int = 0, on_body: Callable[[bytes], None] | None = None
                 ) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.complete = False
        self.keep_alive = False
        self.max_bytes, self.size = max_bytes, 0
        self._parts: list[bytes] = []
        self._on_body = on_body
        self._name = ""
        self._until_close = False
        self._parser = httptools.HttpResponseParser(self)

    @property
    def head_done(self) -> bool:
        return self.status != 0

    @property
    def body(self) -> bytes:
        return b"".join(self._parts)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def feed(self, data: bytes) -> None:
        """Parse the next bytes from the connection; raises FramingError, AnswerTooLarge."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise FramingError("the server switched protocols") from None
        except httptools.HttpParserError as e:
            if self.complete:  # bytes past the answer's end: not part of it (on_message_begin)
                self.keep_alive = False
                return
            if isinstance(e.__context__, AnswerTooLarge):
                raise e.__context__ from None
            raise FramingError(f"not an HTTP/1.1 answer ({e})") from None

    def end_of_stream(self) -> None:
        """The server closed the connection: the end of a read-until-close body, else an
        answer broken off."""
        if self.complete:
            return
        if self.head_done and self._until_close:
            self.complete, self.keep_alive = True, False
            return
        raise FramingError("the connection closed before the answer ended")

    # httptools' callbacks
    def on_message_begin(self) -> None:
        """A second answer after this one is complete was never asked for (a server out of
        step): it must not rewrite this one's status and headers, and the connection that
        carried it cannot be trusted with another call."""
        if self.complete:
            raise FramingError("bytes after the end of the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self.headers.get(key)
        self.headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers.clear()
            return
        self.status = status
        length = self.headers.get("content-length")
        if length is not None and self.max_bytes and int(length) > self.max_bytes:
            raise AnswerTooLarge(f"the answer announces {length} bytes; at most "
                                 f"{self.max_bytes} are read")
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._until_close = length is None and not chunked and status not in (204, 304)

    def on_body(self, block: bytes) -> None:
        self.size += len(block)
        if self._on_body is not None:
            self._on_body(block)
            return
        if self.max_bytes and self.size > self.max_bytes:
            raise AnswerTooLarge(f"the answer exceeds {self.max_bytes} bytes")
        self._parts.append(block)

    def on_message_complete(self) -> None:
        if self.status:
            self.complete = True
            self.keep_alive = self._parser.should_keep_alive()
