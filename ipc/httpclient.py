"""A small HTTP/1.1 client for the node's hot path (the coordinator, Ollama), on http.client.

Why not `requests`: it costs ~18 MB and a few hundred microseconds per call, follows redirects
(a 307 once carried a signed result to another host), reads proxy settings and .netrc, and
bounds each read, not an answer. Here:

- one keep-alive connection per origin and `Client`, reused across calls (a `Client` is not
  thread-safe: give each long-lived thread its own);
- a redirect is an answer like any other: nothing is ever followed;
- no proxy, no .netrc, no cookies: nothing from the environment;
- every call has a total deadline, enforced by one reaper thread per process that shuts the
  socket down when it passes (a server that trickles a byte a second cannot hold a call), and
  every answer read whole has a byte cap, refused early on its Content-Length.
"""
import http.client
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BLOCK = 64 * 1024


class HttpError(Exception):
    """No usable answer: the connection failed or broke, or the answer was malformed."""


class Unreachable(HttpError):
    """Could not connect (refused, no route, connect timeout, TLS handshake)."""


class Timeout(HttpError):
    """The call's deadline passed, or the server was silent longer than the read timeout."""


class TooLarge(HttpError):
    """The answer is larger than the caller accepts."""


class Guard:
    """A socket's budget: the reaper shuts the socket down when monotonic time `at` passes."""

    __slots__ = ("at", "why", "expired", "_sock", "_reaper")

    def __init__(self, reaper: "_Reaper", sock: socket.socket, at: float, why: str) -> None:
        self._reaper, self._sock = reaper, sock
        self.at, self.why = at, why
        self.expired: str | None = None

    def arm(self, at: float, why: str) -> None:
        """Move the budget's end to `at`; `why` says what ran out if it expires. Moving it
        later (every chunk of a stream) is two attribute writes; earlier wakes the reaper."""
        self.why = why
        if at >= self.at:
            self.at = at
        else:
            self._reaper.earlier(self, at)

    def close(self) -> None:
        self._reaper.remove(self)

    def _expire(self) -> None:
        self.expired = self.why
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read or connect at once
        except OSError:
            pass  # already closed: nobody is blocked on it


