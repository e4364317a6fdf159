"""Ollama's HTTP API as the node uses it (reference/ollama.md §1-2). No key, no zmq: workers and
the CLI both import it. Every call has a timeout; every failure is an `OllamaError` with one
line an operator can act on."""
import json
from collections.abc import Iterator
from typing import Any

import requests

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0


class OllamaError(Exception):
    """Ollama unreachable, or answered with an error; `status` is the HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def session() -> requests.Session:
    """A session that ignores HTTP(S)_PROXY: a proxy must never sit between us and local Ollama."""
    s = requests.Session()
    s.trust_env = False
    return s


def error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return resp.text.strip()[:200] or resp.reason or "no detail"


def get_json(base: str, path: str, http: requests.Session | None = None,
             timeout: float = READ_TIMEOUT) -> Any:
    """GET base+path and return its JSON body, or raise OllamaError."""
    http = http or session()
    try:
        resp = http.get(base + path, timeout=(CONNECT_TIMEOUT, timeout))
    except requests.ConnectionError:
        raise OllamaError(f"Ollama is not reachable at {base}; start it with: ollama serve") from None
    except requests.Timeout:
        raise OllamaError(f"Ollama at {base} did not answer within {timeout:.0f} s") from None
    except requests.RequestException as e:
        raise OllamaError(f"Ollama at {base} could not be read ({type(e).__name__})") from None
    if resp.status_code != 200:
        raise OllamaError(f"Ollama at {base} answered {resp.status_code}: {error_text(resp)}",
                          resp.status_code)
    try:
        return resp.json()
    except ValueError:
        raise OllamaError(f"{base} answered {path} with something that is not JSON: is "
                          "something other than Ollama listening there? check --ollama / "
                          "OLLAMA_HOST", resp.status_code) from None


def get_version(base: str, http: requests.Session | None = None) -> str:
    body = get_json(base, "/api/version", http)
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise OllamaError(f"{base} answered /api/version without a version: is something other "
                          "than Ollama listening there? check --ollama / OLLAMA_HOST", 200)
    return body["version"]


def list_models(base: str, http: requests.Session | None = None) -> list[dict[str, Any]]:
    """Local models from /api/tags; cloud stubs (`remote_host`) are skipped: they cannot run here."""
    body = get_json(base, "/api/tags", http)
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, list):
        raise OllamaError(f"{base} answered /api/tags without a model list: is something other "
                          "than Ollama listening there? check --ollama / OLLAMA_HOST", 200)
    return [m for m in models
            if isinstance(m, dict) and isinstance(m.get("name"), str) and not m.get("remote_host")]


def find_model(models: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry of `models` for `name`, with Ollama's rule that a missing tag means :latest."""
    want = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
    return next((m for m in models if m["name"] in (name, want)), None)


def has_model(models: list[dict[str, Any]], name: str) -> bool:
    """Whether `name` is among `models` (see `find_model`)."""
    return find_model(models, name) is not None


def iter_ndjson(resp: requests.Response) -> Iterator[dict[str, Any]]:
    """Yield each NDJSON object; an in-stream `{"error": …}` line raises OllamaError."""
    for line in resp.iter_lines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise OllamaError("Ollama sent a line that is not JSON") from None
        if not isinstance(obj, dict):
            raise OllamaError("Ollama sent a line that is not a JSON object")
        if "error" in obj:
            raise OllamaError(str(obj["error"]), resp.status_code)
        yield obj


PULL_READ_TIMEOUT = 60.0  # Ollama sends pull progress every ~60 ms; a minute of silence is a stall


def pull(base: str, name: str, http: requests.Session | None = None) -> Iterator[dict[str, Any]]:
    """Stream `POST /api/pull` for `name`, yielding each progress object up to and including
    `{"status": "success"}`. Raises OllamaError on an HTTP error, an in-stream `{"error": …}`
    line, a stall, or a stream that ends without `success` (reference/ollama.md §1)."""
    http = http or session()
    try:
        resp = http.post(base + "/api/pull", json={"model": name, "stream": True}, stream=True,
                         timeout=(CONNECT_TIMEOUT, PULL_READ_TIMEOUT))
    except requests.ConnectionError:
        raise OllamaError(f"Ollama is not reachable at {base}; start it with: ollama serve") from None
    except requests.Timeout:
        raise OllamaError(f"Ollama at {base} did not start the pull of {name} "
                          f"within {PULL_READ_TIMEOUT:.0f} s") from None
    with resp:
        if resp.status_code != 200:
            raise OllamaError(f"pulling {name} failed: Ollama answered {resp.status_code}: "
                              f"{error_text(resp)}", resp.status_code)
        try:
            for obj in iter_ndjson(resp):
                yield obj
                if obj.get("status") == "success":
                    return
        except OllamaError as e:
            raise OllamaError(f"pulling {name} failed: {e}", e.status) from None
        except requests.RequestException as e:
            raise OllamaError(f"pulling {name} failed: the stream from Ollama at {base} broke "
                              f"or stalled for {PULL_READ_TIMEOUT:.0f} s ({type(e).__name__})") from None
    raise OllamaError(f"pulling {name} failed: Ollama closed the stream before 'success'; "
                      "run the pull again (it resumes)")
