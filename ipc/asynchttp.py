"""HTTP/1.1 calls made on an asyncio event loop: the supervisor's hot path (inbox polls, result
posts) runs here, not in threads.

Why: handing every call to a thread cost the supervisor a queue put, a thread wake-up, a
self-pipe write back to the loop and a GIL hand-over per call (strace: ~150 futex calls per
request served). Here a call is one write and the loop's own read callbacks.

The same guarantees as the blocking client (ipc/httpclient.py): keep-alive connections to one
origin, reused, with one retry when a kept-alive connection turns out closed; redirects are
answers, never followed; nothing read from the environment (no proxy, no .netrc); every call
bounded by a total deadline (a server trickling a byte a second cannot hold it) and every
answer by a byte cap, refused early on its Content-Length. Errors are ipc/httpclient.py's."""
import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ipc import http1
from ipc.httpclient import HttpError, Timeout, TooLarge, Unreachable, default_tls

if TYPE_CHECKING:
    import ssl

IDLE_KEPT = 16   # idle connections kept open; more were only needed for a burst


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection carrying one call at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answer: http1.Answer | None = None
        self.waiter: asyncio.Future | None = None
        self.got_bytes = False   # any byte of the current answer: a retry is no longer safe

    def start(self, answer: http1.Answer, data: bytes) -> "asyncio.Future[http1.Answer]":
        assert self.transport is not None
        self.answer, self.got_bytes = answer, False
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None:  # bytes on an idle connection: it is out of step, never reuse it
            self.abort()
            return
        self.got_bytes = True
        try:
            answer.feed(data)
        except http1.AnswerTooLarge as e:
            self._fail(TooLarge(str(e)))
        except http1.FramingError as e:
            self._fail(HttpError(f"a malformed answer: {e}"))
        else:
            if answer.complete:
                self._settle()

    def eof_received(self) -> bool:
        answer = self.answer
        self.closed = True
        if answer is not None:
            try:
                answer.end_of_stream()
            except http1.FramingError as e:
                self._fail(HttpError(str(e)))
            else:
                self._settle()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None:
            self._fail(HttpError(f"the connection broke ({type(exc).__name__ if exc else 'closed'})"))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _settle(self) -> None:
        waiter, answer = self.waiter, self.answer
        self.answer = self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _fail(self, error: HttpError) -> None:
        waiter = self.waiter
        self.answer = self.waiter = None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Client:
    """Calls to one origin (`base`: scheme://host[:port]) from one event loop."""

    def __init__(self, base: str, *, connect_timeout: float, headers: dict[str, str],
                 tls: "ssl.SSLContext | None" = None) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"not an http(s) URL: {base}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._tls = (tls or default_tls()) if parts.scheme == "https" else None
        self._host_header = parts.netloc.rpartition("@")[2]
        self._fixed = http1.encode_headers(headers)
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []

    async def request(self, method: str, target: str, *, timeout: float, max_bytes: int,
                      body: bytes | None = None, headers: dict[str, str] | None = None
                      ) -> http1.Answer:
        """One call read whole within `timeout` seconds (raises HttpError and its kinds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        data = http1.request_head(method, target, self._host_header, self._fixed, headers, body)
        if body:
            data += body
        for attempt in (1, 2):
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(deadline)
            waiter = conn.start(http1.Answer(max_bytes), data)
            expiry = loop.call_at(deadline, _expire, conn, waiter, timeout)
            try:
                answer = await waiter
            except HttpError as e:
                if reused and attempt == 1 and not conn.got_bytes and not isinstance(e, Timeout):
                    continue  # the server closed the idle connection as we reused it
                raise
            except BaseException:  # cancelled (the daemon is stopping): the call is abandoned
                conn.abort()
                raise
            finally:
                expiry.cancel()
            self._keep(conn, answer)
            return answer
        raise AssertionError("unreachable")

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    def _keep(self, conn: _Connection, answer: http1.Answer) -> None:
        if answer.keep_alive and not conn.closed and len(self._idle) < IDLE_KEPT:
            self._idle.append(conn)
        else:
            conn.abort()

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        left = deadline - loop.time()
        if left <= 0:
            raise Timeout("the deadline passed before connecting")
        limit = min(self.connect_timeout, left)
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                _Connection, self.host, self.port, ssl=self._tls,
                server_hostname=self.host if self._tls else None), limit)
        except asyncio.TimeoutError:
            raise Unreachable(f"no connection within {limit:g} s") from None
        except OSError as e:  # ssl.SSLError is one
            raise Unreachable(str(e.strerror or e)) from None
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()


def _expire(conn: _Connection, waiter: asyncio.Future, timeout: float) -> None:
    if not waiter.done():
        conn.answer = conn.waiter = None
        conn.abort()
        waiter.set_exception(Timeout(f"no complete answer within {timeout:g} s"))
