"""Attacks on a real daemon (SECURITY.md): each test performs one and checks it does no harm.

Attackers are other local users (played by `nobody` when the tests run as root, in a folder of
their own: the checkout may be in a 0700 folder) and other processes of the operator's user
that connect to the daemon's sockets."""
import hashlib
import http.server
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from ipc import messages as m
from tests.conftest import ROOT, Cli, clean_env, one_error_line
from tests.coord import admin, start_dev_coordinator, wait_for
from tests.nodeproc import init_home, is_event, run_daemon

ENTRY = Path(sys.executable).parent / "parallelix-node"   # what an operator runs
NOBODY = 65534


def as_other_user(*cmd: str) -> list[str]:
    """`cmd` run as `nobody` when the tests run as root (setpriv, util-linux), else as is:
    where it matters who wrote a file, the test says so and needs root."""
    if os.geteuid() != 0:
        return list(cmd)
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *cmd]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder every user may write to, like /tmp or a shared project folder."""
    folder = Path(tempfile.mkdtemp(prefix="parallelix-shared-"))
    os.chmod(folder, 0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def plant(folder: Path, relpath: str, text: str) -> None:
    """Write `folder/relpath` as the other user."""
    subprocess.run(as_other_user("/bin/sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"',
                                 "sh", str(folder / relpath)),
                   input=text, text=True, check=True, timeout=10, cwd=folder)


# --- finding 1: the working folder ------------------------------------------------------------

def test_packages_planted_in_the_working_folder_never_run(shared_folder, standin, tmp_path):
    """`cd /tmp; parallelix-node start`: a planted ipc/, node/ or workers/ package would be
    imported by the children (`-m` puts the working folder first) and read the key."""
    for package in ("ipc", "node", "workers"):
        plant(shared_folder, f"{package}/__init__.py",
              f"import sys\nopen({str(shared_folder / ('RAN-' + package))!r}, 'w')"
              f".write(repr(sys.argv))\n")
    home = tmp_path / "h"
    address = init_home(home)
    with start_dev_coordinator("--node", f"7={address}", "--prompt", "from a shared folder",
                               "--heartbeat-ms", "300") as (_, url):
        with run_daemon(home, 7, url, standin, cwd=shared_folder, cli=[str(ENTRY)]) as node:
            worker = node.wait_event(is_event("worker.spawned"))
            beat = node.wait_event(is_event("heartbeat.spawned"))
            done = wait_for(url, lambda s: s["accepted"] == 1 and len(s["heartbeats"]) >= 2,
                            timeout=30, what="a served request and heartbeats")
            cwds = {os.readlink(f"/proc/{p['pid']}/cwd") for p in (worker, beat)}
    assert cwds == {"/"}
    assert not done["verificationFailures"]
    assert sorted(p.name for p in shared_folder.iterdir()) == ["ipc", "node", "workers"]


# --- finding 4: who may speak on the work and heartbeat sockets ------------------------------

def test_a_forged_done_from_another_process_is_never_signed(node_home, standin):
    """A same-user process connects to work.sock as `w0` (the old predictable identity) and
    as anything else, and answers the job in flight with its own text."""
    home, address = node_home
    with start_dev_coordinator("--node", f"7={address}",
                               "--prompt", "the real answer [[sleep:2000]]") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            rid = wait_for(url, lambda s: s["inflight"], timeout=30, what="in flight")["inflight"][0]
            forged = m.encoder.encode(m.Done(job=1, request_id=rid, text="FORGED by a neighbour",
                                             metrics=m.Metrics(eval_count=1)))
            ctx = zmq.Context()
            try:
                for identity in (b"w0", b"w1", None):
                    dealer = ctx.socket(zmq.DEALER)
                    if identity:
                        dealer.setsockopt(zmq.IDENTITY, identity)
                    dealer.connect(f"ipc://{home}/run/work.sock")
                    dealer.send(m.encoder.encode(m.Ready(slot="w0", pid=os.getpid(),
                                                         endpoint=standin)))
                    dealer.send(forged)
                done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="served")
            finally:
                ctx.destroy(linger=0)
    result = done["results"][rid]["result"]
    assert "FORGED" not in result and "the real answer" in result
    assert not done["verificationFailures"]
    assert sum(map(is_event("work.unknown_peer"), node.events)) >= 6  # every forgery was seen


def test_a_forged_denial_on_the_heartbeat_socket_does_not_stop_the_node(node_home, standin):
    """The heartbeat socket was a PAIR: whoever connected first could report a 403 and stop
    the node. The intruder connects before the heartbeat process exists (attach is held back
    by a coordinator answering 503) and again once it runs."""
    home, address = node_home
    with start_dev_coordinator("--node", f"7={address}", "--fail-share", "1",
                               "--heartbeat-ms", "300") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            node.wait_event(is_event("attach.retry"))
            ctx = zmq.Context()
            try:
                intruders = [forge_denial(ctx, f"ipc://{home}/run/heartbeat.sock")]
                node.wait_event(is_event("heartbeat.unknown_peer"))
                admin(url, "faults", {"failShare": 0})
                node.wait_event(is_event("heartbeat.spawned"))
                intruders.append(forge_denial(ctx, f"ipc://{home}/run/heartbeat.sock"))
                beats = wait_for(url, lambda s: len(s["heartbeats"]) >= 3, timeout=30,
                                 what="heartbeats after the forged denials")
                node.wait_event(lambda _: sum(map(is_event("heartbeat.unknown_peer"),
                                                  node.events)) == 2)
                load = [i.poll(0) for i in intruders]
            finally:
                ctx.destroy(linger=0)
            assert node.proc.poll() is None
    assert not any(is_event("coordinator.stop")(e) or is_event("coordinator.refused")(e)
                   for e in node.events)
    assert beats["denied"] == 0 and load == [0, 0]  # the intruders never got the supervisor's Load


def forge_denial(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    """Connect to the heartbeat socket and report a `retired` 403 as the heartbeat would."""
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(m.encoder.encode(m.Denied(status=403, code="retired", detail="forged")))
    return sock


# --- finding 7: files, folders and logs ----------------------------------------------------

def test_init_under_umask_000_makes_every_folder_it_creates_owner_only(tmp_path):
    """Parents made 0777 would let another user swap the home for one of their own."""
    home = tmp_path / "new" / "deeper" / "h"
    r = subprocess.run(["/bin/sh", "-c", 'umask 000 && exec "$@"', "sh", sys.executable, "-m",
                        "node.cli", "init", "--json"], cwd=ROOT, env=clean_env(home),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "new", tmp_path / "new" / "deeper", home, *home.iterdir())}
    assert modes == {"new": 0o700, "new/deeper": 0o700, "new/deeper/h": 0o700,
                     "new/deeper/h/node.key": 0o600, "new/deeper/h/config.toml": 0o600,
                     "new/deeper/h/state.json": 0o600}


def test_a_socket_folder_created_first_by_another_user_is_not_used(tmp_path, standin):
    """A home too long for ipc:// paths keeps its sockets in a short folder under the temp
    folder. Its name used to be predictable: another user created it first and `start` exited
    2, which the service does not restart. Now it is random, made 0700 even under umask 000."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user (setpriv)")
    home = tmp_path / ("a-rather-long-folder-name-for-a-node-home-" * 3) / "h"
    address = init_home(home)
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    squatted = Path(tempfile.gettempdir()) / f"parallelix-{os.getuid()}-{digest}"  # the old name
    subprocess.run(as_other_user("/bin/mkdir", "-m", "0777", str(squatted)), check=True,
                   timeout=10, cwd="/")
    umask_000 = ["/bin/sh", "-c", 'umask 000 && exec "$@"', "sh", str(ENTRY)]
    try:
        with start_dev_coordinator("--node", f"7={address}", "--prompt", "squatted") as (_, url):
            with run_daemon(home, 7, url, standin, cli=umask_000) as node:
                wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="served")
                folder = Path((home / "run.path").read_text().strip())
                st = folder.stat()
                socks = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
                live = Cli(home).json("status")
                node.signal(signal.SIGTERM)
                assert node.wait_exit(30) == 0
        assert folder != squatted and list(squatted.iterdir()) == []
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o700)
        assert socks == {f"{n}.sock": 0o600 for n in ("control", "events", "heartbeat", "work")}
        assert live["live"] is True and live["served"] == 1
        assert not folder.exists() and not (home / "run.path").exists()
    finally:
        squatted.rmdir()


