"""What hardware this machine offers: CPU, RAM and GPUs, for `probe` and the attach manifest.

Detection follows reference/ollama.md §6: nvidia-smi, rocm-smi (or amdgpu's sysfs files) and
sysctl. Every tool runs with a timeout, and a tool that is missing, fails, hangs or prints
something unreadable becomes one line in `Hardware.problems`, never an exception: the operator
always gets an answer, and the supervisor can always attach (as tier 1 at worst).
Tests swap the tools by putting fakes on PATH, and the sysfs tree with PARALLELIX_SYSFS_ROOT.
"""
import json
import os
import platform
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ENV_TIMEOUT = "PARALLELIX_PROBE_TIMEOUT"
ENV_SYSFS = "PARALLELIX_SYSFS_ROOT"
DEFAULT_TIMEOUT = 10.0
MIB = 1024 * 1024
# Ollama skips AMD GPUs with less VRAM than this as integrated (discover/gpu.go IGPUMemLimit):
# an APU's 512 MiB carve-out must not lift a discrete card into the next tier.
IGPU_LIMIT_MIB = 1024
T = TypeVar("T")

NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,uuid,name,memory.total",
              "--format=csv,noheader,nounits")
ROCM_SMI = ("rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json")


@dataclass(frozen=True)
class Gpu:
    """One GPU. For Apple Silicon `vram_mib` is the unified memory the GPU shares with the CPU."""

    index: int
    vendor: str  # "nvidia" | "amd" | "apple"
    name: str
    vram_mib: int
    uuid: str | None = None


@dataclass(frozen=True)
class Hardware:
    """What `probe_hardware` found; `problems` says which source could not be read, and why."""

    os: str
    arch: str
    cpu_brand: str
    cpu_cores: int
    ram_mib: int
    gpus: tuple[Gpu, ...]
    apple_silicon: bool
    problems: tuple[str, ...]


class ToolError(Exception):
    """A detection tool gave no usable answer; `str()` is the line for `Hardware.problems`."""


