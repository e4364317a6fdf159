"""The supervisor's event-loop HTTP client (ipc/asynchttp.py) against raw TCP servers on
loopback that answer with scripted bytes (tests/rawhttp.py): framing, keep-alive, stale
connections, caps, deadlines and TLS."""
import asyncio
import socket
import ssl
import time

import pytest

from ipc import asynchttp
from ipc.httpclient import HttpError, Timeout, TooLarge, Unreachable
from tests.rawhttp import read_request, start_answering


def call(url: str, *calls: tuple[str, str, bytes | None], timeout: float = 5.0,
         max_bytes: int = 1 << 20, tls: ssl.SSLContext | None = None) -> list:
    """Make the calls one after another on one client; each outcome is an answer or an error."""
    async def go() -> list:
        client = asynchttp.Client(url, connect_timeout=2.0, headers={"User-Agent": "t"},
                                  tls=tls)
        out = []
        for method, target, body in calls:
            try:
                out.append(await client.request(method, target, timeout=timeout,
                                                 max_bytes=max_bytes, body=body))
            except HttpError as e:
                out.append(e)
        client.close()
        return out
    return asyncio.run(go())


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_answers_are_read_whole_and_the_connection_is_kept_alive(serve):
    server = start_answering(serve, OK, OK, OK)
    answers = call(server.url, ("GET", "/a", None), ("POST", "/b?x=1", b'{"k":1}'),
                   ("GET", "/c", None))
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert server.connections == 1
    post = server.requests[1]
    assert post.startswith(b"POST /b?x=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 7\r\n" in post and post.endswith(b'{"k":1}')
    assert b"\r\nUser-Agent: t\r\n" in post and b"\r\nHost: 127.0.0.1:" in post


def test_chunked_and_read_until_close_bodies(serve):
    def handler(conn, index):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close")
        conn.shutdown(socket.SHUT_WR)
    server = serve(handler)
    first, second = call(server.url, ("GET", "/", None), ("GET", "/", None))
    assert (first.body, second.body) == (b"abcde", b"until close")


def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_new_one(serve):
    def handler(conn, index):
        read_request(conn)
        conn.sendall(OK)
        if index == 0:  # close after the first answer, without saying so: a stale connection
            read_request(conn)
            return
        while read_request(conn):
            conn.sendall(OK)
    server = serve(handler)
    answers = call(server.url, ("GET", "/1", None), ("GET", "/2", None))
    assert [a.status for a in answers] == [200, 200]
    assert server.connections == 2


@pytest.mark.parametrize("reply,why", [
    (b"SMTP ready\r\n\r\n", "not an HTTP/1.1 answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
     "not an HTTP/1.1 answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed before the answer ended")])
def test_malformed_and_cut_short_answers_are_errors_not_crashes(serve, reply, why):
    server = serve(lambda conn, index: (read_request(conn), conn.sendall(reply)))
    outcome = call(server.url, ("GET", "/", None))[0]
    assert type(outcome) is HttpError and why in str(outcome)


def test_an_answer_over_the_cap_is_refused_on_its_length_and_as_it_streams(serve):
    def handler(conn, index):
        read_request(conn)
        if index == 0:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            conn.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
    server = serve(handler)
    announced = call(server.url, ("GET", "/", None), max_bytes=4096)[0]
    streamed = call(server.url, ("GET", "/", None), max_bytes=4096)[0]
    assert isinstance(announced, TooLarge) and "announces 999999999" in str(announced)
    assert isinstance(streamed, TooLarge) and "exceeds 4096" in str(streamed)


def test_a_trickling_server_cannot_hold_a_call_past_its_deadline(serve):
    def handler(conn, index):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x")
            time.sleep(0.2)
    server = serve(handler)
    started = time.monotonic()
    outcome = call(server.url, ("GET", "/", None), timeout=0.5)[0]
    assert isinstance(outcome, Timeout) and "within 0.5 s" in str(outcome)
    assert time.monotonic() - started < 10  # far below the 20 s the trickle would take


def test_nothing_listening_is_unreachable(closed_port):
    outcome = call(f"http://127.0.0.1:{closed_port}", ("GET", "/", None))[0]
    assert isinstance(outcome, Unreachable)


def test_a_header_that_would_split_the_request_is_refused_before_sending():
    with pytest.raises(ValueError):
        asynchttp.Client("http://127.0.0.1:1", connect_timeout=1,
                         headers={"X-Evil": "a\r\nInjected: yes"})


def test_https_checks_the_certificate_and_keeps_the_connection(serve, certificate):
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server = start_answering(serve, OK, OK, tls=server_tls)
    refused = call(server.url, ("GET", "/", None))[0]  # certifi's roots: not self-signed ones
    assert isinstance(refused, Unreachable) and "CERTIFICATE_VERIFY_FAILED" in str(refused)
    trusting = ssl.create_default_context(cafile=str(cert))
    answers = call(server.url, ("GET", "/a", None), ("GET", "/b", None), tls=trusting)
    assert [a.body for a in answers] == [b"ok", b"ok"]
    assert server.connections == 2  # the refused one, then one kept alive for both calls
