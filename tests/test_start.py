"""`start` as an operator meets it: bad input refused with one line, flags that shape what
reaches Ollama, systemd notifications, and SIGHUP reloading the workers."""
import json
import os
import signal
import socket

import pytest

from tests.conftest import one_error_line
from tests.coord import start_dev_coordinator, wait_for
from tests.nodeproc import init_home, is_event, run_daemon
from tests.procs import start_standin

NODE_ID = 7


def test_start_without_a_key_says_to_init(cli):
    r = cli("start", "--node-id", "3", "--coordinator", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert "parallelix-node init" in one_error_line(r)


def test_start_without_a_node_id_says_where_to_get_it(cli, home):
    init_home(home)
    r = cli("start", "--coordinator", "http://127.0.0.1:9")
    assert r.returncode == 2
    assert "--node-id" in one_error_line(r)


def test_start_refuses_a_key_others_can_read(cli, home):
    init_home(home)
    os.chmod(home / "node.key", 0o644)
    r = cli("start", "--node-id", "3", "--coordinator", "http://127.0.0.1:9")
    assert r.returncode == 2
    line = one_error_line(r)
    assert f"chmod 600 {home / 'node.key'}" in line and "0x" not in line


def test_start_refuses_bad_flags(cli, home):
    init_home(home)
    for args in (["--node-id", "0"], ["--node-id", "x"], ["--node-id", "3", "--workers", "0"],
                 ["--node-id", "3", "--coordinator", "http://example.com/api"],
                 ["--node-id", "3", "--ollama", "ftp://127.0.0.1"]):
        r = cli("start", *args)
        assert r.returncode == 2, args
        one_error_line(r)


def test_gpu_flag_refuses_a_machine_without_gpu(cli, home, standin):
    init_home(home)
    r = cli("start", "--node-id", "3", "--gpu", "--coordinator", "http://127.0.0.1:9",
            "--ollama", standin, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "no GPU" in one_error_line(r)


@pytest.mark.parametrize("cpu_flag", [False, True])
def test_options_reach_ollama_unchanged_and_cpu_adds_num_gpu_0(tmp_path, standin, cpu_flag):
    home = tmp_path / "h"
    address = init_home(home)
    options = {"temperature": 0.7, "num_predict": 64, "stop": ["\n\n"], "seed": 42}
    with start_dev_coordinator("--node", f"{NODE_ID}={address}", "--options", json.dumps(options),
                               "--prompt", "[[echo-request]] show me") as (_, url):
        with run_daemon(home, NODE_ID, url, standin, *(["--cpu"] if cpu_flag else [])):
            done = wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="the echo")
    sent = json.loads(next(iter(done["results"].values()))["result"])
    assert sent["options"] == ({**options, "num_gpu": 0} if cpu_flag else options)
    assert sent["stream"] is True and sent["model"] == "llama3.2" and "system" not in sent
    assert done["attaches"][-1]["manifest"]["tier"] == 1


def test_systemd_notifications(tmp_path, standin):
    home = tmp_path / "h"
    address = init_home(home)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    received: list[str] = []

    def until(word: str) -> None:
        while not any(word in m for m in received):
            received.append(sock.recv(4096).decode())

    try:
        with start_dev_coordinator("--node", f"{NODE_ID}={address}") as (_, url):
            with run_daemon(home, NODE_ID, url, standin,
                            env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}) as node:
                until("READY=1")
                after_ready = []
                while sum("WATCHDOG=1" in m for m in after_ready) < 2:
                    after_ready.append(sock.recv(4096).decode())
                received += after_ready
                node.signal(signal.SIGTERM)
                until("STOPPING=1")
                assert node.wait_exit(30) == 0
    finally:
        sock.close()
    ready = next(m for m in received if "READY=1" in m)
    assert "STATUS=serving as node 7" in ready


