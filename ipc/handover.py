"""What a child process receives over its stdin pipe when the supervisor spawns it.

The pipe is the one channel only the supervisor holds: not a socket another process of the
operator's user could connect to, not argv or the environment (readable in /proc). Each spawn
gets a fresh random identity, which the child uses as its ZeroMQ routing id; the supervisor
accepts work and heartbeat messages only from the identity it handed out (ROUTER_HANDOVER is
off, so nobody can take a route over). The heartbeat child also receives the signing key."""
import secrets
from typing import BinaryIO


class HandoverError(Exception):
    """The stdin pipe did not carry what the supervisor hands over."""


def new_identity() -> bytes:
    """128 random bits as 32 ASCII hex digits: a valid routing id (no leading zero byte)."""
    return secrets.token_hex(16).encode()


def read_handover(stream: BinaryIO, lines: int) -> list[bytes]:
    """Read `lines` non-empty lines from the stdin pipe, then close it."""
    try:
        got = [stream.readline(4096).strip() for _ in range(lines)]
    finally:
        stream.close()
    if not all(got):
        raise HandoverError("stdin did not carry the identity the supervisor hands over: "
                            "this process is started by `parallelix-node start`, not by hand")
    return got
