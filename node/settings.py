"""Every setting in one place. Precedence: flag > environment > config.toml > default."""
import ipaddress
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from node.atomic import write_atomic
from node.errors import ConfigError
from node.home import Home

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULT_COORDINATOR = "https://parallelix.io/api"
DEFAULT_OLLAMA = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"

ENV_COORDINATOR = "PARALLELIX_COORDINATOR"
ENV_MODEL = "PARALLELIX_MODEL"
ENV_NODE_ID = "PARALLELIX_NODE_ID"
ENV_WORKERS = "PARALLELIX_WORKERS"
ENV_OLLAMA = "OLLAMA_HOST"
ENV_METRICS = "PARALLELIX_METRICS"


@dataclass(frozen=True)
class WorkerSpec:
    """One Ollama endpoint and how many inference slots (worker processes) it gets."""

    ollama: str
    slots: int = 1
    gpu: int | None = None


@dataclass(frozen=True)
class MetricsAddress:
    """Where `/metrics` is served: loopback unless the operator names another address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_metrics_address(value: Any) -> MetricsAddress:
    """`PORT`, `:PORT`, `ADDR:PORT` or `[IPv6]:PORT`; no address means 127.0.0.1. The address
    must be an IP literal or `localhost`, so what is bound is what the operator read."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) \
        else None
    hint = "use e.g. 127.0.0.1:9464 (or 9464 for loopback)"
    if not text:
        raise ConfigError(f"metrics address {value!r} is not ADDR:PORT; {hint}")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isascii() or not port.isdecimal() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics address {text!r} needs a port from 0 (any free one, "
                          f"named in the log) to 65535; {hint}")
    if host in ("", "localhost"):
        host = "127.0.0.1"
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"metrics address {text!r}: {host!r} is not an IP address; {hint}") \
            from None
    return MetricsAddress(host, int(port))


@dataclass(frozen=True)
class Settings:
    home: Home
    coordinator: str
    model: str
    node_id: int | None
    workers: tuple[WorkerSpec, ...]
    metrics: MetricsAddress | None = None

    @property
    def ollama(self) -> str:
        """The first Ollama endpoint: the one single-endpoint commands (models, verify) talk to."""
        return self.workers[0].ollama

    @property
    def slots(self) -> int:
        return sum(w.slots for w in self.workers)


def parse_ollama_host(value: str | None) -> str:
    """Normalise an Ollama address by ollama-python's `_parse_host` rules.

    '' -> http://127.0.0.1:11434, ':9' -> http://127.0.0.1:9, 'https://h' -> port 443,
    'http://localhost' -> port 80, paths kept, bare IPv6 bracketed. Unlike the client, 0.0.0.0
    (a bind-all address an operator often sets for the server) maps to loopback. Plain http is
    refused off loopback (SECURITY.md): the answer is the text the node signs.
    """
    value = (value or "").strip()
    scheme, _, hostport = value.partition("://")
    if not hostport:
        scheme, hostport = "http", value
    elif scheme not in ("http", "https"):
        raise ConfigError(f"Ollama address {value!r} must use http:// or https://")
    default_port = {"http": 80, "https": 443}[scheme] if "://" in value else 11434
    if _is_bare_ipv6(hostport):
        host, port, path = hostport, None, ""
    else:
        try:
            split = urlsplit(f"{scheme}://{hostport}")
            host, port, path = split.hostname, split.port, split.path.rstrip("/")
        except ValueError as e:
            raise ConfigError(f"Ollama address {value!r} is not valid ({e}); "
                              "use e.g. 127.0.0.1:11434") from None
    if port == 0:
        raise ConfigError(f"Ollama address {value!r} has port 0; Ollama listens on 11434 by default")
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"Ollama address {value!r} uses plain http on a non-loopback host: whoever is on "
            "that network path chooses the text this node signs; use https (a TLS proxy in "
            "front of Ollama) or an SSH tunnel to a loopback port (ssh -N -L "
            "11435:127.0.0.1:11434 HOST, then --ollama 127.0.0.1:11435)")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or default_port}{path}"


def _is_bare_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_coordinator(url: str) -> str:
    """Accept https:// anywhere and http:// only on loopback, as PROTOCOL.md requires.

    Parsers disagree on odd URLs (`http://evil\\@127.0.0.1` is loopback to urlsplit but not to
    the HTTP client), so anything odd is refused rather than interpreted: backslashes, spaces,
    credentials, a bad port."""
    url = url.strip()
    hint = f"use e.g. --coordinator {DEFAULT_COORDINATOR}"
    try:
        split = urlsplit(url)
        host, port = split.hostname, split.port
    except ValueError as e:
        raise ConfigError(f"coordinator {url!r} is not a valid URL ({e}); {hint}") from None
    if any(c in url for c in "\\ \t\r\n") or "@" in split.netloc or split.query \
            or split.fragment or "?" in url or "#" in url:
        raise ConfigError(f"coordinator {url!r} has characters, credentials, a query or a "
                          f"fragment a coordinator base URL never needs; {hint}")
    if split.scheme not in ("http", "https") or not host or port == 0:
        raise ConfigError(f"coordinator {url!r} is not an http(s) URL with a host; {hint}")
    if split.scheme == "http" and not is_loopback(host):
        raise ConfigError(f"coordinator {url!r} uses plain http on a non-loopback host; "
                          "use https:// (plain http is only for 127.0.0.1, ::1 and localhost)")
    return url.rstrip("/")


