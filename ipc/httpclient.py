"""A small blocking HTTP/1.1 client for the node's hot path (Ollama from the workers and the
CLI, the coordinator from threads), on plain sockets and ipc/http1.py's framing.

Why not `requests` or http.client: `requests` costs ~18 MB and a few hundred microseconds per
call, follows redirects (a 307 once carried a signed result to another host), reads proxy
settings and .netrc, and bounds each read, not an answer; http.client spends about a quarter of
a worker's CPU per job building requests, parsing headers with the email package and layering
file objects. Here:

- one keep-alive connection per origin and `Client`, reused across calls; a kept-alive socket
  the server closed while idle is noticed before it is used, and a call on a reused socket that
  breaks before any byte of an answer is sent once more on a new connection (a `Client` is not
  thread-safe: give each long-lived thread its own);
- a redirect is an answer like any other: nothing is ever followed;
- no proxy, no .netrc, no cookies: nothing from the environment;
- every call has a total deadline, enforced by one reaper thread per process that shuts the
  socket down when it passes (a server that trickles a byte a second cannot hold a call), a
  read timeout bounds each silence, and every answer read whole has a byte cap, refused early
  on its Content-Length;
- https checks certificates against certifi's roots.
"""
import contextlib
import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ipc import http1

if TYPE_CHECKING:  # imported when TLS is used: ssl costs ~5 MB in a process that never
    import ssl     # speaks https (workers beside a local Ollama, the heartbeat process)

BLOCK = 64 * 1024
END_WAIT = 0.05  # seconds a stream closed just before its end waits for it


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
        """Move the budget's end to `at`; `why` says what ran out if it expires. Two attribute
        writes, and no lock: only an end before the reaper's wake-up time wakes it."""
        self.why = why
        self.at = at
        if at < self._reaper.wake_at:
            self._reaper.wake()

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
    the earliest budget ends, so a call costs it nothing unless a budget really runs out: it is
    woken only for a budget that ends before `wake_at`, never for one that ends later or is
    removed (it then wakes once for nothing, and sleeps again).

    Guards are added, removed and expired under the lock; a budget is moved without it (Guard.arm
    writes `at`, then reads `wake_at`). While the reaper scans, `wake_at` reads as infinite, so
    a budget moved during a scan that missed it wakes the reaper again instead of being lost."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: set[Guard] = set()
        self.wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, at: float, why: str) -> Guard:
        guard = Guard(self, sock, at, why)
        with self._cond:
            self._active.add(guard)
            if at < self.wake_at:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="http-reaper",
                                                    daemon=True)
                    self._thread.start()
                self.wake_at = at  # what the reaper will sleep until: no second notify
                self._cond.notify()
        return guard

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def remove(self, guard: Guard) -> None:
        with self._cond:
            self._active.discard(guard)

    def _run(self) -> None:
        with self._cond:
            while True:
                self.wake_at = math.inf
                now = time.monotonic()
                for guard in [g for g in self._active if g.at <= now]:
                    self._active.discard(guard)
                    guard._expire()
                wake_at = min((g.at for g in self._active), default=math.inf)
                self.wake_at = wake_at
                self._cond.wait(None if wake_at == math.inf else wake_at - now)


REAPER = _Reaper()


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    authority: str  # the Host header


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class _Conn:
    """A connected socket, with its poller made once."""

    __slots__ = ("sock", "_poller")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    def readable(self, wait: float = 0) -> bool:
        """Whether a read would not block, waiting up to `wait` seconds. An idle kept-alive
        socket that is readable was closed by the server (or sent junk)."""
        return bool(self._poller.poll(wait * 1000))


