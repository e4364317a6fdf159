"""`probe`: what this machine can offer the network (hardware, Ollama) and the tier it claims."""
from typing import Any

import click

from node.commands.clikit import common_options, emit
from node.machine.hardware import Gpu, Hardware, probe_hardware
from node.home import Home
from node.settings import load_settings
from node.machine.tier import gpu_memory_mib, tier_for, tier_memory_gib
from workers.ollama import OllamaError, get_version, list_models, session


@click.command("probe")
@click.option("--cpu", "cpu_only", is_flag=True, help="Claim tier 1 (CPU only), whatever the GPUs.")
@click.option("--ollama", "ollama_url", metavar="URL",
              help="Ollama address [env OLLAMA_HOST; default http://127.0.0.1:11434].")
@common_options
def cmd(home: Home, as_json: bool, cpu_only: bool, ollama_url: str | None) -> None:
    """Detect CPU, RAM, GPUs and Ollama, and show the tier this node claims.

    A detection tool that is missing, fails or hangs is listed under problems; probe still
    answers and exits 0. In an initialised home the tier is recorded for `status`.
    """
    url = load_settings(home, ollama=(ollama_url,) if ollama_url else ()).ollama
    hw = probe_hardware()
    ollama = probe_ollama(url)
    tier = tier_for(hw, cpu_only)
    if home.state.exists():  # `status` shows it; the daemon records the tier it attached with
        from node.state import update_state
        update_state(home, tier=tier)
    emit(as_json, document(hw, tier, ollama), lines(hw, tier, ollama, cpu_only))


def probe_ollama(url: str) -> dict[str, Any]:
    """Version and local models of the Ollama at `url`; a failure goes into "error"."""
    doc: dict[str, Any] = {"url": url, "reachable": False, "version": None, "models": [],
                           "error": None}
    http = session()
    try:
        doc["version"] = get_version(url, http)
        doc["reachable"] = True
        doc["models"] = [m["name"] for m in list_models(url, http)]
    except OllamaError as e:
        doc["error"] = str(e)
    return doc


def document(hw: Hardware, tier: int, ollama: dict[str, Any]) -> dict[str, Any]:
    """The --json answer, with the manifest's camelCase names (PROTOCOL.md, attach)."""
    return {"os": hw.os, "arch": hw.arch, "cpu": {"brand": hw.cpu_brand, "cores": hw.cpu_cores},
            "ramMiB": hw.ram_mib,
            "gpus": [{"index": g.index, "vendor": g.vendor, "name": g.name, "vramMiB": g.vram_mib,
                      "uuid": g.uuid} for g in hw.gpus],
            "tier": tier, "ollama": ollama, "problems": list(hw.problems)}


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f} GiB"


def _gpu_text(g: Gpu) -> str:
    memory = f"{_gib(g.vram_mib)} unified" if g.vendor == "apple" else _gib(g.vram_mib)
    return ", ".join(filter(None, (f"{g.name} ({g.vendor})", memory, g.uuid)))


def _tier_reason(hw: Hardware, cpu_only: bool) -> str:
    if cpu_only:
        return "--cpu"
    if hw.apple_silicon:
        return f"Apple Silicon, {tier_memory_gib(hw)} GiB unified memory"
    return f"{tier_memory_gib(hw)} GiB GPU memory" if gpu_memory_mib(hw) else "no GPU found"


def _ollama_text(ollama: dict[str, Any]) -> str:
    if not ollama["reachable"]:
        return ollama["error"]
    models = ollama["models"]
    text = f"{ollama['version']} at {ollama['url']}, " + (
        f"{len(models)} models: {', '.join(models)}" if models else "no models pulled")
    return f"{text}; {ollama['error']}" if ollama["error"] else text


def lines(hw: Hardware, tier: int, ollama: dict[str, Any], cpu_only: bool) -> list[str]:
    """A short table for people."""
    rows = [("OS", f"{hw.os} ({hw.arch})"),
            ("CPU", f"{hw.cpu_brand or 'unknown'}, {hw.cpu_cores} cores"),
            ("RAM", _gib(hw.ram_mib))]
    rows += [(f"GPU {g.index}", _gpu_text(g)) for g in hw.gpus] or [("GPUs", "none found")]
    rows += [("Tier", f"{tier} ({_tier_reason(hw, cpu_only)})"), ("Ollama", _ollama_text(ollama))]
    rows += [("Problem", p) for p in hw.problems]
    return [f"{label:<9} {text}" for label, text in rows]
