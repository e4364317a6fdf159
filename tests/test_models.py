"""`models` and `models pull` against a loopback fake Ollama; workers.ollama.pull directly."""
import json
import os
import pty
import subprocess
import sys

import pytest

from tests.conftest import ROOT, one_error_line
from tests.fakes import FakeOllama, tag
from workers.ollama import OllamaError, pull


@pytest.fixture
def ollama():
    with FakeOllama([tag("llama3.2:latest"), tag("qwen3:8b", size=5_200_000_000,
                                                     family="qwen3", quant="Q4_K_M")]) as fake:
        yield fake


def test_list_json_skips_cloud_stub(cli, ollama):
    doc = cli.json("models", "--ollama", ollama.url)
    assert [m["name"] for m in doc["models"]] == ["llama3.2:latest", "qwen3:8b"]
    assert doc["models"][1] | {"digest": None, "modifiedAt": None} == {
        "name": "qwen3:8b", "size": 5_200_000_000, "family": "qwen3", "quantization": "Q4_K_M",
        "parameterSize": "3.2B", "digest": None, "modifiedAt": None}
    assert doc["model"] == "llama3.2" and doc["modelPresent"] is True
    assert doc["ollama"] == ollama.url


def test_list_plain_and_missing_configured_model(cli, ollama):
    r = cli("models", "--ollama", ollama.url, "--model", "mistral")
    assert r.returncode == 0
    assert "qwen3:8b" in r.stdout and "4.8 GiB" in r.stdout and "cloud" not in r.stdout
    assert "parallelix-node models pull mistral" in r.stdout


def test_ollama_host_env_is_used(cli, ollama):
    doc = cli.json("models", env={"OLLAMA_HOST": ollama.url})
    assert doc["ollama"] == ollama.url


def test_pull_json_streams_ndjson_until_success(cli, ollama):
    r = cli("models", "pull", "--json", "--ollama", ollama.url)
    assert r.returncode == 0, r.stderr
    events = [json.loads(l) for l in r.stdout.splitlines()]
    assert events[0] == {"status": "pulling manifest"}
    assert any(e.get("completed") == e.get("total") and "digest" in e for e in events)
    assert events[-1] == {"status": "success"}
    assert ollama.pulls == ["llama3.2"]  # the configured model by default


def test_pull_named_model_plain(cli, ollama):
    r = cli("models", "pull", "phi4", "--ollama", ollama.url, env={"PARALLELIX_MODEL": "x"})
    assert r.returncode == 0, r.stderr
    assert ollama.pulls == ["phi4"]
    assert "pulling manifest" in r.stdout and r.stdout.rstrip().endswith("pulled phi4")
    assert "phi4:latest" in [m["name"] for m in cli.json("models", "--ollama", ollama.url)["models"]]


def test_pull_in_stream_error_is_one_line_exit_1(cli, ollama):
    r = cli("models", "pull", "no-such-model", "--ollama", ollama.url)
    assert r.returncode == 1
    assert "file does not exist" in one_error_line(r)
    r = cli("models", "pull", "no-such-model", "--ollama", ollama.url, "--json")
    assert r.returncode == 1
    lines = [json.loads(l) for l in r.stdout.splitlines()]  # still NDJSON only
    assert lines[-1]["exitCode"] == 1 and "file does not exist" in lines[-1]["error"]


def test_pull_without_success_line_fails(cli, ollama):
    r = cli("models", "pull", "cut-off", "--ollama", ollama.url)
    assert r.returncode == 1
    assert "success" in one_error_line(r)


def test_pull_on_a_terminal_draws_a_progress_bar(cli, ollama):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "node.cli", "models", "pull", "qwen3",
                             "--ollama", ollama.url], cwd=ROOT, env=cli.env,
                            stdout=slave, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(30) == 0
    text = out.decode()
    assert "100%" in text and "[####" in text and "pulled qwen3" in text


def test_unreachable_ollama_is_one_clear_line(cli, closed_port):
    r = cli("models", "--ollama", f"127.0.0.1:{closed_port}")
    assert r.returncode == 1
    line = one_error_line(r)
    assert f"not reachable at http://127.0.0.1:{closed_port}" in line and "ollama serve" in line


def test_bad_arguments_are_usage_errors(cli, ollama):
    for args in (["models", "frob"], ["models", "list", "extra"],
                 ["models", "pull", "bad name!"], ["models", "--bogus"]):
        r = cli(*args, "--ollama", ollama.url)
        assert r.returncode == 2, args
        one_error_line(r)
    assert ollama.pulls == []


def test_pull_function_yields_until_success(ollama):
    events = list(pull(ollama.url, "qwen3"))
    assert events[-1] == {"status": "success"}
    with pytest.raises(OllamaError, match="file does not exist"):
        list(pull(ollama.url, "no-such-model"))
    with pytest.raises(OllamaError, match="before 'success'"):
        list(pull(ollama.url, "cut-off"))


def test_pull_function_unreachable(closed_port):
    with pytest.raises(OllamaError, match="not reachable"):
        next(pull(f"http://127.0.0.1:{closed_port}", "qwen3"))


def test_escape_sequences_from_ollama_never_reach_the_terminal_raw(cli):
    evil = "llama3.2\x1b]0;owned\x07\x1b[2J:latest"
    with FakeOllama([tag(evil)]) as fake:
        plain = cli("models", "--ollama", fake.url)
        doc = cli.json("models", "--ollama", fake.url)
    assert plain.returncode == 0 and "\x1b" not in plain.stdout and "\x07" not in plain.stdout
    assert "\\x1b]0;owned\\x07" in plain.stdout
    assert [m["name"] for m in doc["models"]] == [evil]  # JSON keeps the exact value, escaped
