"""The node key file: 0x-hex secret, mode 0600 in a 0700 folder, checked the way ssh checks keys."""
import os
import stat
from pathlib import Path

from node.atomic import write_atomic
from node.errors import ConfigError
from node.home import Home
from node.state import read_state


def write_key(path: Path, secret: bytes) -> None:
    """Write the secret atomically with mode 0600 (the folder must already be 0700)."""
    write_atomic(path, ("0x" + secret.hex() + "\n").encode(), mode=0o600)


# secp256k1's group order: a secret must lie in 1 .. N-1.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_KEY_BYTES = 4096  # a key file holds 0x + 64 hex digits and maybe a newline


def not_a_regular_file(st: os.stat_result) -> str | None:
    """What the key path is when it is not a plain file (reading a FIFO would hang)."""
    if stat.S_ISREG(st.st_mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(st.st_mode)), "not a regular file")


def missing_key(home: Home) -> tuple[str, str]:
    """(problem, fix) for a missing node.key, for every command that needs it. A home that
    remembers an address was a node: a new key would orphan it, so restoring comes first."""
    saved = read_state(home)
    address = saved.get("address") if isinstance(saved.get("address"), str) else None
    if address is None:
        return f"no node key at {home.key}", "parallelix-node init"
    node_id = saved.get("nodeId")
    was = f"node {node_id} ({address})" if isinstance(node_id, int) else f"the node {address}"
    return (f"{home.key.name} is missing; this home was {was}",
            f"restore {home.key} from your backup, or run `parallelix-node init --force` to "
            "start over as a new node")


def missing_key_advice(home: Home) -> str:
    """`missing_key` as one line."""
    problem, fix = missing_key(home)
    return f"{problem}; run: {fix}" if fix.startswith("parallelix-node") else f"{problem}: {fix}"


def foreign_owner(path: Path, st: os.stat_result) -> tuple[str, str] | None:
    """(problem, fix) when the key belongs to another account: chown it back, never replace it
    (a new key would orphan the node)."""
    if st.st_uid == os.getuid():
        return None
    return (f"{path} belongs to uid {st.st_uid}, not you (uid {os.getuid()})",
            f"sudo chown {os.getuid()} {path}")


def check_key_permissions(path: Path) -> None:
    """Refuse what is not a plain file, a key owned by someone else (naming the chown), and a
    key that group or others can reach (naming the chmod that fixes it)."""
    st = path.stat()
    kind = not_a_regular_file(st)
    if kind:
        raise ConfigError(f"{path} is {kind}, not a key file; move it aside and restore the key "
                          "from your backup, or run: parallelix-node init --force")
    owner = foreign_owner(path, st)
    if owner:
        raise ConfigError(f"{owner[0]}; run: {owner[1]}")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path} is accessible by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    folder = path.parent.stat()
    if folder.st_mode & 0o077:
        raise ConfigError(
            f"{path.parent} is accessible by others (mode {stat.S_IMODE(folder.st_mode):04o}); "
            f"run: chmod 700 {path.parent}"
        )


def read_key(home: Home) -> bytes:
    """The 32-byte secret, after the permission check; errors never quote the file's content."""
    path = home.key
    try:
        check_key_permissions(path)
        with open(path, "rb") as f:
            raw = f.read(MAX_KEY_BYTES + 1)  # a key is 66 characters: never read a huge file
        text = raw.decode("ascii").strip() if len(raw) <= MAX_KEY_BYTES else ""
    except FileNotFoundError:
        raise ConfigError(missing_key_advice(home)) from None
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"cannot read the node key {path} ({type(e).__name__}); "
                          "restore it from backup or run: parallelix-node init --force") from None
    hexpart = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        secret = bytes.fromhex(hexpart)
    except ValueError:
        secret = b""
    if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
        raise ConfigError(f"the node key {path} is corrupt (expected 0x + 64 hex digits); "
                          "restore it from backup or run: parallelix-node init --force")
    return secret


def key_exists(path: Path) -> bool:
    return os.path.lexists(path)