class Stream:
    """An answer whose body is still on the wire. Close it (or use `with`): a body not read
    to its end closes the connection, a body read whole leaves it for the next call."""

    def __init__(self, client: "Client", origin: Origin, conn: _Conn, guard: Guard) -> None:
        self._client, self._origin, self._conn = client, origin, conn
        self.guard = guard
        self.heard = False  # whether any byte of an answer arrived
        self._pending: list[bytes] = []
        self._answer = http1.Answer(on_body=self._pending.append)

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def headers(self) -> dict[str, str]:
        """Names in lower case; repeated headers joined with ", "."""
        return self._answer.headers

    def blocks(self) -> Iterator[bytes]:
        """The body in blocks as they arrive (chunked, sized or ended by the connection)."""
        pending, answer = self._pending, self._answer
        while True:
            if pending:
                yield from pending
                pending.clear()
            if answer.complete:
                return
            self._fill()

    def read(self, max_bytes: int) -> bytes:
        """The whole body, at most `max_bytes` (TooLarge beyond, refused before reading when
        Content-Length says so)."""
        length = self._answer.header("content-length")
        if length is not None and int(length) > max_bytes:
            raise TooLarge(f"the answer announces {length} bytes; at most {max_bytes} are read")
        parts, size = [], 0
        for block in self.blocks():
            size += len(block)
            if size > max_bytes:
                raise TooLarge(f"the answer exceeds {max_bytes} bytes")
            parts.append(block)
        return b"".join(parts)

    def _read_head(self) -> None:
        while not self._answer.head_done:
            self._fill()

    def _fill(self) -> None:
        """Read what the server sent next and parse it (body blocks go to `_pending`)."""
        try:
            data = self._conn.sock.recv(BLOCK)
        except OSError as e:
            raise self._broken(e) from None
        if self.guard.expired:  # the reaper's shutdown looks like the connection's end
            raise Timeout(self.guard.expired)
        try:
            if data:
                self.heard = True
                self._answer.feed(data)
            else:
                self._answer.end_of_stream()
        except http1.FramingError as e:
            raise HttpError(f"the answer is malformed: {e}" if data
                            else "the connection closed before the answer ended") from None

    def _broken(self, e: OSError) -> HttpError:
        if self.guard.expired:
            return Timeout(self.guard.expired)
        if isinstance(e, socket.timeout):
            return Timeout("the server went silent mid-answer" if self.heard
                           else "the server sent no answer in time")
        return HttpError(f"the answer broke off ({type(e).__name__})" if self.heard
                         else f"the call failed ({type(e).__name__})")

    def close(self) -> None:
        """Give the connection back for the next call if the answer ended cleanly. A caller
        often stops at the body's last item (Ollama's done chunk) just before the few bytes
        that end it: they are waited for briefly, or the connection would be lost."""
        answer = self._answer
        if answer.head_done and not answer.complete and not self.guard.expired \
                and self._conn.readable(END_WAIT):
            with contextlib.suppress(HttpError):
                self._fill()
        self.guard.close()
        if answer.complete and answer.keep_alive and not self.guard.expired:
            self._client._keep(self._origin, self._conn)
        else:
            self._conn.sock.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Client:
    """Keep-alive connections, one per origin; every call bounded (see the module's doc).
    `headers` go with every call, encoded once here."""

    def __init__(self, *, connect_timeout: float = 5.0, headers: dict[str, str] | None = None,
                 tls: "ssl.SSLContext | None" = None) -> None:
        self.connect_timeout = connect_timeout
        self._fixed = http1.encode_headers({"Accept-Encoding": "identity", **(headers or {})})
        self._tls = tls
        self._idle: dict[Origin, _Conn] = {}
        self._origins: dict[str, Origin] = {}

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
        (monotonic) bounds everything from here; `read_timeout` bounds each silence. Not for
        HEAD (its answer's framing would be misread)."""
        origin, target = self._split(url)
        try:
            data = http1.request_head(method, target, origin.authority, self._fixed, headers,
                                      body)
        except ValueError as e:
            raise HttpError(f"the call cannot be sent: {e}") from None
        if body:
            data += body  # one send: the request leaves in one segment when it fits
        for attempt in (1, 2):
            conn = self._idle.pop(origin, None)
            reused = conn is not None and not conn.readable()
            if not reused:
                if conn is not None:
                    conn.sock.close()
                conn = self._connect(origin, deadline)
            sock = conn.sock
            if sock.gettimeout() != read_timeout:
                sock.settimeout(read_timeout)
            stream = Stream(self, origin, conn, REAPER.watch(sock, deadline, why))
            try:
                try:
                    sock.sendall(data)
                except OSError as e:
                    raise stream._broken(e) from None
                stream._read_head()
            except HttpError as e:
                stream.close()
                if reused and attempt == 1 and not stream.heard and not isinstance(e, Timeout):
                    continue  # the server closed the idle connection as we reused it
                raise
            return stream
        raise AssertionError("unreachable")

    def _split(self, url: str) -> tuple[Origin, str]:
        """(origin, request target); origins are parsed once per base."""
        path_at = url.find("/", url.find("//") + 2)
        base, path = (url, "/") if path_at < 0 else (url[:path_at], url[path_at:])
        origin = self._origins.get(base)
        if origin is None:
            try:
                parts = urlsplit(base)
                port = parts.port
            except ValueError:
                raise HttpError(f"not an http(s) URL: {base}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise HttpError(f"not an http(s) URL: {base}")
            default = 443 if parts.scheme == "https" else 80
            host = parts.hostname
            authority = f"[{host}]" if ":" in host else host
            if port is not None and port != default:
                authority += f":{port}"
            origin = self._origins[base] = Origin(parts.scheme, host, port or default,
                                                  authority)
        return origin, path

    def _connect(self, origin: Origin, deadline: float) -> _Conn:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("the deadline passed before connecting")
        timeout = min(self.connect_timeout, left)
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout)
        except socket.timeout:
            raise Unreachable(f"no connection within {timeout:g} s") from None
        except OSError as e:
            raise Unreachable(str(e.strerror or e)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if origin.scheme == "https":
            sock = self._handshake(sock, origin.host, timeout)
        return _Conn(sock)

    def _handshake(self, sock: socket.socket, host: str, timeout: float) -> "ssl.SSLSocket":
        """TLS within the connect timeout as a whole, not per read."""
        guard = REAPER.watch(sock, time.monotonic() + timeout, f"no TLS handshake within "
                                                                f"{timeout:g} s")
        try:
            return (self._tls or default_tls()).wrap_socket(sock, server_hostname=host)
        except (OSError, ValueError) as e:
            sock.close()
            raise Unreachable(guard.expired or str(e)) from None
        finally:
            guard.close()

    def _keep(self, origin: Origin, conn: _Conn) -> None:
        old = self._idle.pop(origin, None)
        if old is not None:
            old.sock.close()
        self._idle[origin] = conn

    def close(self) -> None:
        while self._idle:
            self._idle.popitem()[1].sock.close()


_tls: "ssl.SSLContext | None" = None


def default_tls() -> "ssl.SSLContext":
    """Certificate checks against certifi's roots (what requests used), made once."""
    global _tls
    if _tls is None:
        import ssl

        import certifi
        _tls = ssl.create_default_context(cafile=certifi.where())
    return _tls
