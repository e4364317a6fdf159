"""Fuzzing (hypothesis) against the real parsing and handling code of every surface that takes
input from outside: coordinator answers and Ollama streams over real loopback sockets, frames
on the daemon's sockets (the decoders, and a running daemon's control socket), config.toml,
key files and command-line values. Each case must end in the clear outcome of its kind (an
answer or the error class its caller handles), never another exception; every input has a
size bound. Runs are derandomized (the same cases on every run: a failure reproduces) and
kept moderate so the whole suite stays within a few minutes on two cores."""
import contextlib
import json
import resource
import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipc import messages as m
from node.coordinator import (Answer, Coordinator, CoordinatorError, Denied, Rejected, attach_call,
                              heartbeat_call, inbox_call, result_call)
from node.daemon.inbox import InboxRequest, Malformed, parse_inbox
from node.errors import ConfigError
from node.home import Home
from node.identity import Signer
from node.keyfile import read_key
from node.settings import Settings, load_settings
from tests.linkcall import link_call
from tests.procs import job
from workers.generate import Generator, Timeouts

BASE = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])


def fuzz(cases: int) -> settings:
    """The shared settings with this surface's case count."""
    return settings(BASE, max_examples=cases)
DEEP = 50_000  # nesting deeper than Python's stack: msgspec, json and tomllib all recurse
FAILURE_CODES = {"model_not_found", "inference_failed", "timeout", "overloaded", "shutdown"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=40)


def deep(opener: bytes, size: int = DEEP) -> bytes:
    return opener * size


@contextlib.contextmanager
def peak_growth_below(mib: float) -> Iterator[None]:
    """The block must not raise this process's peak memory by `mib` or more (a size bound)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < mib, f"peak memory grew {grown:.0f} MiB"


# --- a raw HTTP server on loopback: answers exactly the bytes a case gives it -----------------

class RawServer:
    """Accepts connections on 127.0.0.1 and answers each request with `self.reply` (bytes),
    then closes: the client sees exactly what the case wrote, truncations included."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(body) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        body += chunk
                    if callable(self.reply):
                        self.reply(conn)
                    else:
                        conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def raw_server():
    server = RawServer()
    yield server
    server.close()


def http_reply(status: int, content_type: str | None, body: bytes, *, length: str = "exact",
               chunked: bool = False) -> bytes:
    head = [f"HTTP/1.1 {status} X".encode(), b"Connection: close"]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type.encode("latin-1", "replace"))
    if chunked:
        head.append(b"Transfer-Encoding: chunked")
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece)
                        for piece in (body[i:i + 4096] for i in range(0, len(body), 4096))) \
            + (b"0\r\n\r\n" if length == "exact" else b"")
    elif length == "exact":
        head.append(b"Content-Length: %d" % len(body))
    elif length == "more":  # a truncated answer: it promises more than it sends
        head.append(b"Content-Length: %d" % (len(body) + 100))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# --- surface 1: coordinator answers ---------------------------------------------------------

bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"request": st.one_of(json_values, st.fixed_dictionaries(
        {"id": st.text(max_size=30), "model": st.text(max_size=10), "prompt": st.text(max_size=50),
         "deadlineMs": st.integers(min_value=-2**65, max_value=2**65)},
        optional={"system": st.none() | st.text(max_size=10), "options": json_values}))})
    .map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"error": st.sampled_from(["not_staked", "in_cooldown", "retired",
                                                     "key_mismatch", "unknown_node",
                                                     "bad_request", "bad_signature", "x"]),
                           "detail": st.text(max_size=30)}).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2048),
    st.sampled_from([deep(b"["), deep(b'{"a":'), b'{"request": ' + deep(b"[")]))


@fuzz(200)
@given(status=st.sampled_from([200, 201, 204, 301, 400, 403, 404, 409, 410, 413, 500, 503])
       | st.integers(min_value=100, max_value=599),
       content_type=st.sampled_from(["application/json", "text/html", "", None])
       | st.text(max_size=20),
       body=bodies, length=st.sampled_from(["exact", "exact", "more", "none"]),
       chunked=st.booleans(),
       call=st.sampled_from(["inbox", "attach", "heartbeat", "result", "network"]),
       on_loop=st.booleans())
def test_coordinator_answers(raw_server, status, content_type, body, length, chunked, call,
                             on_loop):
    """Either transport: the heartbeat process's blocking client or the supervisor's link."""
    raw_server.reply = http_reply(status, content_type, body, length=length, chunked=chunked)
    coord, signer = Coordinator(raw_server.url, timeout=5), SIGNER
    calls = {"inbox": lambda: inbox_call(signer, 7, 0),
             "attach": lambda: attach_call(signer, 7, {"models": []}, "0x" + "0" * 64),
             "heartbeat": lambda: heartbeat_call(signer, 7, 1, {"busy": 0}),
             "result": lambda: result_call({"nodeId": 7, "requestId": "r"})}
    try:
        if call == "network":
            coord.network()
            return
        answer = link_call(raw_server.url, calls[call](), 5) if on_loop \
            else coord.call(calls[call]())
        if call == "inbox":
            parsed = parse_inbox(answer.body if answer.status != 204 else {})
            assert parsed is None or isinstance(parsed, (InboxRequest, Malformed))
        assert isinstance(answer, Answer) and isinstance(answer.body, dict)
    except (CoordinatorError, Denied, Rejected) as e:
        assert str(e)  # the one line the log shows