class _Reaper:
    """One daemon thread per process holding the guards of calls in progress. It sleeps until
    the earliest budget ends, so a call costs it nothing unless a budget really runs out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active: set[Guard] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, at: float, why: str) -> Guard:
        guard = Guard(self, sock, at, why)
        with self._cond:
            self._active.add(guard)
            if at < self._wake_at:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="http-reaper",
                                                    daemon=True)
                    self._thread.start()
                self._cond.notify()
        return guard

    def earlier(self, guard: Guard, at: float) -> None:
        with self._cond:
            guard.at = at
            if at < self._wake_at:
                self._cond.notify()

    def remove(self, guard: Guard) -> None:
        with self._cond:
            self._active.discard(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for guard in [g for g in self._active if g.at <= now]:
                    self._active.discard(guard)
                    guard._expire()
                self._wake_at = min((g.at for g in self._active), default=math.inf)
                self._cond.wait(None if self._wake_at == math.inf else self._wake_at - now)


REAPER = _Reaper()


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Stream:
    """An answer whose body is still on the wire. Close it (or use `with`): a body not read
    to its end closes the connection, a body read whole leaves it for the next call."""

    def __init__(self, client: "Client", key: tuple[str, str, int],
                 conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 guard: Guard) -> None:
        self._client, self._key, self._conn, self._resp = client, key, conn, resp
        self.guard = guard
        self.status = resp.status
        self.headers = resp.headers

    def blocks(self) -> Iterator[bytes]:
        """The body in blocks as they arrive (chunked, sized or ended by the connection)."""
        try:
            while block := self._resp.read1(BLOCK):
                yield block
        except (OSError, http.client.HTTPException) as e:
            raise self._broken(e) from None
        if self.guard.expired:  # the reaper's shutdown looks like a clean end of the stream
            raise Timeout(self.guard.expired)

    def read(self, max_bytes: int) -> bytes:
        """The whole body, at most `max_bytes` (TooLarge beyond, refused before reading when
        Content-Length says so)."""
        length = self._resp.length
        if length is not None and length > max_bytes:
            raise TooLarge(f"the answer announces {length} bytes; at most {max_bytes} are read")
        if length is not None:
            try:
                data = self._resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise self._broken(e) from None
            if self.guard.expired:
                raise Timeout(self.guard.expired)
            return data
        parts, size = [], 0
        for block in self.blocks():
            size += len(block)
            if size > max_bytes:
                raise TooLarge(f"the answer exceeds {max_bytes} bytes")
            parts.append(block)
        return b"".join(parts)

    def _broken(self, e: BaseException) -> HttpError:
        if self.guard.expired:
            return Timeout(self.guard.expired)
        if isinstance(e, socket.timeout):
            return Timeout("the server went silent mid-answer")
        return HttpError(f"the answer broke off ({type(e).__name__})")

    def close(self) -> None:
        self.guard.close()
        if not self._resp.isclosed() or self.guard.expired:
            self._client._drop(self._key)
        self._resp.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _dropped(sock: socket.socket) -> bool:
    """An idle kept-alive socket that is readable was closed by the server (or sent junk)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class Client:
    """Keep-alive connections, one per origin; every call bounded (see the module's doc)."""

    def __init__(self, *, connect_timeout: float = 5.0, headers: dict[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.headers = dict(headers or {})
        self._tls = tls
        self._conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._origins: dict[str, tuple[str, str, int]] = {}

    def request(self, method: str, url: str, *, timeout: float, max_bytes: int,
                body: bytes | None = None, headers: dict[str, str] | None = None,
                read_timeout: float | None = None) -> Response:
        """One call read whole, within `timeout` seconds from now."""
        deadline = time.monotonic() + timeout
        with self.open(method, url, body=body, headers=headers, deadline=deadline,
                       why=f"no complete answer within {timeout:g} s",
                       read_timeout=read_timeout) as stream:
            data = stream.read(max_bytes)
            return Response(stream.status, stream.headers, data)

    def open(self, method: str, url: str, *, deadline: float, why: str,
             body: bytes | None = None, headers: dict[str, str] | None = None,
             read_timeout: float | None = None) -> Stream:
        """Send a call and read the answer's head; the body is left to the Stream. `deadline`
        (monotonic) bounds everything from here; `read_timeout` bounds each silence."""
        key, target = self._split(url)
        all_headers = {**self.headers, **headers} if headers else self.headers
        for attempt in (1, 2):
            conn = self._conns.get(key)
            reused = conn is not None and conn.sock is not None and not _dropped(conn.sock)
            if not reused:
                conn = self._connect(key, deadline)
            sock = conn.sock
            sock.settimeout(read_timeout)
            guard = REAPER.watch(sock, deadline, why)
            try:
                conn.request(method, target, body=body, headers=all_headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                guard.close()
                self._drop(key)
                stale = reused and isinstance(e, (http.client.RemoteDisconnected,
                                                  ConnectionResetError, BrokenPipeError))
                if guard.expired:
                    raise Timeout(guard.expired) from None
                if stale and attempt == 1:
                    continue  # the server closed the idle connection as we reused it
                if isinstance(e, socket.timeout):
                    raise Timeout("the server sent no answer in time") from None
                raise HttpError(f"the call failed ({type(e).__name__})") from None
            return Stream(self, key, conn, resp, guard)
        raise AssertionError("unreachable")

    def _split(self, url: str) -> tuple[tuple[str, str, int], str]:
        """(origin key, request target); origins are parsed once per base."""
        path_at = url.find("/", url.find("//") + 2)
        base, path = (url, "/") if path_at < 0 else (url[:path_at], url[path_at:])
        key = self._origins.get(base)
        if key is None:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError(f"not an http(s) URL: {base}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            key = self._origins[base] = (parts.scheme, parts.hostname, port)
        return key, path

    def _connect(self, key: tuple[str, str, int], deadline: float) -> http.client.HTTPConnection:
        self._drop(key)
        scheme, host, port = key
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("the deadline passed before connecting")
        timeout = min(self.connect_timeout, left)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=self._tls or default_tls())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except socket.timeout:
            raise Unreachable(f"no connection within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as e:
            conn.close()
            raise Unreachable(str(e.strerror or e) if isinstance(e, OSError) else str(e)) from None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns[key] = conn
        return conn

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for key in list(self._conns):
            self._drop(key)


_tls: ssl.SSLContext | None = None


def default_tls() -> ssl.SSLContext:
    """Certificate checks against certifi's roots (what requests used), made once."""
    global _tls
    if _tls is None:
        import certifi
        _tls = ssl.create_default_context(cafile=certifi.where())
    return _tls