def tool_timeout() -> float:
    """Seconds each tool may take: 10, or PARALLELIX_PROBE_TIMEOUT (tests make it short)."""
    try:
        value = float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def run_tool(*argv: str, name: str | None = None) -> str:
    """Run a program found on PATH and return its stdout, or raise ToolError.

    It gets its own process group so that a hung tool and whatever it started die together.
    """
    name = name or argv[0]
    timeout = tool_timeout()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise ToolError(f"{name} not found on PATH") from None
    except OSError as e:
        raise ToolError(f"{name} could not be started: {e.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ToolError(f"{name} gave no answer within {timeout:g} s and was stopped") from None
    stdout = out.decode(errors="replace")
    if proc.returncode != 0:
        detail = _first_line(err.decode(errors="replace")) or _first_line(stdout) or "no message"
        raise ToolError(f"{name} failed (exit status {proc.returncode}): {detail}")
    return stdout


def _stop(proc: subprocess.Popen) -> None:
    """Kill the tool's process group; one stuck in the kernel (nvidia-smi on a wedged driver)
    cannot die, so it is waited for briefly and then left behind rather than hanging `probe`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def _first_line(text: str) -> str:
    return next((line.strip()[:200] for line in text.splitlines() if line.strip()), "")


_NVIDIA_LINE = re.compile(r"\s*(\d+),\s*(\S+),\s*(.+?),\s*(\d+)\s*", re.ASCII)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """GPUs from `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`
    (memory in MiB). Raises ValueError on the first line not in that shape: its output format
    is not guaranteed stable, so a surprise must be reported, not guessed around."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _NVIDIA_LINE.fullmatch(line)
        if not m:
            raise ValueError(f"unexpected line {line.strip()[:80]!r}")
        gpus.append(Gpu(int(m[1]), "nvidia", m[3], int(m[4]), m[2]))
    return tuple(gpus)


def _loose(key: str) -> str:
    """'VRAM Total Memory (B)' -> 'vramtotalmemoryb': ROCm releases differ in case and spacing."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


def parse_rocm_smi(text: str) -> tuple[Gpu, ...]:
    """GPUs from `rocm-smi --showproductname --showmeminfo vram --json` (VRAM in bytes).

    Keys are matched loosely (ROCm 5 prints "Card series", ROCm 6 "Card Series"), and warnings
    rocm-smi prints before the JSON are skipped. Raises ValueError when no card can be read.
    """
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the output")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except ValueError:
        raise ValueError("the output is not valid JSON") from None
    cards = sorted((int(m[1]), fields) for key, fields in doc.items()
                   if (m := re.fullmatch(r"card(\d+)", key)) and isinstance(fields, dict))
    if not cards:
        raise ValueError("no cardN entries in the JSON")
    return tuple(_rocm_card(index, fields) for index, fields in cards)


def _rocm_card(index: int, fields: dict) -> Gpu:
    loose = {_loose(k): v for k, v in fields.items()}
    total = next((v for k, v in loose.items() if "vram" in k and "total" in k and "used" not in k),
                 None)
    try:
        vram_mib = int(str(total)) // MIB
    except ValueError:
        raise ValueError(f"card{index} has no VRAM total") from None
    name = loose.get("cardseries") or loose.get("cardmodel") or "AMD GPU"
    return Gpu(index, "amd", str(name), vram_mib)


def read_sysfs_amd(sysfs_root: Path) -> tuple[Gpu, ...]:
    """AMD GPUs from amdgpu's `class/drm/cardN/device/mem_info_vram_total` (bytes), for hosts
    without rocm-smi (docs.kernel.org/gpu/amdgpu/driver-misc.html). Indexed in card order."""
    cards = sorted((int(m[1]), path) for path in (sysfs_root / "class" / "drm").glob("card*")
                   if (m := re.fullmatch(r"card(\d+)", path.name)))
    gpus: list[Gpu] = []
    for _, card in cards:
        try:
            vram = int((card / "device" / "mem_info_vram_total").read_text()) // MIB
        except (OSError, ValueError):
            continue
        gpus.append(Gpu(len(gpus), "amd", _sysfs_name(card / "device"), vram))
    return tuple(gpus)


def _sysfs_name(device: Path) -> str:
    for file, form in (("product_name", "{}"), ("device", "AMD GPU {}")):
        try:
            value = (device / file).read_text().strip()
        except OSError:
            continue
        if value:
            return form.format(value)
    return "AMD GPU"


def parse_meminfo(text: str) -> int:
    """MiB of RAM from /proc/meminfo's MemTotal (kB); ValueError if it is missing."""
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.M | re.ASCII)
    if not m:
        raise ValueError("no MemTotal line")
    return int(m[1]) // 1024


def parse_cpuinfo_brand(text: str) -> str:
    """The first 'model name' of /proc/cpuinfo, or '' (ARM kernels print none)."""
    m = re.search(r"^model name\s*:\s*(.+?)\s*$", text, re.M)
    return m[1] if m else ""


def parse_memsize(text: str) -> int:
    """MiB of RAM from `sysctl -n hw.memsize` (bytes); ValueError on anything else."""
    if not re.fullmatch(r"\s*\d+\s*", text, re.ASCII):
        raise ValueError(f"unexpected output {text.strip()[:80]!r}")
    return int(text) // MIB


def _os_name() -> str:
    return "darwin" if sys.platform == "darwin" else "linux" if sys.platform.startswith("linux") \
        else sys.platform


def probe_hardware(sysfs_root: Path | None = None) -> Hardware:
    """Detect this machine's hardware. Never raises for a tool or file that cannot be read."""
    if sys.platform == "darwin":
        return probe_macos()
    return probe_linux(sysfs_root or Path(os.environ.get(ENV_SYSFS) or "/sys"))


