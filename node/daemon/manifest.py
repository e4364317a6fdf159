"""The signed capability manifest sent at attach, and its canonical hash (PROTOCOL.md)."""
import hashlib
import json
from typing import Any

from node.machine.hardware import Hardware
from node.version import cli_version


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no insignificant whitespace, UTF-8 with non-ASCII unescaped, no newline."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def manifest_hash(manifest: dict[str, Any]) -> str:
    return "0x" + hashlib.sha256(canonical_json(manifest)).hexdigest()


def build_manifest(hw: Hardware, tier: int, models: list[str], slots: int,
                   ollama_version: str | None) -> dict[str, Any]:
    """Only strings, integers, booleans, null, arrays and objects: the protocol forbids floats."""
    return {
        "cliVersion": cli_version(),
        "os": hw.os,
        "arch": hw.arch,
        "tier": tier,
        "cpu": {"brand": hw.cpu_brand, "cores": hw.cpu_cores},
        "ramMiB": hw.ram_mib,
        "gpus": [{"index": g.index, "vendor": g.vendor, "name": g.name, "vramMiB": g.vram_mib}
                 for g in hw.gpus],
        "models": sorted(set(models)),
        "workers": slots,
        "ollama": {"version": ollama_version},
    }
