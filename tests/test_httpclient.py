"""ipc/httpclient.py against servers on loopback that answer exactly the bytes a test scripts:
keep-alive and its failures, malformed and cut answers, caps, deadlines, redirects and TLS."""
import socket
import ssl
import threading
import time

import pytest

from ipc import httpclient
from tests.rawhttp import read_request, start_answering

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def call(client: httpclient.Client, url: str, *, timeout: float = 10,
         max_bytes: int = 1 << 20, **kw) -> httpclient.Response:
    return client.request("GET", url, timeout=timeout, max_bytes=max_bytes, **kw)


def test_calls_share_one_kept_alive_connection_and_send_fixed_headers(serve):
    server = start_answering(serve, OK, OK, OK)
    client = httpclient.Client(headers={"User-Agent": "t/1"})
    bodies = [call(client, server.url + f"/x?n={n}").body for n in range(3)]
    assert bodies == [b"ok"] * 3 and server.connections == 1
    first = server.requests[0].decode()
    assert first.startswith("GET /x?n=0 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.url.rsplit(':', 1)[1]}\r\n" in first
    assert "User-Agent: t/1\r\n" in first


def test_post_sends_its_body_with_its_length(serve):
    server = start_answering(serve, OK)
    httpclient.Client().request("POST", server.url + "/p", body=b'{"a": 1}', timeout=10,
                                max_bytes=10, headers={"X-Call": "1"})
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert body == b'{"a": 1}' and b"Content-Length: 8" in head and b"X-Call: 1" in head


def test_headers_are_read_by_any_case_and_a_redirect_is_not_followed(serve):
    server = start_answering(serve, b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://elsewh"
                             b"ere/\r\nDate: Mon, 07 Dec 2026 10:00:00 GMT\r\nContent-Length: 0"
                             b"\r\n\r\n")
    resp = call(httpclient.Client(), server.url + "/r")
    assert resp.status == 307 and resp.header("Location") == "http://elsewhere/"
    assert resp.header("date") == "Mon, 07 Dec 2026 10:00:00 GMT"
    assert server.connections == 1


def test_an_interim_answer_is_skipped_and_a_chunked_body_joined(serve):
    server = start_answering(serve, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")
    resp = call(httpclient.Client(), server.url)
    assert (resp.status, resp.body) == (200, b"abc")


def test_a_body_ended_by_the_connection_is_whole_and_the_connection_not_reused(serve):
    server = start_answering(serve, b"HTTP/1.0 200 OK\r\n\r\nall of it")
    client = httpclient.Client()
    assert call(client, server.url).body == b"all of it"
    assert call(client, server.url).body == b"all of it"
    assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_before_use(serve):
    """Servers close idle connections, some saying 408 first: that 408 is no answer to the
    next call, which must go out on a new connection."""
    answered, closed = threading.Event(), threading.Event()

    def handler(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(OK)
        if index == 0:
            answered.wait(10)  # then the 408 is on its own, while the connection is idle
            conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                         b"Content-Length: 0\r\n\r\n")
            conn.shutdown(socket.SHUT_WR)
            closed.set()

    server = serve(handler)
    client = httpclient.Client()
    call(client, server.url)
    answered.set()
    assert closed.wait(10)
    assert call(client, server.url).status == 200
    assert server.connections == 2


def test_a_reused_connection_closed_under_the_call_is_retried_once(serve):
    def handler(conn: socket.socket, index: int) -> None:
        if index == 0:
            read_request(conn)
            conn.sendall(OK)
        read_request(conn)  # then close without answering: the call is sent again
        if index == 1:
            conn.sendall(OK)

    server = serve(handler)
    client = httpclient.Client()
    call(client, server.url)
    assert call(client, server.url).body == b"ok"
    assert server.connections == 2


def test_a_new_connection_closed_without_an_answer_is_not_retried(serve):
    server = serve(lambda conn, index: read_request(conn))
    with pytest.raises(httpclient.HttpError, match="closed before the answer ended"):
        call(httpclient.Client(), server.url)
    assert server.connections == 1


@pytest.mark.parametrize("answer, error", [
    (b"HTTP/1.1 OK\r\n\r\n", "malformed"),
    (b"ICY 200 OK\r\n\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "malformed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut", "closed before the answer ended"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed before the answer"),
    (b"HTTP/1.1 200 OK\r\nContent-", "closed before the answer ended"),
])
def test_malformed_or_cut_answers_are_one_http_error(serve, answer, error):
    server = serve(lambda conn, index: (read_request(conn), conn.sendall(answer)))
    with pytest.raises(httpclient.HttpError, match=error) as caught:
        call(httpclient.Client(), server.url)
    assert type(caught.value) is httpclient.HttpError


def test_a_second_answer_sent_unasked_is_ignored_and_the_connection_dropped(serve):
    server = start_answering(serve, OK + b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", OK)
    client = httpclient.Client()
    first = call(client, server.url)
    assert (first.status, first.body, first.headers) == (200, b"ok", {"content-length": "2"})
    call(client, server.url)
    assert server.connections == 2


def test_an_announced_length_over_the_cap_is_refused_before_the_body(serve):
    # the body never comes: only an early refusal can end this call before its deadline
    server = serve(lambda conn, index: (read_request(conn), conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n"), read_request(conn)))
    with pytest.raises(httpclient.TooLarge, match="announces 1000000000 bytes"):
        call(httpclient.Client(), server.url, max_bytes=1000, timeout=60)


def test_a_chunked_answer_over_the_cap_is_refused(serve):
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    server = serve(lambda conn, index: (read_request(conn), conn.sendall(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 64)))
    with pytest.raises(httpclient.TooLarge, match="exceeds 10000 bytes"):
        call(httpclient.Client(), server.url, max_bytes=10000)


def trickle(conn: socket.socket, index: int) -> None:
    """A byte every 0.05 s, never finishing, until the client hangs up."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    conn.settimeout(0.05)
    while True:
        conn.sendall(b"x")
        try:
            if not conn.recv(1):
                return
        except socket.timeout:
            pass  # the trickle's pace


def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(serve):
    server = serve(trickle)
    with pytest.raises(httpclient.Timeout, match="no complete answer within 0.5 s"):
        call(httpclient.Client(), server.url, timeout=0.5, read_timeout=5)


def test_a_silence_longer_than_the_read_timeout_ends_the_call(serve):
    stop = threading.Event()
    server = serve(lambda conn, index: (read_request(conn), stop.wait(30)))
    try:
        with pytest.raises(httpclient.Timeout, match="sent no answer in time"):
            call(httpclient.Client(), server.url, timeout=60, read_timeout=0.2)
    finally:
        stop.set()


def test_a_stream_yields_blocks_as_they_come_and_its_guard_can_move(serve):
    chunks = [b'{"a":1}\n', b'{"b":2}\n']
    more = threading.Event()

    def stream(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"%x\r\n%s\r\n" % (len(chunks[0]), chunks[0]))
        more.wait(10)
        conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunks[1]), chunks[1]))

    server = serve(stream)
    client = httpclient.Client()
    with client.open("POST", server.url, body=b"{}", deadline=time.monotonic() + 30,
                     why="too slow") as s:
        got = []
        for block in s.blocks():
            got.append(block)
            s.guard.arm(time.monotonic() + 20, "stalled")
            more.set()
    assert got == chunks and s.guard.why == "stalled"


def test_a_budget_moved_sooner_ends_a_silent_stream(serve):
    stop = threading.Event()

    def stalls(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n")
        stop.wait(30)

    server = serve(stalls)
    try:
        with httpclient.Client().open("GET", server.url, deadline=time.monotonic() + 60,
                                      why="too slow") as s:
            with pytest.raises(httpclient.Timeout, match="stalled"):
                for _ in s.blocks():
                    s.guard.arm(time.monotonic() + 0.2, "stalled")
    finally:
        stop.set()


def test_a_closed_port_is_unreachable(closed_port):
    with pytest.raises(httpclient.Unreachable):
        call(httpclient.Client(), f"http://127.0.0.1:{closed_port}/")


@pytest.mark.parametrize("url", ["ftp://x/", "http:///nohost", "http://[::1/", "http://h:99999/"])
def test_a_url_that_is_not_http_is_one_error(url):
    with pytest.raises(httpclient.HttpError, match="not an http"):
        call(httpclient.Client(), url)


def test_a_header_that_would_split_the_request_is_refused():
    with pytest.raises(httpclient.HttpError, match="cannot be sent"):
        call(httpclient.Client(), "http://127.0.0.1:9/", headers={"X": "a\r\nEvil: 1"})


def test_https_checks_the_certificate_and_keeps_the_connection(serve, certificate):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = start_answering(serve, OK, OK, tls=server_tls)
    with pytest.raises(httpclient.Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        call(httpclient.Client(), server.url)  # certifi's roots do not know a self-signed one
    trusting = httpclient.Client(tls=ssl.create_default_context(cafile=str(cert)))
    assert [call(trusting, server.url).body for _ in range(2)] == [b"ok", b"ok"]
    assert server.connections == 2