def probe_linux(sysfs_root: Path) -> Hardware:
    """/proc for CPU and RAM, nvidia-smi and rocm-smi (or sysfs) for GPUs."""
    problems: list[str] = []
    brand = _linux_cpu_brand(problems)
    ram = _read(lambda: parse_meminfo(Path("/proc/meminfo").read_text()), "/proc/meminfo", problems)
    gpus = _nvidia_gpus(problems) + _amd_gpus(sysfs_root, problems)
    return Hardware(os=_os_name(), arch=platform.machine(), cpu_brand=brand,
                    cpu_cores=os.cpu_count() or 1, ram_mib=ram or 0, gpus=gpus,
                    apple_silicon=False, problems=tuple(problems))


def probe_macos() -> Hardware:
    """sysctl for CPU and memory; on Apple Silicon the GPU is the chip, sharing that memory."""
    problems: list[str] = []
    brand = _read(lambda: run_tool("sysctl", "-n", "machdep.cpu.brand_string").strip(),
                  "sysctl machdep.cpu.brand_string", problems) or ""
    ram = _read(lambda: parse_memsize(run_tool("sysctl", "-n", "hw.memsize")), "sysctl hw.memsize",
                problems) or 0
    apple = brand.startswith("Apple ")
    gpus = (Gpu(0, "apple", brand, ram),) if apple and ram else ()
    return Hardware(os="darwin", arch=platform.machine(), cpu_brand=brand,
                    cpu_cores=os.cpu_count() or 1, ram_mib=ram, gpus=gpus, apple_silicon=apple,
                    problems=tuple(problems))


def _read(read: Callable[[], T], source: str, problems: list[str]) -> T | None:
    """Call `read()`; record why it failed in `problems` and return None instead of raising."""
    try:
        return read()
    except ToolError as e:
        problems.append(str(e))
    except OSError as e:
        problems.append(f"cannot read {source}: {e.strerror}")
    except ValueError as e:
        problems.append(f"{source} printed output that could not be read: {e}")
    return None


def _linux_cpu_brand(problems: list[str]) -> str:
    brand = _read(lambda: parse_cpuinfo_brand(Path("/proc/cpuinfo").read_text()), "/proc/cpuinfo",
                  problems)
    return brand or _read(_cpuinfo_brand, "py-cpuinfo", problems) or ""


def _cpuinfo_brand() -> str:
    """py-cpuinfo's brand, as a child process with the tool timeout: it takes about a second
    and runs other programs itself, so it runs only when /proc/cpuinfo names no model."""
    doc = json.loads(run_tool(sys.executable, "-m", "cpuinfo", "--json", name="py-cpuinfo"))
    brand = doc.get("brand_raw") if isinstance(doc, dict) else None
    if not isinstance(brand, str) or not brand.strip():
        raise ValueError("no brand_raw")
    return brand.strip()


def _nvidia_gpus(problems: list[str]) -> tuple[Gpu, ...]:
    return _read(lambda: parse_nvidia_smi(run_tool(*NVIDIA_SMI)), "nvidia-smi", problems) or ()


def _amd_gpus(sysfs_root: Path, problems: list[str]) -> tuple[Gpu, ...]:
    """rocm-smi, else amdgpu's sysfs files; integrated GPUs are left out, as Ollama does."""
    found = _read(lambda: parse_rocm_smi(run_tool(*ROCM_SMI)), "rocm-smi", problems)
    if found is None:
        found = _read(lambda: read_sysfs_amd(sysfs_root), "sysfs", problems) or ()
    for gpu in found:
        if gpu.vram_mib < IGPU_LIMIT_MIB:
            problems.append(f"AMD GPU {gpu.index} ({gpu.name}, {gpu.vram_mib} MiB VRAM) "
                            "not counted: under 1 GiB means an integrated GPU")
    return tuple(g for g in found if g.vram_mib >= IGPU_LIMIT_MIB)
