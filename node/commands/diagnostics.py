"""The checks `verify` runs: each gives a pass/fail line, what was seen, and the fix.

Independent of click, so the daemon (or a future `doctor --watch`) can run the same checks.
Nothing here prints or returns key material: the key check reports only the address."""
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.commands.cliopts import human_bytes
from node.errors import ConfigError
from node.home import Home
from node.keyfile import foreign_owner, missing_key, not_a_regular_file

MAX_SKEW_MS = 30_000          # signed messages expire at 60 s; fail at half of that
MIN_FREE_BYTES = 1 << 30      # 1 GiB under the home (outbox, log, state)
MIN_PYTHON = (3, 10)
COORDINATOR_TIMEOUT_S = 10.0
DISTRIBUTION = "parallelix-node"
TOP_LEVEL = ("node", "workers", "ipc")   # the wheel's packages; unrelated PyPI projects share the names
OWN_ENVIRONMENT_FIX = ("reinstall parallelix-node in an environment of its own: "
                       "the installer (install.sh), pipx install parallelix-node, or a venv "
                       "used for nothing else")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False     # not run because a check it depends on failed (ok is then False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.skipped:
            d.pop("skipped")
        return d


def skipped(name: str, why: str) -> Check:
    return Check(name, False, f"not checked: {why}", None, skipped=True)


def check_python() -> Check:
    v = sys.version_info
    have = f"{v.major}.{v.minor}.{v.micro}"
    if (v.major, v.minor) >= MIN_PYTHON:
        return Check("python", True, f"Python {have}")
    return Check("python", False, f"Python {have} is too old (3.10 or newer is required)",
                 "install Python 3.10 or newer and reinstall parallelix-node with it")


def check_packages() -> Check:
    """`node`, `workers` and `ipc` are this distribution's: found beside the running code, claimed
    by no other installed distribution, and (in a wheel install) unchanged since it was installed.
    PyPI has unrelated `node`, `workers` and `ipc` projects that overwrite them in a shared env."""
    import base64
    import hashlib
    import importlib.metadata as metadata
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    problems = []
    for name in TOP_LEVEL:
        spec = importlib.util.find_spec(name)
        where = Path(spec.origin).resolve().parent if spec and spec.origin else None
        if where != root / name:
            problems.append(f"{name} resolves to {where or 'nothing'}, not to {root / name}")
    claims = metadata.packages_distributions()
    others = sorted({d for name in TOP_LEVEL for d in claims.get(name, ()) if d != DISTRIBUTION})
    for other in others:
        names = [n for n in TOP_LEVEL if other in claims.get(n, ())]
        problems.append(f"the distribution {other} {metadata.version(other)} also installs "
                        f"{', '.join(names)} in this environment")
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.hash is None or f.parts[0] not in TOP_LEVEL or f.hash.mode != "sha256":
            continue
        try:
            digest = hashlib.sha256(f.locate().read_bytes()).digest()
        except OSError:
            problems.append(f"{f} is missing")
            continue
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != f.hash.value:
            problems.append(f"{f} is not the file {DISTRIBUTION} installed")
    if problems:
        return Check("packages", False, "; ".join(problems), OWN_ENVIRONMENT_FIX)
    return Check("packages", True, f"{', '.join(TOP_LEVEL)} from {root}")


def check_key_file(home: Home) -> list[Check]:
    """Present; 0600 and owned by us in a 0700 folder; loadable; the address state.json records."""
    path = home.key
    try:
        st = path.stat()
    except FileNotFoundError:
        return [Check("key", False, *missing_key(home)),
                skipped("key-permissions", "no key"), skipped("key-loadable", "no key")]
    except OSError as e:
        return [Check("key", False, f"cannot stat {path}: {e.strerror}",
                      f"check the permissions of {path.parent}"),
                skipped("key-permissions", "no key"), skipped("key-loadable", "no key")]
    kind = not_a_regular_file(st)
    if kind:
        return [Check("key", False, f"{path} is {kind}, not a key file",
                      "move it aside and restore the key from your backup, or run "
                      "parallelix-node init --force"),
                skipped("key-permissions", "no key file"), skipped("key-loadable", "no key file")]
    checks = [Check("key", True, f"{path}")]

    problems, fixes = [], []
    owner = foreign_owner(path, st)
    if owner:
        problems.append(owner[0])
        fixes.append(owner[1])
    if st.st_mode & 0o077:
        problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: others can read it")
        fixes.append(f"chmod 600 {path}")
    folder = path.parent.stat()
    if folder.st_mode & 0o077:
        problems.append(f"{path.parent} has mode {stat.S_IMODE(folder.st_mode):04o}: "
                        "others can enter it")
        fixes.append(f"chmod 700 {path.parent}")
    if problems:
        checks.append(Check("key-permissions", False, "; ".join(problems), " && ".join(fixes)))
        checks.append(skipped("key-loadable", "the daemon refuses a key others can read; "
                                              "fix the permissions first"))
        return checks
    checks.append(Check("key-permissions", True, "key 0600, folder 0700"))
    checks.append(_check_key_loads(home))
    return checks