def test_sighup_reloads_workers_from_config_without_dropping_work(tmp_path):
    home = tmp_path / "h"
    address = init_home(home)
    with start_standin("--models", "llama3.2") as (_, one), \
            start_standin("--models", "llama3.2") as (_, two):
        config = home / "config.toml"
        config.write_text(f'[[workers]]\nollama = "{one}"\n')
        with start_dev_coordinator("--node", f"{NODE_ID}={address}",
                                   "--prompt", "in flight during reload [[sleep:1500]]") as (_, url):
            with run_daemon(home, NODE_ID, url, []) as node:
                wait_for(url, lambda s: s["inflight"], what="a request in flight")
                config.write_text(f'[[workers]]\nollama = "{one}"\n\n'
                                  f'[[workers]]\nollama = "{two}"\nslots = 2\n')
                node.signal(signal.SIGHUP)
                node.wait_event(is_event("reload.workers"))
                wait_for(url, lambda s: s["accepted"] == 1, timeout=30, what="the old job")
                node.wait_event(lambda e: e.get("event") == "worker.retired"
                                and e.get("slot") == "w0")
                for slot in ("w1", "w2", "w3"):
                    node.wait_event(lambda e, s=slot: e.get("event") == "worker.ready"
                                    and e.get("slot") == s)
                from tests.test_lifecycle import live
                endpoints = sorted(w["endpoint"] for w in live(home)["workers"])
    assert endpoints == sorted([one, two, two])


@pytest.mark.parametrize("make", ["fifo", "folder", "dev-zero-link", "order", "zero"])
def test_a_key_path_that_is_not_a_usable_key_is_refused_at_once(cli, home, make):
    init_home(home)
    key = home / "node.key"
    key.unlink()
    if make == "fifo":
        os.mkfifo(key, 0o600)
    elif make == "folder":
        key.mkdir(mode=0o700)
    elif make == "dev-zero-link":
        key.symlink_to("/dev/zero")
    else:
        value = "f" * 64 if make == "order" else "0" * 64
        key.write_text(f"0x{value}\n")
        key.chmod(0o600)
    for command in (["start", "--node-id", "3", "--coordinator", "http://127.0.0.1:9"],
                    ["verify", "--coordinator", "http://127.0.0.1:9", "--ollama", "127.0.0.1:9"]):
        r = cli(*command, timeout=20)
        assert r.returncode == (2 if command[0] == "start" else 1), (command, r.stderr)
        text = r.stderr + r.stdout
        assert "Traceback" not in text and "unexpected" not in text and "chmod" not in text
    assert "chmod" not in one_error_line(cli("start", "--node-id", "3"))


@pytest.mark.parametrize("url", ["http://192.0.2.2:9\\@127.0.0.1:9", "http://127.0.0.1:abc",
                                 "https://host:99999", "http://[::1", "http://user:pw@127.0.0.1",
                                 "https://"])
def test_coordinator_urls_that_parsers_could_read_two_ways_are_refused(cli, home, url):
    init_home(home)
    for command in (["start", "--node-id", "3"], ["verify"], ["status"]):
        r = cli(*command, "--coordinator", url, timeout=20)
        assert r.returncode == 2, (command, url, r.stderr)
        assert "coordinator" in one_error_line(r)


@pytest.mark.parametrize("config", ['node_id = 1e30', 'node_id = 99999999999999999999',
                                    'node_id = 1.5', 'ollama = []', 'ollama = "http://[::1"',
                                    '[[workers]]\nollama = "127.0.0.1:1"\nslots = 1000',
                                    'model = 3'])
def test_config_values_out_of_range_are_configuration_errors(cli, home, config):
    init_home(home)
    (home / "config.toml").write_text(config + "\n")
    r = cli("start", "--coordinator", "http://127.0.0.1:9", timeout=20)
    assert r.returncode == 2 and f"{home / 'config.toml'}: " in one_error_line(r), r.stderr


def test_a_config_file_that_is_not_utf8_is_named(cli, home):
    init_home(home)
    (home / "config.toml").write_bytes(b'model = "\xff\xfe"\n')
    r = cli("status")
    assert r.returncode == 2 and "config.toml" in one_error_line(r)
