"""Small loopback HTTP servers for tests: an Ollama that answers /api/tags, /api/version and a
streaming /api/pull, and a coordinator that answers GET /network with a (maybe skewed) Date.
Each runs in a thread on 127.0.0.1, port 0; use them as context managers."""
import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLOUD_STUB = {"name": "gpt-oss:120b-cloud", "model": "gpt-oss:120b-cloud", "size": 384,
              "remote_model": "gpt-oss:120b", "remote_host": "https://ollama.com:443",
              "digest": "0" * 64, "details": {"family": "gptoss", "quantization_level": ""}}


def tag(name: str, size: int = 2019393189, family: str = "llama",
        quant: str = "Q4_K_M") -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": "2025-05-04T17:37:44.706015396-07:00",
            "size": size, "digest": "a80c4f17acd5" + "0" * 52,
            "details": {"format": "gguf", "family": family, "families": [family],
                        "parameter_size": "3.2B", "quantization_level": quant}}


class _Server:
    handler: type[BaseHTTPRequestHandler]

    def __enter__(self) -> "_Server":
        owner = self

        class Handler(self.handler):  # type: ignore[misc, valid-type]
            server_owner = owner

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"


class _OllamaHandler(BaseHTTPRequestHandler):
    server_owner: "FakeOllama"
    protocol_version = "HTTP/1.1"

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.server_owner
        if self.path == "/api/version":
            self._json(200, {"version": fake.version})
        elif self.path == "/api/tags":
            self._json(200, {"models": [*fake.models, CLOUD_STUB]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        fake = self.server_owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/api/pull":
            self._json(404, {"error": "not found"})
            return
        name = body.get("model") or body.get("name") or ""
        fake.pulls.append(name)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()

        def line(obj: dict[str, Any]) -> None:
            self.wfile.write(json.dumps(obj).encode() + b"\n")
            self.wfile.flush()

        line({"status": "pulling manifest"})
        if name in fake.missing:
            line({"error": "pull model manifest: file does not exist"})
            return
        digest = "sha256:" + "dde5aa3fc5ff" + "0" * 52
        total = 4 * 1024 * 1024
        line({"status": "pulling dde5aa3fc5ff", "digest": digest, "total": total})
        for done in (total // 4, total // 2, total):
            line({"status": "pulling dde5aa3fc5ff", "digest": digest, "total": total,
                  "completed": done})
        if name in fake.truncated:
            return  # the stream ends without "success"
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            line({"status": status})
        full = name if ":" in name else name + ":latest"
        if not any(m["name"] == full for m in fake.models):
            fake.models.append(tag(full))


class FakeOllama(_Server):
    """`models`: local tags (a cloud stub is always added); `missing`: names whose pull fails
    in-stream; `truncated`: names whose pull stream ends without success."""

    handler = _OllamaHandler

    def __init__(self, models: list[dict[str, Any]] | None = None, version: str = "0.12.6",
                 missing: tuple[str, ...] = ("no-such-model",),
                 truncated: tuple[str, ...] = ("cut-off",)) -> None:
        self.models = list(models or [])
        self.version = version
        self.missing, self.truncated = missing, truncated
        self.pulls: list[str] = []


NETWORK = {"chainId": 8453, "version": "1.4.0",
           "contracts": {"NodeRegistryLocker": "0x1111111111111111111111111111111111111111",
                         "OperatorStakeRewardsV2": "0x2222222222222222222222222222222222222222"}}


class _CoordinatorHandler(BaseHTTPRequestHandler):
    server_owner: "FakeCoordinator"
    protocol_version = "HTTP/1.1"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(time.time() + self.server_owner.skew_s, usegmt=True)

    def do_GET(self) -> None:
        fake = self.server_owner
        fake.requests.append(self.path)
        if self.path == "/network":
            status, body = 200, fake.network
        else:
            status, body = 404, {"error": "not_found"}
        data = json.dumps(body).encode()
        self.send_response(status)  # adds the Date header, shifted by skew_s
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeCoordinator(_Server):
    """Answers GET /network; its Date header runs `skew_s` seconds ahead of this machine."""

    handler = _CoordinatorHandler

    def __init__(self, skew_s: float = 0.0, network: dict[str, Any] | None = None) -> None:
        self.skew_s = skew_s
        self.network = network or NETWORK
        self.requests: list[str] = []