def read_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB, which no "
                              "config.toml is; fix the file or move it aside")
        return tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {_decode_problem(path, e)}; fix the file or move it "
                          "aside") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config; fix the file or move "
                          "it aside") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def _decode_problem(path: Path, error: Exception) -> str:
    """tomllib's message, except that a key given twice is named ("node_id is set twice"),
    where tomllib only says "Cannot overwrite a value"."""
    found = re.match(r"Cannot overwrite a value \(at line (\d+),", str(error))
    if not found:
        return str(error)
    number = int(found.group(1))
    try:
        line = path.read_text().splitlines()[number - 1]
    except (OSError, UnicodeDecodeError, IndexError):
        return str(error)
    key = line.partition("=")[0].strip()
    return f"{key} is set twice (the second time on line {number}); keep one"


def _positive_int(value: Any, what: str, most: int) -> int:
    """A whole number in 1..most: a TOML integer or the digits of a flag or variable (a TOML
    float such as 1e30 is refused, not rounded)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError(f"{what} must be a whole number from 1 to {most}, not {value!r}")
    return value


MAX_CONFIG_BYTES = 1024 * 1024  # a config.toml is a few hundred bytes; read no more than this
MAX_NODE_ID = 2**53 - 1      # a JSON number every coordinator reads exactly
MAX_SLOTS = 64               # worker processes per Ollama endpoint


def _config_workers(raw: Any, path: Path) -> tuple[WorkerSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: 'workers' must be a list of tables like "
                          "{ollama = \"http://127.0.0.1:11435\", slots = 1, gpu = 0}")
    specs = []
    for i, w in enumerate(raw):
        if not isinstance(w, dict) or not isinstance(w.get("ollama"), str):
            raise ConfigError(f"{path}: workers[{i}] needs an 'ollama' address")
        unknown = set(w) - {"ollama", "slots", "gpu"}
        if unknown:
            raise ConfigError(f"{path}: workers[{i}] has unknown keys {sorted(unknown)}")
        gpu = w.get("gpu")
        if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0):
            raise ConfigError(f"{path}: workers[{i}].gpu must be a GPU index (0, 1, …)")
        specs.append(WorkerSpec(parse_ollama_host(w["ollama"]),
                                _positive_int(w.get("slots", 1), f"{path}: workers[{i}].slots", MAX_SLOTS),
                                gpu))
    return tuple(specs)


_KNOWN_KEYS = {"coordinator", "ollama", "model", "node_id", "workers", "metrics"}


def load_settings(home: Home, *, coordinator: str | None = None, ollama: tuple[str, ...] = (),
                  model: str | None = None, node_id: int | None = None,
                  workers: int | None = None, metrics: str | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """Resolve every setting from flags (the keyword arguments), environment and config.toml."""
    env = os.environ if env is None else env
    cfg = read_config(home.config)
    unknown = set(cfg) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"{home.config}: unknown settings {sorted(unknown)}; "
                          f"known ones are {sorted(_KNOWN_KEYS)}")
    sources: dict[str, str] = {}

    def pick(name: str, flag: Any, env_name: str, default: Any, flag_name: str = "") -> Any:
        for source, value in (("flag", flag), ("env", env.get(env_name) or None),
                              ("config", cfg.get(name)), ("default", default)):
            if value is not None and value != ():
                sources[name] = {"flag": flag_name or f"--{name.replace('_', '-')}",
                                 "env": env_name, "config": str(home.config),
                                 "default": "default"}[source]
                return value
        return None

    def check(name: str, validate: Any, value: Any) -> Any:
        """Validate `value`; an error names where the value came from (flag, variable, file)."""
        try:
            return validate(value)
        except ConfigError as e:
            raise ConfigError(f"{sources[name]}: {e}") from None

    coord = check("coordinator", _coordinator_text,
                  pick("coordinator", coordinator, ENV_COORDINATOR, DEFAULT_COORDINATOR))
    mdl = check("model", _model_name, pick("model", model, ENV_MODEL, DEFAULT_MODEL))
    nid = pick("node_id", node_id, ENV_NODE_ID, None)
    if nid is not None:
        nid = check("node_id", lambda v: _positive_int(v, "the node id", MAX_NODE_ID), nid)
    where = pick("metrics", metrics, ENV_METRICS, None)
    exporter = check("metrics", parse_metrics_address, where) if where is not None else None
    per_endpoint = pick("slots", workers, ENV_WORKERS, None, "--workers")  # no config key
    if per_endpoint is not None:
        per_endpoint = check("slots", lambda v: _positive_int(
            v, "the worker count per Ollama", MAX_SLOTS), per_endpoint)

    if not ollama and not env.get(ENV_OLLAMA) and "workers" in cfg:
        sources["ollama"] = str(home.config)
        specs = _config_workers(cfg["workers"], home.config)
        if per_endpoint:
            specs = tuple(WorkerSpec(s.ollama, per_endpoint, s.gpu) for s in specs)
    else:
        hosts = pick("ollama", tuple(ollama), ENV_OLLAMA, DEFAULT_OLLAMA)
        specs = check("ollama", lambda v: tuple(WorkerSpec(parse_ollama_host(h), per_endpoint or 1)
                                                for h in _host_list(v)), hosts)
    return Settings(home=home, coordinator=coord, model=mdl, node_id=nid, workers=specs,
                    metrics=exporter)


def _coordinator_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"the coordinator must be a URL string, not {value!r}")
    return check_coordinator(value)


def _model_name(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[\w./:-]+", value):
        raise ConfigError(f"model name {value!r} is not a valid Ollama model name (e.g. llama3.2)")
    return value


def _host_list(value: Any) -> list[str]:
    hosts = [value] if isinstance(value, str) else value
    if not isinstance(hosts, (list, tuple)) or not hosts or \
            not all(isinstance(h, str) for h in hosts):
        raise ConfigError("'ollama' must be an address or a non-empty list of addresses")
    return list(hosts)


CONFIG_TEMPLATE = """\
# parallelix-node settings. A flag beats an environment variable, which beats this file.
# coordinator = "{coordinator}"      # PARALLELIX_COORDINATOR
# ollama = "{ollama}"                # OLLAMA_HOST; a list for one Ollama per GPU
# model = "{model}"                  # PARALLELIX_MODEL
# node_id = 4231                     # saved by `start --node-id N` once attached
# metrics = "127.0.0.1:9464"         # PARALLELIX_METRICS; serve /metrics (README, "Monitoring a fleet")
#
# One Ollama per GPU (see README, "Several GPUs"):
# [[workers]]
# ollama = "http://127.0.0.1:11435"
# slots = 1
# gpu = 0
"""


def write_default_config(home: Home) -> None:
    """Write the commented template unless a config.toml already exists."""
    if not home.config.exists():
        text = CONFIG_TEMPLATE.format(coordinator=DEFAULT_COORDINATOR, ollama=DEFAULT_OLLAMA,
                                      model=DEFAULT_MODEL)
        write_atomic(home.config, text.encode(), mode=0o600)


def _toml_value(value: int | str | tuple[str, ...] | list[str]) -> str:
    """A TOML literal for an int, a string or a list of strings (JSON's string escapes are
    TOML's basic-string escapes)."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"


REMEMBERED = ("node_id", "coordinator", "ollama", "model", "metrics")


def config_values(settings: Settings, names: Any) -> dict[str, Any]:
    """The resolved values of `names` (from REMEMBERED) as config.toml keys: one Ollama as a
    string, several as a list."""
    endpoints = tuple(dict.fromkeys(w.ollama for w in settings.workers))
    values = {"node_id": settings.node_id, "coordinator": settings.coordinator,
              "ollama": endpoints[0] if len(endpoints) == 1 else endpoints,
              "model": settings.model,
              "metrics": str(settings.metrics) if settings.metrics else None}
    return {k: values[k] for k in REMEMBERED if k in names and values[k] is not None}


def remember(home: Home, values: dict[str, Any]) -> list[str]:
    """Set top-level keys of config.toml (those in REMEMBERED), keeping
    the operator's other lines and comments; a key already set is replaced in place, a new one
    goes before the first [table]. The result is parsed back: a file this cannot edit safely
    is left alone with a ConfigError naming the lines to write by hand. Returns notes: an
    Ollama address is not written where [[workers]] tables decide the endpoints."""
    cfg = read_config(home.config)
    notes = []
    if "ollama" in values and "workers" in cfg:
        values = {k: v for k, v in values.items() if k != "ollama"}
        notes.append(f"the Ollama address was not saved: the [[workers]] tables in "
                     f"{home.config} choose the endpoints; edit them instead")
    if not values:
        return notes
    try:
        text = home.config.read_text()
    except FileNotFoundError:
        text = ""
    table = re.search(r"^\s*\[", text, re.M)
    head, tail = (text[:table.start()], text[table.start():]) if table else (text, "")
    for key, value in values.items():
        line = f"{key} = {_toml_value(value)}"
        pattern = re.compile(rf"^{key}[ \t]*=[ \t]*(?:\[[^\]]*\]|[^\n]*)", re.M)
        if pattern.search(head):
            head = pattern.sub(lambda _: line, head, count=1)
        else:
            if head and not head.endswith("\n"):
                head += "\n"
            head += line + "\n"
    new = head + tail
    try:
        parsed = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        parsed = {}
    if any(parsed.get(k) != (list(v) if isinstance(v, tuple) else v) for k, v in values.items()):
        wanted = "; ".join(f"{k} = {_toml_value(v)}" for k, v in values.items())
        raise ConfigError(f"could not update {home.config} safely; write these settings into "
                          f"it by hand: {wanted}")
    write_atomic(home.config, new.encode(), mode=0o600)
    return notes
