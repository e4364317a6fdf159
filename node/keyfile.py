"""The node key file: 0x-hex secret, mode 0600 in a 0700 folder, checked the way ssh checks keys."""
import os
import stat
from pathlib import Path

from node.atomic import write_atomic
from node.errors import ConfigError


def write_key(path: Path, secret: bytes) -> None:
    """Write the secret atomically with mode 0600 (the folder must already be 0700)."""
    write_atomic(path, ("0x" + secret.hex() + "\n").encode(), mode=0o600)


# secp256k1's group order: a secret must lie in 1 .. N-1.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def not_a_regular_file(st: os.stat_result) -> str | None:
    """What the key path is when it is not a plain file (reading a FIFO would hang)."""
    if stat.S_ISREG(st.st_mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(st.st_mode)), "not a regular file")


def check_key_permissions(path: Path) -> None:
    """Refuse what is not a plain file, and a key that group or others can reach (naming the
    chmod that fixes it)."""
    st = path.stat()
    kind = not_a_regular_file(st)
    if kind:
        raise ConfigError(f"{path} is {kind}, not a key file; move it aside and restore the key "
                          "from your backup, or run: parallelix-node init --force")
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


def read_key(path: Path) -> bytes:
    """The 32-byte secret, after the permission check; errors never quote the file's content."""
    try:
        check_key_permissions(path)
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ConfigError(f"no node key at {path}; run: parallelix-node init") from None
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