SIGNER = Signer(bytes.fromhex("11" * 32))


# --- surface 2: Ollama streams --------------------------------------------------------------

chunks = st.one_of(
    st.fixed_dictionaries({"response": st.text(max_size=20), "done": st.just(False)}),
    st.fixed_dictionaries({"response": st.text(max_size=5), "done": st.just(True)},
                          optional={"eval_count": json_values, "done_reason": json_values,
                                    "total_duration": json_values}),
    st.fixed_dictionaries({"error": json_values}),
    json_values).map(lambda v: json.dumps(v).encode() + b"\n")
junk_lines = st.one_of(st.binary(max_size=60).map(lambda b: b + b"\n"),
                       st.just(b"\xff\xfe not utf-8\n"), st.just(deep(b"[") + b"\n"),
                       st.just(b'{"response": "\\ud800", "done": true}\n'))


@fuzz(150)
@given(lines=st.lists(chunks | junk_lines, max_size=12), status=st.sampled_from([200, 200, 404,
                                                                                 500, 503]),
       length=st.sampled_from(["exact", "more", "none"]), chunked=st.booleans(),
       cut=st.integers(min_value=0, max_value=30))
def test_ollama_streams(raw_server, lines, status, length, chunked, cut):
    body = b"".join(lines)
    if length == "more" and cut and body:
        body = body[:-cut] or body  # truncated mid-line as well as mid-body
    raw_server.reply = http_reply(status, "application/x-ndjson", body, length=length,
                                  chunked=chunked)
    gen = Generator(raw_server.url, Timeouts(connect=2, first_chunk=5, idle=5))
    answer = gen.run(job(1, "hi", deadline_s=10))
    assert isinstance(answer, (m.Done, m.Failed))
    if isinstance(answer, m.Failed):
        assert answer.code in FAILURE_CODES and answer.message
    else:  # a Done must cross the work socket and be signed: valid Unicode throughout
        m.encoder.encode(answer)
        answer.text.encode("utf-8")


def test_ollama_line_of_100_mib_is_refused_with_bounded_memory(raw_server):
    """A 100 MiB line with no newline: refused at the line cap, not read into memory."""
    mib = b"a" * (1024 * 1024)

    def stream(conn: socket.socket) -> None:  # sent as it goes: the test holds 1 MiB of it
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Connection: close\r\n\r\n" + b'{"response": "')
        for _ in range(100):
            conn.sendall(mib)

    raw_server.reply = stream
    with peak_growth_below(64):
        answer = Generator(raw_server.url, Timeouts(connect=2, first_chunk=10, idle=10)).run(
            job(1, "hi", deadline_s=30))
    raw_server.reply = b""
    assert isinstance(answer, m.Failed) and answer.code == "inference_failed", answer


# --- surface 3: socket frames ---------------------------------------------------------------

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1)
    | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.text(max_size=10) | st.sampled_from(["type", "slot", "pid", "job", "seq"]), inner,
        max_size=5), max_leaves=30)
tags = st.sampled_from(["Ready", "Done", "Failed", "Pong", "Job", "Ping", "Stop", "Load",
                        "StopHeartbeat", "BeatResult", "Denied", "StatusRequest", "Nope"])
frames = st.one_of(
    st.binary(max_size=512),
    msgpack_values.map(msgspec.msgpack.encode),
    st.tuples(tags, st.dictionaries(st.text(max_size=10), msgpack_values, max_size=6)).map(
        lambda t: msgspec.msgpack.encode({"type": t[0], **t[1]})),
    st.sampled_from([deep(b"\x91", 60_000), deep(b"\x81\xa1a", 20_000)]))
DECODERS = ["from_worker", "to_worker", "from_heartbeat", "to_heartbeat", "control_request",
            "control_reply", "event"]


@fuzz(400)
@given(frame=frames, decoder=st.sampled_from(DECODERS))
def test_socket_frames_decode_or_raise_decode_error(frame, decoder):
    try:
        getattr(m, decoder).decode(frame)
    except m.DecodeError:
        pass


@pytest.fixture(scope="module")
def running_daemon(tmp_path_factory):
    from tests.coord import start_dev_coordinator
    from tests.nodeproc import init_home, run_daemon
    from tests.procs import start_standin
    home = tmp_path_factory.mktemp("fuzz") / "h"
    address = init_home(home)
    with start_standin() as (_, ollama), \
            start_dev_coordinator("--node", f"7={address}") as (_, url), \
            run_daemon(home, 7, url, ollama) as node:
        node.wait_event(lambda e: e.get("event") == "attached")
        yield home, node


