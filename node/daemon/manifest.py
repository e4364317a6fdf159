"""The signed capability manifest sent at attach, and its canonical hash (PROTOCOL.md)."""
import hashlib
import json
from dataclasses import dataclass, field
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


@dataclass
class OllamaSurvey:
    """What the configured Ollama endpoints say now: the manifest's `ollama.version` (None when
    none answered) and `models`, and what is wrong, per endpoint, for the log."""
    version: str | None = None
    models: list[str] = field(default_factory=list)
    down: dict[str, str] = field(default_factory=dict)        # endpoint -> why it is not usable
    missing_model: list[str] = field(default_factory=list)    # endpoints without the model


def survey_ollama(endpoints: list[str], model: str) -> OllamaSurvey:
    """Ask every endpoint for its version and models (blocking HTTP with timeouts)."""
    from workers.ollama import OllamaError, get_version, has_model, list_models
    survey = OllamaSurvey()
    for endpoint in endpoints:
        try:
            version = get_version(endpoint)
            found = list_models(endpoint)
        except OllamaError as e:
            survey.down[endpoint] = str(e)
            continue
        survey.version = survey.version or version
        survey.models += [m["name"] for m in found]
        if not has_model(found, model):
            survey.missing_model.append(endpoint)
    return survey


def with_ollama(manifest: dict[str, Any], survey: OllamaSurvey, slots: int) -> dict[str, Any]:
    """`manifest` with the Ollama facts and slot count of now (PROTOCOL.md: a node whose
    Ollama does not answer attaches with `ollama.version` null and `models` empty)."""
    return {**manifest, "models": sorted(set(survey.models)), "workers": slots,
            "ollama": {"version": survey.version}}