def test_a_request_id_cannot_forge_log_fields(node_home, standin):
    """The coordinator chooses request ids; one written as-is into `key=value` log lines
    would add fields (here a fake `stopped` event) to node.log and to `start --json`."""
    home, address = node_home
    rid = "req_9 event=stopped exit=0 level=error"
    with start_dev_coordinator("--node", f"7={address}") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            node.wait_event(is_event("attached"))
            admin(url, "enqueue", {"prompt": "forge", "requestId": rid})
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="served")
            served = node.wait_event(lambda e: e["event"].startswith("served"))
    assert list(done["results"]) == [rid]
    assert served["event"] == f"served {json.dumps(rid)}" and served["level"] == "info"
    assert set(served) == {"ts", "level", "event", "model", "ms", "poe"}
    assert not any(e["event"] == "stopped" or "exit" in e for e in node.events)
    line = next(l for l in (home / "node.log").read_text().splitlines() if " served " in l)
    assert f"INFO served {json.dumps(rid)} model=llama3.2 " in line


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_plain_http_ollama_off_loopback_is_refused_before_any_traffic(node_home, closed_port,
                                                                       how):
    """Whoever is on the path to a plain-http Ollama chooses the text the node signs.
    0.0.0.1 is not loopback, and nothing can be sent to it: a regression makes no traffic."""
    home, _ = node_home
    remote = "http://0.0.0.1:11434"
    args = ["start", "--node-id", "7", "--coordinator", f"http://127.0.0.1:{closed_port}"]
    env = {}
    if how == "flag":
        args += ["--ollama", remote]
    elif how == "env":
        env["OLLAMA_HOST"] = remote
    else:
        with open(home / "config.toml", "a") as f:
            f.write(f'\n[[workers]]\nollama = "{remote}"\n')
    r = Cli(home)(*args, env=env, timeout=30)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r)
    assert "plain http on a non-loopback host" in line and "ssh -N -L" in line


