"""Ollama's NDJSON streams as the worker reads them (workers/ollama.py): lines cut from blocks
however TCP splits them, decoded a piece at a time, refused when too long or not JSON."""
import socket
import time

import pytest

from ipc import httpclient
from tests.rawhttp import read_request
from workers.ollama import OllamaError, complete_lines, iter_ndjson


@pytest.mark.parametrize("blocks", [
    [b'{"a":1}\n', b'{"b":2}\n'],
    [b'{"a":1}\n{"b":2}\n'],
    [b'{"a":', b'1}\n{"b"', b':2}\n'],
    [b'{"a":1}\n{', b'"b":2}'],                 # the last line without its newline
    [b'{"a":1}\n', b'\n  \n', b'{"b":2}\n  '],  # blank lines and trailing blanks
])
def test_lines_come_out_whole_however_the_blocks_cut_them(blocks):
    pieces = list(complete_lines(blocks))
    assert b"".join(pieces).split() == b"".join(blocks).split()
    assert all(p.endswith(b"\n") for p in pieces[:-1])


@pytest.mark.parametrize("blocks", [
    [b"x" * 11],                         # no newline yet, already too long
    [b"x" * 6, b"x" * 5 + b"\n"],        # across blocks
    [b"ok\n" + b"x" * 11 + b"\nok\n"],   # inside one block
    [b"ok\n", b"x" * 11],                # the unterminated end
])
def test_a_line_past_the_cap_is_refused(blocks):
    with pytest.raises(OllamaError, match="longer than 10 bytes"):
        list(complete_lines(blocks, max_line=10))


def test_a_line_at_the_cap_passes():
    assert list(complete_lines([b"x" * 10 + b"\n"], max_line=10)) == [b"x" * 10 + b"\n"]


def ndjson_from(serve, body: bytes) -> list:
    """iter_ndjson over a real chunked answer whose chunks are `body` cut in 7-byte pieces."""
    def answer(conn: socket.socket, index: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
            for i in range(0, len(body), 7)) + b"0\r\n\r\n")

    server = serve(answer)
    got = []
    with httpclient.Client().open("POST", server.url, body=b"{}",
                                  deadline=time.monotonic() + 10, why="slow") as stream:
        try:
            for obj in iter_ndjson(stream):
                got.append(obj)
        except OllamaError as e:
            got.append(str(e))
    return got


def test_objects_in_order_with_a_lone_surrogate_made_valid(serve):
    body = b'{"response":"a"}\n{"response":"\\ud800"}\n{"done":true}\n'
    assert ndjson_from(serve, body) == [{"response": "a"}, {"response": "\ufffd"},
                                        {"done": True}]


def test_a_bad_line_fails_only_when_reached(serve):
    body = b'{"response":"a"}\n{"done":true}\nnot json\n'
    assert ndjson_from(serve, body) == [{"response": "a"}, {"done": True},
                                        "Ollama sent a line that is not JSON"]


@pytest.mark.parametrize("line, error", [(b"[1]", "Ollama sent a line that is not a JSON object"),
                                         (b'{"error":"out of memory"}', "out of memory")])
def test_a_line_that_is_no_chunk_ends_the_stream(serve, line, error):
    assert ndjson_from(serve, b'{"response":"a"}\n' + line + b'\n{"done":true}\n') == \
        [{"response": "a"}, error]
