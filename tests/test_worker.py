"""The inference worker as the supervisor sees it: a real worker process, a real Ollama stand-in
over loopback, and a ZeroMQ ROUTER in the test playing the supervisor."""
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from ipc.messages import Done, Failed, Job, Ping, Pong, Ready, Stop
from tests.procs import (ROOT, Router, closed_port_url, job, kill_quietly, read_line, router,
                   start_standin, start_worker, wait_gone, worker_command)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Router]:
    with router(tmp_path) as r:
        yield r


@pytest.fixture(scope="module")
def ollama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fast stand-in shared by the tests that need no special timing."""
    log = tmp_path_factory.mktemp("standin") / "standin.log"
    with start_standin("--models", "llama3.2,qwen2.5:0.5b", log=log) as (_, url):
        yield url


class Slot:
    """A started worker seen from the supervisor: its process, identity and log."""

    def __init__(self, proc: subprocess.Popen, ident: bytes, log: Path, sup: Router) -> None:
        self.proc, self.ident, self.log, self.sup = proc, ident, log, sup

    def run(self, j: Job, timeout: float = 10) -> Done | Failed:
        """Send one job and return its answer."""
        self.sup.send(self.ident, j)
        _, answer = self.sup.recv(timeout)
        assert isinstance(answer, (Done, Failed)) and answer.job == j.job, answer
        return answer

    def failure(self, j: Job, timeout: float = 10) -> Failed:
        answer = self.run(j, timeout)
        assert isinstance(answer, Failed), answer
        return answer

    def done(self, j: Job, timeout: float = 10) -> Done:
        answer = self.run(j, timeout)
        assert isinstance(answer, Done), answer
        return answer


@pytest.fixture
def spawn(sup: Router, tmp_path: Path) -> Iterator[Callable[..., Slot]]:
    """spawn(endpoint, *flags) starts a worker, waits for its Ready and returns a Slot."""
    with ExitStack() as stack:
        def start(endpoint: str, *flags: str, slot: str = "w0", up: bool = True) -> Slot:
            log = tmp_path / f"worker-{slot}.log"
            proc = stack.enter_context(start_worker(endpoint, sup.endpoint, *flags, slot=slot,
                                                    log=log))
            ident, ready = sup.recv(15)
            assert isinstance(ready, Ready), ready
            assert (ready.slot, ready.pid, ready.endpoint, ready.ollama_up) == \
                (slot, proc.pid, endpoint, up), ready
            assert ident == slot.encode()
            return Slot(proc, ident, log, sup)

        yield start


@pytest.fixture
def w(spawn, ollama: str) -> Slot:
    return spawn(ollama)


# --- answers ---------------------------------------------------------------------------------

def test_job_done_with_exact_text_and_ms_metrics(spawn, tmp_path: Path) -> None:
    with start_standin("--load-ms", "300") as (_, url):
        slot = spawn(url)
        cold = slot.done(job(1, "hello world"))
        warm = slot.done(job(2, "hello world"))
        tags = requests.get(url + "/api/tags", timeout=5).json()["models"]
    assert cold.request_id == "req_1"
    assert cold.text == warm.text == "echo: hello world"
    m = cold.metrics
    assert (m.eval_count, m.prompt_eval_count, m.done_reason) == (5, 3, "stop")
    assert 300 <= m.load_duration_ms < 2000          # milliseconds, not nanoseconds
    assert m.load_duration_ms <= m.total_duration_ms < 3000
    assert warm.metrics.load_duration_ms < 300       # the model is warm now
    digest = next(t["digest"] for t in tags if t["name"] == "llama3.2:latest")
    assert m.model_digest == warm.metrics.model_digest == digest


@pytest.mark.parametrize("prompt", [
    "naïve café — 日本語 🎉 \u2028 done",
    "line one\nline two\r\n\ttabbed\n\n",
    "x" * 20_000 + " end",
], ids=["unicode", "multiline", "20KB"])
def test_prompts_round_trip_exactly(w: Slot, prompt: str) -> None:
    assert w.done(job(1, prompt)).text == "echo: " + prompt


def test_system_prompt_is_passed(w: Slot) -> None:
    assert w.done(job(1, "hi", system="be brief")).text == "echo: [be brief] hi"


def test_num_predict_caps_the_answer(w: Slot) -> None:
    answer = w.done(job(1, "hello world", options={"num_predict": 3}))
    assert answer.text == "echo: hello "
    assert (answer.metrics.eval_count, answer.metrics.done_reason) == (3, "length")


def test_request_body_passes_options_unchanged(w: Slot) -> None:
    options = {"temperature": 0.2, "stop": ["\n\n", "END"], "seed": 7, "num_ctx": 4096,
               "custom": {"nested": [1, None, True]}}
    sent = json.loads(w.done(job(1, "[[echo-request]]", options=options)).text)
    assert sent == {"model": "llama3.2", "prompt": "[[echo-request]]", "options": options,
                    "stream": True}


def test_cpu_only_adds_num_gpu_zero_and_system_is_sent(w: Slot) -> None:
    sent = json.loads(w.done(job(1, "[[echo-request]]", system="sys", cpu_only=True,
                                 options={"seed": 1})).text)
    assert sent["options"] == {"seed": 1, "num_gpu": 0}
    assert sent["system"] == "sys"


def test_model_named_with_tag_works(w: Slot) -> None:
    answer = w.done(job(1, "hi", model="qwen2.5:0.5b"))
    assert answer.text == "echo: hi"
    assert len(answer.metrics.model_digest) == 64


# --- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, model, code, words", [
    ("hi", "nope", "model_not_found", "model 'nope' not found"),
    ("hi [[error-midstream]] there", "llama3.2", "inference_failed", "unexpected EOF"),
    ("hi [[error-500]]", "llama3.2", "inference_failed", "model runner has unexpectedly stopped"),
    ("hi [[busy]]", "llama3.2", "overloaded", "server busy"),
    ("hi [[eof]]", "llama3.2", "inference_failed", "without a done chunk"),
], ids=["unknown-model", "error-midstream", "error-500", "busy", "eof"])
def test_ollama_failures_map_to_protocol_codes(w: Slot, prompt: str, model: str, code: str,
                                               words: str) -> None:
    failed = w.failure(job(1, prompt, model))
    assert (failed.code, failed.request_id) == (code, "req_1")
    assert words in failed.message and "\n" not in failed.message


def test_stall_mid_stream_times_out_within_idle_timeout(spawn, ollama: str) -> None:
    slot = spawn(ollama, "--idle-timeout", "1")
    start = time.monotonic()
    failed = slot.failure(job(1, "a long enough prompt [[stall-after:2]]"))
    elapsed = time.monotonic() - start
    assert failed.code == "timeout" and "no output for 1 s" in failed.message
    assert 0.9 <= elapsed < 2.5


@pytest.mark.parametrize("prompt", ["hi [[hang]]", "hi [[sleep:5000]]"],
                         ids=["headers-then-nothing", "nothing-at-all"])
def test_no_first_chunk_times_out(spawn, ollama: str, prompt: str) -> None:
    slot = spawn(ollama, "--first-chunk-timeout", "1", "--idle-timeout", "30")
    start = time.monotonic()
    failed = slot.failure(job(1, prompt))
    assert failed.code == "timeout" and "within 1 s" in failed.message
    assert time.monotonic() - start < 2.5


def test_deadline_in_the_past_times_out_at_once(w: Slot) -> None:
    failed = w.failure(job(1, "hi", deadline_s=-1), timeout=2)
    assert failed.code == "timeout" and "deadline" in failed.message


def test_short_deadline_cuts_a_running_answer(spawn) -> None:
    with start_standin("--token-ms", "100") as (_, url):
        slot = spawn(url)
        start = time.monotonic()
        failed = slot.failure(job(1, "x" * 200, deadline_s=0.8))
        elapsed = time.monotonic() - start
    assert failed.code == "timeout" and "deadline" in failed.message
    assert 0.6 <= elapsed < 1.8


def test_ollama_down_is_inference_failed(spawn) -> None:
    url = closed_port_url()
    failed = spawn(url, up=False).failure(job(1, "hi"))
    assert failed.code == "inference_failed" and url in failed.message


# --- readiness: is its Ollama answering? -------------------------------------------------------

def test_ready_says_ollama_is_down_then_up_when_it_answers(sup: Router, tmp_path: Path) -> None:
    url = closed_port_url()
    with start_worker(url, sup.endpoint, log=tmp_path / "w.log"):
        down = sup.expect(Ready, 15)
        assert down.ollama_up is False and url in down.reason
        with start_standin("--port", url.rsplit(":", 1)[1]):
            up = sup.expect(Ready, 15)  # probed again with backoff (at most 5 s apart)
    assert up.ollama_up is True and up.reason == "" and up.pid == down.pid


def test_ollama_gone_mid_run_says_not_ready_before_the_failure(sup: Router,
                                                               tmp_path: Path) -> None:
    """The supervisor must take the slot out before the failure frees it: at most one
    request per slot is failed for an Ollama that is gone."""
    with start_standin() as (ollama, url):
        with start_worker(url, sup.endpoint, log=tmp_path / "w.log"):
            ident, ready = sup.recv(15)
            assert isinstance(ready, Ready) and ready.ollama_up
            sup.send(ident, job(1, "fine"))
            assert isinstance(sup.expect(Done), Done)
            ollama.kill()
            ollama.wait(5)
            sup.send(ident, job(2, "after the crash"))
            gone = sup.expect(Ready)
            failed = sup.expect(Failed)
    assert gone.ollama_up is False and url in gone.reason
    assert failed.job == 2 and failed.code == "inference_failed"


def test_worker_says_ready_again_after_a_reconnect(tmp_path: Path, ollama: str) -> None:
    """A ROUTER that went away forgets its peers; the worker repeats its Ready on each new
    connection, or its slot would stay unready for good."""
    first = Router(tmp_path)
    with start_worker(ollama, first.endpoint, log=tmp_path / "w.log") as proc:
        assert first.expect(Ready, 15).pid == proc.pid
        first.close()  # the supervisor's socket goes away...
        with router(tmp_path, endpoint=first.endpoint) as second:  # ...and comes back
            again = second.expect(Ready, 15)
            second.send(b"w0", Ping(seq=5))
            assert second.expect(Pong) == Pong(seq=5, job=0)
    assert again.pid == proc.pid and again.ollama_up


# --- the socket side ---------------------------------------------------------------------------

@pytest.fixture
def slow(spawn) -> Iterator[Slot]:
    """A worker on a stand-in that takes 50 ms per token (so a job lasts a while)."""
    with start_standin("--token-ms", "50") as (_, url):
        yield spawn(url)


def start_long_job(slot: Slot, n: int = 1) -> Job:
    """Send a ~2 s job and return once a Pong shows the worker is running it."""
    j = job(n, "y" * 150)
    slot.sup.send(slot.ident, j)
    slot.sup.send(slot.ident, Ping(seq=41))
    assert slot.sup.expect(Pong, 5) == Pong(seq=41, job=n)
    return j


def test_ping_is_answered_while_a_job_runs(slow: Slot) -> None:
    slow.sup.send(slow.ident, Ping(seq=1))
    assert slow.sup.expect(Pong, 5) == Pong(seq=1, job=0)
    j = start_long_job(slow, 7)
    for seq in (2, 3):
        slow.sup.send(slow.ident, Ping(seq=seq))
        assert slow.sup.expect(Pong, 1) == Pong(seq=seq, job=7)
    assert slow.sup.expect(Done, 10).text == "echo: " + j.prompt


def test_job_while_busy_is_refused_as_overloaded(slow: Slot) -> None:
    first = start_long_job(slow, 1)
    slow.sup.send(slow.ident, job(2, "second"))
    refused = slow.sup.expect(Failed, 10)  # must come before job 1's Done: expect checks the kind
    assert (refused.job, refused.request_id, refused.code) == (2, "req_2", "overloaded")
    assert slow.sup.expect(Done, 10).text == "echo: " + first.prompt


def test_malformed_frames_are_logged_and_dropped(w: Slot) -> None:
    w.sup.send_raw(w.ident, b"garbage")
    w.sup.send_raw(w.ident, b"\x81\xa4type\xa3Job")          # a Job missing every field
    w.sup.send_raw(w.ident, b"\x81\xa4type\xa4Ping", b"x")  # two frames
    assert w.done(job(1, "still here")).text == "echo: still here"
    lines = w.log.read_text().splitlines()
    assert sum("dropped a malformed message" in line for line in lines) == 3, lines
    assert "Traceback" not in w.log.read_text()
    assert w.proc.poll() is None


def test_sigterm_mid_job_delivers_the_answer_then_exits_0(slow: Slot) -> None:
    j = start_long_job(slow)
    slow.proc.send_signal(signal.SIGTERM)
    assert slow.sup.expect(Done, 10).text == "echo: " + j.prompt
    assert slow.proc.wait(5) == 0


def test_stop_mid_job_delivers_the_answer_and_refuses_new_jobs(slow: Slot) -> None:
    j = start_long_job(slow)
    slow.sup.send(slow.ident, Stop())
    slow.sup.send(slow.ident, job(2, "too late"))
    assert slow.sup.expect(Failed, 2).code == "shutdown"
    assert slow.sup.expect(Done, 10).text == "echo: " + j.prompt
    assert slow.proc.wait(5) == 0


def test_stop_when_idle_exits_promptly(w: Slot) -> None:
    w.sup.send(w.ident, Stop())
    assert w.proc.wait(2) == 0


def test_sigterm_when_idle_exits_promptly(w: Slot) -> None:
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(2) == 0


def test_sigint_is_ignored(w: Slot) -> None:
    w.proc.send_signal(signal.SIGINT)
    w.sup.send(w.ident, Ping(seq=9))
    assert w.sup.expect(Pong, 5) == Pong(seq=9, job=0)
    assert w.proc.poll() is None


# --- parent death ----------------------------------------------------------------------------

INTERMEDIATE = ("import os, subprocess, sys\n"
                "p = subprocess.Popen(sys.argv[1:] + ['--parent-pid', str(os.getpid())],"
                " stderr=subprocess.DEVNULL, stdin=subprocess.PIPE)\n"
                "p.stdin.write(b'w0\\n'); p.stdin.close()\n"
                "print(p.pid, flush=True)\n"
                "p.wait()\n")


def test_worker_exits_when_its_parent_dies_mid_job(sup: Router) -> None:
    with start_standin("--token-ms", "50") as (_, url):
        parent = subprocess.Popen([sys.executable, "-c", INTERMEDIATE,
                                   *worker_command(url, sup.endpoint)],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        worker_pid = int(read_line(parent.stdout, 10))
        try:
            ident, ready = sup.recv(15)
            assert isinstance(ready, Ready) and ready.pid == worker_pid
            sup.send(ident, job(1, "z" * 400))     # ~5 s of tokens: the worker is busy
            sup.send(ident, Ping(seq=1))
            assert sup.expect(Pong, 5).job == 1
            parent.kill()
            parent.wait(5)
            assert wait_gone(worker_pid, 3), "the worker outlived its parent by 3 s"
        finally:
            kill_quietly(worker_pid)
            parent.stdout.close()


def test_worker_exits_at_start_when_its_parent_is_not_the_supervisor(sup: Router,
                                                                     ollama: str) -> None:
    other = os.getppid()  # alive, but not the worker's parent: as if the supervisor had died
    proc = subprocess.run(worker_command(ollama, sup.endpoint, "--parent-pid", str(other)),
                          cwd=ROOT, capture_output=True, text=True, timeout=10, input="w0\n")
    assert proc.returncode == 0
    assert "died before the worker started" in proc.stderr
    assert sup.silent(0.2)  # it never said Ready


def test_worker_without_its_identity_on_stdin_exits_2_with_one_line(sup: Router,
                                                                    ollama: str) -> None:
    """Started by hand (not by `start`), a worker has no identity to connect with: it says
    so and exits, and never reaches the supervisor's socket."""
    proc = subprocess.run(worker_command(ollama, sup.endpoint, "--parent-pid", str(os.getpid())),
                          cwd=ROOT, capture_output=True, text=True, timeout=30, input="")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not by hand" in lines[0] and "Traceback" not in proc.stderr
    assert sup.silent(0.2)