@fuzz(120)
@given(parts=st.lists(frames, min_size=1, max_size=3))
def test_control_socket_answers_every_frame_and_survives(running_daemon, parts):
    """The live daemon: each frame (or multipart message) gets a reply, and it keeps running."""
    home, node = running_daemon
    endpoint = Home(home).endpoint("control.sock")
    with zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        sock.send_multipart([b"", *parts])
        if sum(map(len, parts)) <= m.MAX_SMALL_MESSAGE:  # larger ones are dropped by ZeroMQ
            assert sock.poll(10_000), "no reply from the control socket"
            reply = m.control_reply.decode(sock.recv_multipart()[-1])
            assert isinstance(reply, (m.StatusReply, m.ControlError))
    assert node.proc.poll() is None, "the daemon died"


# --- surface 4: config.toml -----------------------------------------------------------------

toml_docs = st.one_of(
    st.text(max_size=400),
    st.dictionaries(st.sampled_from(["coordinator", "ollama", "model", "node_id", "workers",
                                     "metrics", "x"]),
                    json_values, max_size=5).map(lambda d: "\n".join(
                        f"{k} = {json.dumps(v)}" for k, v in d.items())),
    st.just("workers = " + "[" * DEEP), st.just("a = " + "{b = " * 5000))


@fuzz(300)
@given(text=toml_docs)
def test_config_toml_loads_or_is_a_config_error(tmp_path, text):
    home = Home(tmp_path / "cfg")
    home.root.mkdir(mode=0o700, exist_ok=True)
    home.config.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        assert isinstance(load_settings(home), Settings)
    except ConfigError as e:
        assert str(e)


def test_a_huge_config_toml_is_refused_without_reading_it(tmp_path):
    home = Home(tmp_path / "cfg")
    home.root.mkdir(mode=0o700)
    with open(home.config, "wb") as f:
        f.truncate(2 * 1024 * 1024 * 1024)  # 2 GiB, sparse
    with peak_growth_below(64):
        with pytest.raises(ConfigError, match="larger than"):
            load_settings(home)


# --- surface 5: key files -------------------------------------------------------------------

def key_home(tmp_path) -> Home:
    home = Home(tmp_path / "keyhome")
    home.root.mkdir(mode=0o700, exist_ok=True)
    return home


@fuzz(200)
@given(content=st.binary(max_size=200) | st.text(alphabet="0123456789abcdefABCDEFxX \n",
                                                 max_size=80).map(str.encode))
def test_key_file_reads_or_is_a_config_error(tmp_path, content):
    home = key_home(tmp_path)
    home.key.write_bytes(content)
    home.key.chmod(0o600)
    try:
        assert len(read_key(home)) == 32
    except ConfigError as e:
        assert "corrupt" in str(e) or "cannot read" in str(e), e


def test_a_huge_key_file_is_refused_without_reading_it(tmp_path):
    home = key_home(tmp_path)
    with open(home.key, "wb") as f:
        f.truncate(2 * 1024 * 1024 * 1024)
    home.key.chmod(0o600)
    with peak_growth_below(64):
        with pytest.raises(ConfigError, match="corrupt"):
            read_key(home)


# --- surface 6: command-line values ---------------------------------------------------------

values = st.one_of(st.text(max_size=30), st.integers().map(str),
                   st.floats().map(str), st.sampled_from(["", "-1", "0", "1e400", "nan",
                                                          "http://[::1", "ftp://x", "\x00"]))


@fuzz(200)
@given(command=st.sampled_from(["start", "logs", "service"]),
       flags=st.lists(st.tuples(st.sampled_from(["--node-id", "--workers", "--graceful-timeout",
                                                 "--coordinator", "--ollama", "--model", "-n",
                                                 "--run-as", "--home"]), values), max_size=4))
def test_command_line_values_give_a_clear_error(tmp_path, monkeypatch, command, flags):
    """In-process, as `main` runs it: a usage or configuration error, never another exception
    (which `main` would report as `unexpected …`). No home key: `start` stops before serving."""
    import click

    from node.cli import cli
    from node.errors import NodeError
    monkeypatch.setenv("PARALLELIX_HOME", str(tmp_path / "home"))
    allowed = {"start": {"--node-id", "--workers", "--graceful-timeout", "--coordinator",
                         "--ollama", "--model", "--home"},
               "logs": {"-n", "--home"}, "service": {"--node-id", "--run-as", "--home"}}[command]
    args = [command] + (["install", "--dry-run", "--user"] if command == "service" else [])
    for flag, value in flags:
        if flag in allowed and "\x00" not in value:
            args += [flag, value]
    try:
        cli.main(args=args, standalone_mode=False, prog_name="parallelix-node")
    except (NodeError, click.ClickException, click.exceptions.Exit):
        pass
    except SystemExit as e:
        assert e.code in (0, 2, None), e.code
