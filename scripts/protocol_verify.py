"""PROTOCOL.md checks from the coordinator's side, written independently of node/identity.py.

Recovery goes through eth_keys (not coincurve, not the node's Signer), hashing through
hashlib and eth_hash, so a bug in the node's signing code cannot hide itself here.
Every function is pure; nothing in this module knows about HTTP or coordinator state.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from eth_hash.auto import keccak
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError
from eth_utils import to_checksum_address

SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}")
TIMESTAMP_TOLERANCE_MS = 60_000


class SignatureFormatError(ValueError):
    """The signature is not 0x + 130 hex with v in {27, 28}, or recovers no key."""


# --- signed texts (PROTOCOL.md, "Signatures") ---------------------------------------------

def attach_text(node_id: int, timestamp: int, manifest_hash: str) -> str:
    return f"parallelix-node:attach:{node_id}:{timestamp}:{manifest_hash}"


def heartbeat_text(node_id: int, timestamp: int) -> str:
    return f"parallelix-node:heartbeat:{node_id}:{timestamp}"


def inbox_text(node_id: int, timestamp: int) -> str:
    return f"parallelix-node:inbox:{node_id}:{timestamp}"


def result_text(request_id: str) -> str:
    return f"parallelix-node:result:{request_id}"


def poe_text(request_id: str, poe: str) -> str:
    return f"parallelix-node:poe:{request_id}:{poe}"


def error_text(request_id: str, code: str) -> str:
    return f"parallelix-node:error:{request_id}:{code}"


# --- identity -------------------------------------------------------------------------------

def key_hash_of_address(address: str) -> str:
    """nodeKeyHash = keccak256(20 raw address bytes), 0x + 64 lowercase hex."""
    if not ADDRESS_RE.fullmatch(address):
        raise ValueError(f"not an address (0x + 40 hex): {address!r}")
    return "0x" + keccak(bytes.fromhex(address[2:])).hex()


def normalize_key_hash(address_or_hash: str) -> str:
    """Accept an address (converted) or a nodeKeyHash (lower-cased)."""
    if ADDRESS_RE.fullmatch(address_or_hash):
        return key_hash_of_address(address_or_hash)
    if HASH_RE.fullmatch(address_or_hash):
        return address_or_hash.lower()
    raise ValueError(f"expected an address (0x + 40 hex) or a nodeKeyHash (0x + 64 hex): {address_or_hash!r}")


def is_checksum_address(address: str) -> bool:
    return bool(ADDRESS_RE.fullmatch(address)) and to_checksum_address(address) == address


def eip191_hash(text: str) -> bytes:
    """keccak256("\\x19Ethereum Signed Message:\\n" + len + message), message = UTF-8 text."""
    data = text.encode("utf-8")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode("ascii") + data)


def signature_parts(signature: str) -> tuple[int, int, int]:
    """(v, r, s) of a 0x + 130 hex signature with v in {27, 28}; SignatureFormatError if not.
    The cheap half of verification: no elliptic-curve work."""
    if not SIGNATURE_RE.fullmatch(signature):
        raise SignatureFormatError("signature must be 0x + 130 hex (r || s || v)")
    raw = bytes.fromhex(signature[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v not in (27, 28):
        raise SignatureFormatError(f"v must be 27 or 28, got {v}")
    return v, r, s


def recover_address(text: str, signature: str) -> str:
    """EIP-55 address of the key that personal-signed `text`; SignatureFormatError if garbled."""
    v, r, s = signature_parts(signature)
    try:
        sig = keys.Signature(vrs=(v - 27, r, s))
        return sig.recover_public_key_from_msg_hash(eip191_hash(text)).to_checksum_address()
    except (BadSignature, ValidationError, ValueError) as exc:
        raise SignatureFormatError(f"signature recovers no key: {exc}") from exc


# --- manifest and proof of execution -------------------------------------------------------

def canonical_json(value: Any) -> bytes:
    """Keys sorted, no whitespace, non-ASCII kept as UTF-8, no trailing newline."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_hash(manifest: dict[str, Any]) -> str:
    return "0x" + hashlib.sha256(canonical_json(manifest)).hexdigest()


def find_float(value: Any, path: str = "manifest") -> str | None:
    """Path of the first floating-point number inside `value`, or None."""
    if isinstance(value, float):
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for key, child in items:
        sub = f"{path}{key}" if str(key).startswith("[") else f"{path}.{key}"
        found = find_float(child, sub)
        if found:
            return found
    return None


def expected_poe(request_id: str, result: str, node_id: int) -> str:
    """0x + sha256(utf8(requestId) || utf8(result) || utf8(decimal(nodeId)))."""
    data = request_id.encode("utf-8") + result.encode("utf-8") + str(node_id).encode("ascii")
    return "0x" + hashlib.sha256(data).hexdigest()