def _check_key_loads(home: Home) -> Check:
    from node.identity import address_of, node_key_hash
    from node.keyfile import read_key
    from node.state import read_state, update_state

    try:
        address = address_of(read_key(home))
    except ConfigError:
        return Check("key-loadable", False,
                     f"{home.key} does not hold a valid key (expected 0x + 64 hex digits)",
                     f"restore {home.key} from your backup, or make a new node with "
                     "parallelix-node init --force (the old node is then orphaned)")
    except ValueError:
        return Check("key-loadable", False, f"{home.key} holds a value that is not a valid "
                     "secp256k1 key", f"restore {home.key} from your backup, or run "
                     "parallelix-node init --force")
    recorded = read_state(home).get("address")
    if recorded is None:
        update_state(home, address=address, nodeKeyHash=node_key_hash(address))
        return Check("key-loadable", True, f"address {address} (recorded in state.json)")
    if recorded != address:
        return Check("key-loadable", False,
                     f"the key's address {address} is not the one init recorded ({recorded})",
                     f"restore the node.key that belongs to this home, or remove {home.state} "
                     "to adopt this key (verify then records it)")
    return Check("key-loadable", True, f"address {address}")


def check_ollama(base: str, model: str) -> list[Check]:
    """Reachable, its version, and the configured model pulled there."""
    from workers.ollama import OllamaError, get_version, has_model, list_models, session

    http = session()
    flag = "" if base == "http://127.0.0.1:11434" else f" --ollama {base}"
    try:
        version = get_version(base, http)
    except OllamaError as e:
        fix = ("point --ollama / OLLAMA_HOST at Ollama (something else answered there)"
               if e.status else "start Ollama (ollama serve, or: sudo systemctl start ollama), "
               "or point --ollama / OLLAMA_HOST at it")
        return [Check("ollama", False, str(e), fix),
                skipped("model", f"Ollama at {base} is not reachable")]
    checks = [Check("ollama", True, f"Ollama {version} at {base}")]
    try:
        models = list_models(base, http)
    except OllamaError as e:
        return checks + [Check("model", False, str(e), "check Ollama's log: journalctl -u ollama")]
    if has_model(models, model):
        checks.append(Check("model", True, f"{model} is pulled at {base}"))
    else:
        checks.append(Check("model", False, f"{model} is not pulled at {base}",
                            f"parallelix-node models pull {model}{flag}"))
    return checks


def check_coordinator(home: Home, url: str) -> list[Check]:
    """GET /network: reachable with latency; clock skew from its Date header; caches the answer
    (contracts, chainId, version) in state.json for `status`."""
    from node.coordinator import Coordinator, CoordinatorError, now_ms
    from node.state import record_network

    try:
        info = Coordinator(url, timeout=COORDINATOR_TIMEOUT_S).network()
    except CoordinatorError as e:
        fix = ("the server answered but not as a ParalleliX coordinator: check the --coordinator "
               "URL (PARALLELIX_COORDINATOR, config.toml), including its path (/api)"
               if e.status else "check the network, DNS and firewall, or the --coordinator URL "
               "(PARALLELIX_COORDINATOR, config.toml)")
        return [Check("coordinator", False, str(e), fix),
                skipped("clock", "the coordinator is not reachable")]
    received = now_ms()
    detail = f"{url} answered in {info.latency_ms} ms"
    extras = [f"{k} {v}" for k, v in (("version", info.version), ("chainId", info.chain_id))
              if v is not None]
    checks = [Check("coordinator", True, detail + (f" ({', '.join(extras)})" if extras else ""))]
    if home.root.is_dir():
        record_network(home, url, info, received)
    if info.server_time_ms is None:
        checks.append(Check("clock", True, "not measured: the coordinator sent no Date header"))
        return checks
    # Date has whole seconds: the server's clock was within [t, t+1 s) while the answer left,
    # which happened about half the round trip before we got it.
    skew = info.server_time_ms + 500 - (received - info.latency_ms // 2)
    text = f"this clock is {abs(skew) / 1000:.1f} s {'behind' if skew > 0 else 'ahead of'} " \
           f"the coordinator's (±1 s)"
    if abs(skew) > MAX_SKEW_MS:
        checks.append(Check("clock", False, text + "; signed messages expire after 60 s",
                            "enable time sync: sudo timedatectl set-ntp true (Linux) / "
                            "sudo sntp -sS time.apple.com (macOS)"))
    else:
        checks.append(Check("clock", True, text))
    return checks


def check_disk(home: Home, minimum: int = MIN_FREE_BYTES) -> Check:
    where: Path = home.root
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError as e:
        return Check("disk", False, f"cannot measure free space at {where}: {e.strerror}", None)
    text = f"{human_bytes(free)} free at {where}"
    if free < minimum:
        return Check("disk", False, f"{text} (below {human_bytes(minimum)})",
                     f"free space on the filesystem of {where} (old logs: rm {home.log}.*; "
                     "unused models: ollama rm NAME)")
    return Check("disk", True, text)


SLOW_S = 1.0                  # say what verify waits for once a check takes longer


def run_all(home: Home, settings: Any,
            waiting: Callable[[str], None] = lambda _: None) -> list[Check]:
    """Every check, in the order `verify` prints them (Ollama and the coordinator in parallel).
    `waiting` hears, once, what is still unanswered after SLOW_S seconds."""
    from concurrent.futures import ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=4) as pool:
        coordinator = pool.submit(check_coordinator, home, settings.coordinator)
        endpoints = list(dict.fromkeys(w.ollama for w in settings.workers))
        ollamas = [pool.submit(check_ollama, base, settings.model) for base in endpoints]
        checks = [check_python(), check_packages(), *check_key_file(home)]
        _, late = wait([coordinator, *ollamas], timeout=SLOW_S)
        names = [f"the coordinator at {settings.coordinator} (up to "
                 f"{COORDINATOR_TIMEOUT_S:.0f} s)" if f is coordinator else
                 f"Ollama at {endpoints[ollamas.index(f)]}" for f in late]
        if names:
            waiting(f"waiting for {' and '.join(names)}…")
        for f in ollamas:
            checks += f.result()
        checks += coordinator.result()
    checks.append(check_disk(home))
    return checks
