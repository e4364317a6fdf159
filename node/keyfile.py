"""The node key file: 0x-hex secret, mode 0600 in a 0700 folder, checked the way ssh checks keys."""
import os
import stat
from pathlib import Path

from node.atomic import write_atomic
from node.errors import ConfigError


def write_key(path: Path, secret: bytes) -> None:
    """Write the secret atomically with mode 0600 (the folder must already be 0700)."""
    write_atomic(path, ("0x" + secret.hex() + "\n").encode(), mode=0o600)


def check_key_permissions(path: Path) -> None:
    """Refuse a key that group or others can reach, naming the chmod that fixes it."""
    st = path.stat()
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
    if len(secret) != 32 or not any(secret):
        raise ConfigError(f"the node key {path} is corrupt (expected 0x + 64 hex digits); "
                          "restore it from backup or run: parallelix-node init --force")
    return secret


def key_exists(path: Path) -> bool:
    return os.path.lexists(path)
