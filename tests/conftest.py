"""Shared fixtures: an isolated node home and the CLI run as a real subprocess."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment a CLI subprocess runs with: no inherited node or Ollama settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PARALLELIX_", "OLLAMA_")) and k not in ("HTTP_PROXY", "HTTPS_PROXY")}
    env["PARALLELIX_HOME"] = str(home)
    env.update(extra)
    return env


class Cli:
    """Runs `parallelix-node` as a subprocess against one home folder."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = clean_env(home)

    def __call__(self, *args: str, timeout: float = 60, input: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT,
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, input=input)

    def json(self, *args: str, **kw) -> dict:
        """Run with --json, require exit 0 and exactly one JSON document on stdout."""
        r = self(*args, "--json", **kw)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path) -> Cli:
    return Cli(home)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    """Assert a failed command printed exactly one line on stderr and no traceback; return it."""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections: bound, never listening."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def node_home(tmp_path: Path) -> tuple[Path, str]:
    """A home after `init`, and its node address."""
    from tests.nodeproc import init_home
    home = tmp_path / "h"
    return home, init_home(home)


@pytest.fixture
def standin():
    """A running Ollama stand-in with llama3.2; yields its URL."""
    from tests.procs import start_standin
    with start_standin("--models", "llama3.2") as (_, url):
        yield url


@pytest.fixture
def serve():
    """serve(handler, tls=None) starts a scripted raw HTTP server (tests/rawhttp.py)."""
    from tests.rawhttp import Server
    servers: list[Server] = []

    def start(handler, tls=None) -> Server:
        servers.append(Server(handler, tls))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (openssl), for TLS on loopback."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key
