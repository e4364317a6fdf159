"""The Ollama stand-in speaks Ollama's shapes (reference/ollama.md §1-2): checked over HTTP
against a real stand-in process."""
import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.procs import start_standin
from workers import ollama

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with start_standin("--models", "llama3.2,qwen2.5:0.5b", "--cloud-model", "gpt-oss:120b-cloud",
                       "--version-string", "0.31.2", "--pullable", "phi3,tinyllama:1.1b",
                       "--load-ms", "100", "--token-ms", "20") as (_, base):
        yield base


def lines(resp: requests.Response) -> list[dict[str, Any]]:
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in resp.iter_lines() if line]


def generate(url: str, **body: Any) -> requests.Response:
    return requests.post(url + "/api/generate", json={"model": "llama3.2", **body}, timeout=10)


def test_prints_listening_line_and_exits_0_on_sigterm() -> None:
    with start_standin() as (proc, base):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base)
        assert requests.get(base + "/", timeout=5).text == "Ollama is running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0


def test_root_head_and_version(url: str) -> None:
    head = requests.head(url + "/", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert requests.get(url + "/api/version", timeout=5).json() == {"version": "0.31.2"}
    assert ollama.get_version(url) == "0.31.2"


def test_tags_shape_and_cloud_stub(url: str) -> None:
    models = requests.get(url + "/api/tags", timeout=5).json()["models"]
    by_name = {m["name"]: m for m in models}
    assert {"llama3.2:latest", "qwen2.5:0.5b", "gpt-oss:120b-cloud"} <= set(by_name)
    local = by_name["qwen2.5:0.5b"]
    assert local["model"] == "qwen2.5:0.5b" and isinstance(local["size"], int)
    assert HEX64.fullmatch(local["digest"]) and "remote_host" not in local
    assert local["details"]["parameter_size"] == "0.5B"
    assert {"family", "quantization_level", "parameter_size", "format"} <= set(local["details"])
    assert by_name["gpt-oss:120b-cloud"]["remote_host"].startswith("https://")
    assert "gpt-oss:120b-cloud" not in {m["name"] for m in ollama.list_models(url)}


def test_streaming_shape_with_nanosecond_durations(url: str) -> None:
    chunks = lines(generate(url, prompt="stream me", options={"num_predict": 4}))
    *tokens, final = chunks
    assert [c["response"] for c in tokens] == ["echo", ": st", "ream", " me"]
    assert all(c["done"] is False and c["model"] == "llama3.2" and c["created_at"]
               for c in tokens)
    assert final["done"] is True and final["response"] == "" and final["done_reason"] == "stop"
    assert final["eval_count"] == 4 and final["prompt_eval_count"] == 3
    durations = {k: v for k, v in final.items() if k.endswith("_duration")}
    assert set(durations) == {"total_duration", "load_duration", "prompt_eval_duration",
                              "eval_duration"}
    assert all(isinstance(v, int) for v in durations.values())
    assert durations["eval_duration"] >= 3 * 20_000_000      # 4 tokens at 20 ms, in ns
    assert durations["total_duration"] >= durations["load_duration"] + durations["eval_duration"]


def test_cold_load_is_paid_once(url: str) -> None:
    def load_ns() -> int:
        body = generate(url, prompt="hi", stream=False, model="qwen2.5:0.5b").json()
        return body["load_duration"]
    assert load_ns() >= 100_000_000 > load_ns()
    loaded = requests.get(url + "/api/ps", timeout=5).json()["models"]
    entry = next(m for m in loaded if m["name"] == "qwen2.5:0.5b")
    assert entry["size_vram"] == entry["size"] and entry["expires_at"]


def test_non_streaming_answer_and_length_cap(url: str) -> None:
    resp = generate(url, prompt="hello world", system="sys", stream=False,
                    options={"num_predict": 2})
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert (body["response"], body["done"], body["done_reason"]) == ("echo: [s", True, "length")


def test_empty_prompt_only_loads(url: str) -> None:
    final, = lines(generate(url, prompt=""))
    assert (final["done"], final["done_reason"], final["response"]) == (True, "load", "")
    assert "eval_count" not in final   # zero metrics are omitted, as Ollama does


def test_request_errors(url: str) -> None:
    missing = generate(url, model="nope", prompt="hi")
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    empty = requests.post(url + "/api/generate", data=b"", timeout=5)
    assert (empty.status_code, empty.json()) == (400, {"error": "missing request body"})
    bad = requests.post(url + "/api/generate", data=b"{nope", timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()
    assert requests.get(url + "/api/nothing", timeout=5).status_code == 404


@pytest.mark.parametrize("trigger, status, error", [
    ("[[error-500]]", 500, "model runner has unexpectedly stopped"),
    ("[[busy]]", 503, "server busy, please try again.  maximum pending requests exceeded"),
])
def test_errors_before_streaming(url: str, trigger: str, status: int, error: str) -> None:
    resp = generate(url, prompt="hi " + trigger)
    assert resp.status_code == status and resp.json()["error"].startswith(error)


def test_error_midstream_keeps_status_200(url: str) -> None:
    resp = generate(url, prompt="one two three [[error-midstream]]")
    chunks = lines(resp)
    assert resp.status_code == 200
    assert chunks[0]["response"] == "echo" and "error" in chunks[-1]
    assert not any(c.get("done") for c in chunks)


def test_eof_ends_without_done(url: str) -> None:
    chunks = lines(generate(url, prompt="abc [[eof]]"))
    assert "".join(c["response"] for c in chunks) == "echo: abc [[eof]]"
    assert not any(c["done"] for c in chunks)


def test_stall_after_sends_n_tokens_then_nothing(url: str) -> None:
    got = []
    with requests.post(url + "/api/generate", stream=True, timeout=(5, 1),
                       json={"model": "llama3.2", "prompt": "abcdefghijkl [[stall-after:2]]"}) as r:
        with pytest.raises(requests.ConnectionError):  # the read timeout, mid-body
            for line in r.iter_lines():
                got.append(json.loads(line)["response"])
    assert got == ["echo", ": ab"]


def test_hang_sends_headers_then_nothing(url: str) -> None:
    with requests.post(url + "/api/generate", stream=True, timeout=(5, 1),
                       json={"model": "llama3.2", "prompt": "hi [[hang]]"}) as r:
        assert r.status_code == 200
        with pytest.raises(requests.ConnectionError):
            next(r.iter_lines())


def test_pull_success_streams_progress_and_adds_the_model(url: str) -> None:
    resp = requests.post(url + "/api/pull", json={"model": "phi3"}, timeout=10)
    chunks = lines(resp)
    statuses = [c["status"] for c in chunks]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [c for c in chunks if "digest" in c]
    assert layers and all(c["status"] == "pulling " + c["digest"][7:19] for c in layers)
    assert all(c["digest"].startswith("sha256:") and HEX64.fullmatch(c["digest"][7:])
               for c in layers)
    assert "completed" not in layers[0]            # omitempty while zero
    assert any(c.get("completed") == c["total"] for c in layers)
    assert ollama.has_model(ollama.list_models(url), "phi3")


def test_pull_unknown_name_fails_in_stream_with_200(url: str) -> None:
    resp = requests.post(url + "/api/pull", json={"model": "nosuch"}, timeout=10)
    assert resp.status_code == 200
    assert lines(resp) == [{"status": "pulling manifest"},
                           {"error": "pull model manifest: file does not exist"}]
    assert not ollama.has_model(ollama.list_models(url), "nosuch")


def test_pull_not_streaming(url: str) -> None:
    ok = requests.post(url + "/api/pull", json={"model": "tinyllama:1.1b", "stream": False},
                       timeout=10)
    assert (ok.status_code, ok.json()) == (200, {"status": "success"})
    bad = requests.post(url + "/api/pull", json={"model": "nosuch", "stream": False}, timeout=10)
    assert bad.status_code == 500
    assert bad.json() == {"error": "pull model manifest: file does not exist"}


def test_default_pullable_rule() -> None:
    with start_standin() as (_, base):
        assert [c.get("status") for c in ollama.pull(base, "anything")][-1] == "success"
        with pytest.raises(ollama.OllamaError, match="file does not exist"):
            list(ollama.pull(base, "missing-model"))


def test_an_answer_that_ends_the_connection_says_so(url):
    with requests.Session() as s:
        answers = [s.post(f"{url}/api/generate", json={"model": "llama3.2", "prompt": "x"},
                          headers={"Connection": "close"}) for _ in range(3)]
    assert [(r.status_code, r.headers.get("Connection")) for r in answers] == [(200, "close")] * 3