# --- checked and clean: keep it so -------------------------------------------------------------

def test_the_key_reaches_no_cmdline_env_file_log_or_answer_through_respawn_and_sighup(
        node_home, standin):
    """The key is read by the supervisor and handed to the heartbeat over a pipe; nothing
    else ever holds it. Checked across a heartbeat respawn and a SIGHUP, with cores off in
    every process and the control socket refusing every message that is not one of its own
    requests (status, pause, resume, drain)."""
    home, address = node_home
    key_hex = (home / "node.key").read_text().strip().removeprefix("0x").lower()

    def clean(data: bytes) -> bool:  # the key as hex in any case, or as raw bytes
        return key_hex.encode() not in data.lower() and bytes.fromhex(key_hex) not in data

    with start_dev_coordinator("--node", f"7={address}", "--prompt", "one",
                               "--heartbeat-ms", "300") as (_, url):
        with run_daemon(home, 7, url, standin) as node:
            wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="first served")
            first = Cli(home).json("status")
            os.kill(first["heartbeatPid"], signal.SIGKILL)
            node.wait_event(lambda e: is_event("heartbeat.spawned")(e) and
                            int(e["pid"]) != first["heartbeatPid"])
            node.signal(signal.SIGHUP)
            node.wait_event(is_event("reload.unchanged"))
            admin(url, "enqueue", {"prompt": "two"})
            wait_for(url, lambda s: s["accepted"] == 2, timeout=30, what="served after both")
            status = Cli(home)("status", "--json")
            live = json.loads(status.stdout)
            pids = [node.proc.pid, live["heartbeatPid"], *(w["pid"] for w in live["workers"])]
            proc_files = {f"{pid}/{name}": Path(f"/proc/{pid}/{name}").read_bytes()
                          for pid in pids for name in ("cmdline", "environ")}
            cores = {pid: core_limit(pid) for pid in pids}
            answers = control_answers(home)
            node.signal(signal.SIGTERM)
            assert node.wait_exit(30) == 0
    assert live["heartbeatPid"] != first["heartbeatPid"] and len(pids) == 3
    assert [k for k, v in proc_files.items() if not clean(v)] == []
    assert cores == {pid: ("0", "0") for pid in pids}
    outputs = (status.stdout + status.stderr + json.dumps(node.events) +
               "".join(node.stderr_lines)).encode()
    assert clean(outputs)
    files = [p for p in home.rglob("*") if p.is_file() and p.name != "node.key"]
    assert home / "node.log" in files and [str(p) for p in files if not clean(p.read_bytes())] == []
    status_reply, *refused = answers
    assert isinstance(status_reply, m.StatusReply) and status_reply.served == 2
    assert all(isinstance(a, m.ControlError) for a in refused) and len(refused) == 4
    assert clean(b"".join(m.encoder.encode(a) for a in answers))


def core_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) core file size limit of a process, from /proc/PID/limits."""
    line = next(l for l in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if l.startswith("Max core file size"))
    return tuple(line.split()[4:6])


def control_answers(home: Path) -> list:
    """Ask the control socket for status, then for anything else a local client could send:
    the messages of the other sockets, and an unknown type."""
    requests_ = [m.encoder.encode(m.StatusRequest()), m.encoder.encode(m.Stop()),
                 m.encoder.encode(m.StopHeartbeat()),
                 m.encoder.encode(m.Denied(status=403, code="retired")),
                 m.encoder.encode({"type": "Reload"})]
    ctx = zmq.Context()
    try:
        answers = []
        for payload in requests_:
            sock = ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.RCVTIMEO, 5000)
            sock.connect(f"ipc://{home}/run/control.sock")
            sock.send(payload)
            answers.append(m.control_reply.decode(sock.recv()))
            sock.close(linger=0)
        return answers
    finally:
        ctx.destroy(linger=0)


def test_a_coordinator_whose_certificate_does_not_verify_gets_nothing(node_home, tmp_path,
                                                                      standin):
    """An https coordinator with a certificate no trusted authority signed (what a host
    between the node and the coordinator would present): no request gets through, attach
    keeps retrying, nothing is signed for it."""
    home, _ = node_home
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=30)
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    server.handle_error = lambda *a: None     # failed handshakes are the point
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}"
        with run_daemon(home, 7, url, standin) as node:
            node.wait_event(lambda e: is_event("attach.retry")(e) and e["in"] == "2s")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == []
    assert not any(is_event("attached")(e) for e in node.events)
