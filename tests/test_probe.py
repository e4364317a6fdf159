"""`probe`: hardware detection on recorded tool outputs, the tier table, and the command end to end.

End-to-end runs see only fake tools: PATH is a folder holding the fakes each test writes (shell
scripts printing a recorded output from fixtures/gpu, failing, or hanging) and the sysfs root is
an empty or hand-built tree, so the host's own GPUs never leak into a result.
"""
import json
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from node.machine import hardware
from node.machine.hardware import Gpu, Hardware, ToolError
from node.machine.tier import tier_for
from tests.coord import start_dev_coordinator, wait_for
from tests.nodeproc import init_home, run_daemon

FIXTURES = Path(__file__).parent / "fixtures" / "gpu"
CAT, SLEEP = shutil.which("cat"), shutil.which("sleep")
GIB = 1024
NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
RSMI_MISSING = "ModuleNotFoundError: No module named 'rsmiBindings'"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def fake_tool(folder: Path, name: str, script: str) -> None:
    """Write an executable `name` running `script` (sh); PATH holds nothing else, so full paths."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def unreachable(url: str) -> str:
    return f"Ollama is not reachable at {url}; start it with: ollama serve"


def printing(fixture: str, status: int = 0) -> str:
    return f'{CAT} "{FIXTURES / fixture}"\nexit {status}'


def hanging(pidfile: Path) -> str:
    """A tool that never answers; it records its pid so a test can check it was killed."""
    return f'echo $$ > "{pidfile}"\nexec {SLEEP} 120'


def sysctl_printing(brand: str, memsize: str | None = None) -> str:
    return f"""case "$2" in
  machdep.cpu.brand_string) {CAT} "{FIXTURES / brand}" ;;
  hw.memsize) {CAT} "{FIXTURES / memsize}" ;;
  *) echo "sysctl: unknown oid '$2'" >&2; exit 1 ;;
esac"""


def hw_with(*gpus: Gpu, ram_mib: int = 64 * GIB, apple: bool = False) -> Hardware:
    return Hardware(os="linux", arch="x86_64", cpu_brand="x", cpu_cores=8, ram_mib=ram_mib,
                    gpus=gpus, apple_silicon=apple, problems=())


def nvidia(vram_mib: int, index: int = 0) -> Gpu:
    return Gpu(index, "nvidia", "NVIDIA test", vram_mib, f"GPU-{index}")


def amd_card(sysfs: Path, card: str, vram_bytes: int | None, **files: str) -> None:
    device = sysfs / "class" / "drm" / card / "device"
    device.mkdir(parents=True)
    if vram_bytes is not None:
        (device / "mem_info_vram_total").write_text(f"{vram_bytes}\n")
    for name, text in files.items():
        (device / name).write_text(text + "\n")


# ---------------------------------------------------------------- parsing recorded outputs

def test_nvidia_smi_eight_a100s():
    gpus = hardware.parse_nvidia_smi(recorded("nvidia-smi-8xA100-80GB.csv"))
    assert [g.index for g in gpus] == list(range(8))
    assert {(g.vendor, g.name, g.vram_mib) for g in gpus} == {
        ("nvidia", "NVIDIA A100-SXM4-80GB", 81920)}
    assert gpus[0].uuid == "GPU-5c3a6b2e-9f1d-4e8a-b7c2-1d0e3f4a5b6c"
    assert len({g.uuid for g in gpus}) == 8


def test_nvidia_smi_four_rtx_4090s():
    gpus = hardware.parse_nvidia_smi(recorded("nvidia-smi-4xRTX4090.csv"))
    assert [(g.index, g.name, g.vram_mib) for g in gpus] == [
        (i, "NVIDIA GeForce RTX 4090", 24564) for i in range(4)]


def test_nvidia_smi_without_gpus_prints_nothing():
    assert hardware.parse_nvidia_smi("\n") == ()


@pytest.mark.parametrize("text", [
    "index, uuid, name, memory.total [MiB]\n0, GPU-1, NVIDIA A100, 81920\n",  # noheader forgotten
    "0, GPU-1, NVIDIA A100, 81920 MiB\n",  # nounits forgotten
    "0, GPU-1, NVIDIA GH200, [N/A]\n",
    "No devices were found\n",
    "\ufffd\ufffd\x00garbage\n",
])
def test_nvidia_smi_output_in_another_shape_is_refused(text):
    with pytest.raises(ValueError, match="unexpected line"):
        hardware.parse_nvidia_smi(text)


def test_rocm_smi_rocm5_four_mi210s():
    gpus = hardware.parse_rocm_smi(recorded("rocm-smi-4xMI210-rocm5.json"))
    assert gpus == tuple(Gpu(i, "amd", "Instinct MI210", 65520) for i in range(4))


def test_rocm_smi_rocm6_keys_after_a_warning():
    gpus = hardware.parse_rocm_smi(recorded("rocm-smi-7900XTX-igpu-rocm6.txt"))
    assert gpus == (Gpu(0, "amd", "Navi 31 [Radeon RX 7900 XT/7900 XTX]", 24560),
                    Gpu(1, "amd", "Raphael", 512))


def test_rocm_smi_keys_match_loosely_and_cards_sort_by_number():
    text = json.dumps({"card10": {"vram_total_memory_b": 17179869184, "CARD MODEL": "0x73bf"},
                       "card2": {"VRAM Total Memory (B)": "8589934592",
                                 "VRAM Total Used Memory (B)": "999999999999"},
                       "system": {"Driver version": "6.2.4"}})
    assert hardware.parse_rocm_smi(text) == (Gpu(2, "amd", "AMD GPU", 8192),
                                             Gpu(10, "amd", "0x73bf", 16384))


@pytest.mark.parametrize("text, why", [
    ("", "no JSON object"),
    ("ERROR: No AMD GPUs specified\n", "no JSON object"),
    ('{"card0": {"VRAM Total Memory (B)": "687', "not valid JSON"),
    ('{"system": {"Driver version": "6.2.4"}}', "no cardN"),
    ('{"card0": {"Card series": "Instinct MI210"}}', "card0 has no VRAM total"),
    ('{"card0": {"VRAM Total Memory (B)": "N/A"}}', "card0 has no VRAM total"),
])
def test_rocm_smi_unreadable_output_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        hardware.parse_rocm_smi(text)


def test_sysfs_amdgpu_cards(tmp_path):
    amd_card(tmp_path, "card0", None, vendor="0x1234")  # simpledrm / another driver: no VRAM file
    (tmp_path / "class" / "drm" / "card1-DP-1").mkdir()
    amd_card(tmp_path, "card1", 25753026560, device="0x744c")
    amd_card(tmp_path, "card10", 68702699520, product_name="AMD Instinct MI210")
    amd_card(tmp_path, "card2", 25753026560)
    assert hardware.read_sysfs_amd(tmp_path) == (Gpu(0, "amd", "AMD GPU 0x744c", 24560),
                                                 Gpu(1, "amd", "AMD GPU", 24560),
                                                 Gpu(2, "amd", "AMD Instinct MI210", 65520))


def test_sysfs_without_drm_has_no_gpus(tmp_path):
    assert hardware.read_sysfs_amd(tmp_path) == ()


def test_proc_meminfo_and_cpuinfo():
    assert hardware.parse_meminfo(recorded("meminfo-linux-x86_64.txt")) == 24684084 // 1024
    brand = hardware.parse_cpuinfo_brand
    assert brand(recorded("cpuinfo-linux-x86_64.txt")) == "Intel(R) Xeon(R) Processor"
    assert brand(recorded("cpuinfo-linux-aarch64-graviton2.txt")) == ""
    with pytest.raises(ValueError):
        hardware.parse_meminfo("MemFree: 10 kB\n")


def test_sysctl_memsize():
    assert hardware.parse_memsize(recorded("sysctl-m2max-memsize.txt")) == 32 * GIB
    with pytest.raises(ValueError):
        hardware.parse_memsize("sysctl: unknown oid 'hw.memsize'\n")


def test_py_cpuinfo_fallback_names_this_cpu():
    """The path ARM Linux takes; it runs the real py-cpuinfo, so it also proves it is installed."""
    assert hardware._cpuinfo_brand().strip()


# ---------------------------------------------------------------- the tier table

HALF = GIB // 2


@pytest.mark.parametrize("vram_mib, tier", [
    (0, 1), (6 * GIB - HALF - 1, 1), (6 * GIB - HALF, 2), (12 * GIB - HALF - 1, 2),
    (12 * GIB - HALF, 3), (24 * GIB - HALF - 1, 3), (24 * GIB - HALF, 4), (24 * GIB, 4),
    (80 * GIB - HALF - 1, 4), (80 * GIB - HALF, 5), (640 * GIB, 5),
])
def test_gpu_memory_in_whole_gib_rounded_halves_up_against_inclusive_bounds(vram_mib, tier):
    assert tier_for(hw_with(nvidia(vram_mib))) == tier


def test_no_gpu_is_tier_1():
    assert tier_for(hw_with()) == 1


def test_gpu_memory_adds_up_across_gpus_and_vendors():
    assert tier_for(hw_with(nvidia(3 * GIB, 0), nvidia(3 * GIB, 1))) == 2
    assert tier_for(hw_with(nvidia(12 * GIB), Gpu(0, "amd", "x", 12 * GIB))) == 4


@pytest.mark.parametrize("fixture, tier", [
    ("nvidia-smi-1xRTX4090.csv", 4),  # 24564 MiB = 23.99 GiB, sold as 24 GB: counts as 24
    ("nvidia-smi-1xH100-80GB.csv", 5),  # 81559 MiB = 79.65 GiB, sold as 80 GB: counts as 80
    ("nvidia-smi-4xRTX4090.csv", 5),
    ("nvidia-smi-8xA100-80GB.csv", 5),
])
def test_recorded_machines(fixture, tier):
    assert tier_for(hw_with(*hardware.parse_nvidia_smi(recorded(fixture)))) == tier


@pytest.mark.parametrize("ram_mib, tier", [
    (8 * GIB, 2), (16 * GIB - HALF - 1, 2), (16 * GIB - HALF, 3), (64 * GIB - HALF - 1, 3),
    (64 * GIB - HALF, 4), (192 * GIB, 4),
])
def test_apple_silicon_tiers_use_unified_memory(ram_mib, tier):
    apple = Gpu(0, "apple", "Apple M2 Max", ram_mib)
    assert tier_for(hw_with(apple, ram_mib=ram_mib, apple=True)) == tier


def test_cpu_only_forces_tier_1():
    assert tier_for(hw_with(nvidia(640 * GIB)), cpu_only=True) == 1
    apple = Gpu(0, "apple", "Apple M2 Ultra", 192 * GIB)
    assert tier_for(hw_with(apple, ram_mib=192 * GIB, apple=True), cpu_only=True) == 1


# ---------------------------------------------------------------- tools run for real, faked on PATH

@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """The whole PATH a probe sees: only the fakes a test writes here exist."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def test_macos_apple_silicon_m2_max(tools, monkeypatch):
    fake_tool(tools, "sysctl",
              sysctl_printing("sysctl-m2max-brand_string.txt", "sysctl-m2max-memsize.txt"))
    monkeypatch.setenv("PATH", str(tools))
    hw = hardware.probe_macos()
    assert (hw.os, hw.cpu_brand, hw.ram_mib, hw.apple_silicon, hw.problems) == (
        "darwin", "Apple M2 Max", 32 * GIB, True, ())
    assert hw.gpus == (Gpu(0, "apple", "Apple M2 Max", 32 * GIB),)
    assert tier_for(hw) == 3


def test_macos_intel_has_no_apple_gpu(tools, monkeypatch):
    fake_tool(tools, "sysctl",
              sysctl_printing("sysctl-intel-mac-brand_string.txt", "sysctl-m2max-memsize.txt"))
    monkeypatch.setenv("PATH", str(tools))
    hw = hardware.probe_macos()
    assert (hw.apple_silicon, hw.gpus, hw.ram_mib, tier_for(hw)) == (False, (), 32 * GIB, 1)


def test_macos_without_sysctl_reports_both_reads(tools, monkeypatch):
    monkeypatch.setenv("PATH", str(tools))
    hw = hardware.probe_macos()
    assert hw.problems == ("sysctl not found on PATH", "sysctl not found on PATH")
    assert (hw.cpu_brand, hw.ram_mib, hw.gpus, tier_for(hw)) == ("", 0, (), 1)


def test_a_hanging_tool_is_killed_at_the_timeout(tools, tmp_path, monkeypatch):
    pidfile = tmp_path / "pid"
    fake_tool(tools, "nvidia-smi", hanging(pidfile))
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv(hardware.ENV_TIMEOUT, "1")
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"nvidia-smi gave no answer within 1 s and was stopped"):
        hardware.run_tool(*hardware.NVIDIA_SMI)
    assert time.monotonic() - started < 5
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left sleeping
        os.kill(int(pidfile.read_text()), 0)


def test_a_failing_tool_says_why(tools, monkeypatch):
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-no-driver.txt", status=9))
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(ToolError) as e:
        hardware.run_tool(*hardware.NVIDIA_SMI)
    assert str(e.value).startswith(f"nvidia-smi failed (exit status 9): {NO_DRIVER}")


def test_a_tool_that_cannot_run_is_reported(tools, monkeypatch):
    (tools / "rocm-smi").write_text("#!/bin/sh\n")  # not executable
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(ToolError, match="rocm-smi could not be started: Permission denied"):
        hardware.run_tool(*hardware.ROCM_SMI)


# ---------------------------------------------------------------- the command, end to end

@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    folder = tmp_path / "sys"
    folder.mkdir()
    return folder


@pytest.fixture
def closed_url():
    """A loopback port that is bound but never listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def probe(cli, tools, sysfs, closed_url):
    """Run `probe` against the fakes; Ollama is the closed port unless a test passes another."""
    def run(*args: str, ollama: str | None = closed_url, env: dict[str, str] | None = None):
        flags = ("--ollama", ollama) if ollama else ()
        return cli("probe", *flags, *args,
                   env={"PATH": str(tools), hardware.ENV_SYSFS: str(sysfs), **(env or {})})
    return run


def probe_json(probe, *args: str, **kw) -> dict:
    """Require exit 0, a quiet stderr and exactly one JSON document on stdout."""
    r = probe(*args, "--json", **kw)
    assert (r.returncode, r.stderr) == (0, ""), r
    return json.loads(r.stdout)


def test_eight_a100s_json(probe, tools, closed_url):
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-8xA100-80GB.csv"))
    doc = probe_json(probe)
    assert list(doc) == ["os", "arch", "cpu", "ramMiB", "gpus", "tier", "ollama", "problems"]
    assert doc["os"] in ("linux", "darwin") and doc["arch"]
    assert doc["cpu"]["brand"] and doc["cpu"]["cores"] == os.cpu_count() and doc["ramMiB"] > 0
    assert doc["gpus"][0] == {"index": 0, "vendor": "nvidia", "name": "NVIDIA A100-SXM4-80GB",
                              "vramMiB": 81920, "uuid": "GPU-5c3a6b2e-9f1d-4e8a-b7c2-1d0e3f4a5b6c"}
    assert len(doc["gpus"]) == 8 and doc["tier"] == 5
    assert doc["problems"] == ["rocm-smi not found on PATH"]
    assert doc["ollama"] == {"url": closed_url, "reachable": False, "version": None, "models": [],
                             "error": unreachable(closed_url)}


@pytest.mark.parametrize("fixture, name, vram_mib, tier, shown", [
    ("nvidia-smi-1xRTX4090.csv", "NVIDIA GeForce RTX 4090", 24564, 4, "24 GiB"),
    ("nvidia-smi-1xH100-80GB.csv", "NVIDIA H100 80GB HBM3", 81559, 5, "80 GiB"),
])
def test_one_card_sold_at_a_tier_bound_claims_that_tier(probe, tools, fixture, name, vram_mib,
                                                        tier, shown):
    fake_tool(tools, "nvidia-smi", printing(fixture))
    doc = probe_json(probe)
    assert [(g["name"], g["vramMiB"]) for g in doc["gpus"]] == [(name, vram_mib)]
    assert doc["tier"] == tier
    r = probe()
    assert r.returncode == 0, r
    assert f"Tier      {tier} ({shown} GPU memory)" in r.stdout.splitlines()


def test_the_manifest_claims_the_same_tier(tmp_path, tools, sysfs, standin):
    """`start` signs the tier probe shows: a recorded H100 alone attaches as tier 5."""
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-1xH100-80GB.csv"))
    home = tmp_path / "h"
    address = init_home(home)
    with start_dev_coordinator("--node", f"7={address}") as (_, url):
        with run_daemon(home, 7, url, standin,
                        env={"PATH": str(tools), hardware.ENV_SYSFS: str(sysfs)}):
            done = wait_for(url, lambda s: s["attaches"], timeout=30, what="the attach")
    manifest = done["attaches"][-1]["manifest"]
    assert ([g["vramMiB"] for g in manifest["gpus"]], manifest["tier"]) == ([81559], 5)


def test_cpu_flag_forces_tier_1_but_still_lists_gpus(probe, tools):
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-8xA100-80GB.csv"))
    doc = probe_json(probe, "--cpu")
    assert (doc["tier"], len(doc["gpus"])) == (1, 8)


def test_nvidia_smi_without_driver_is_a_problem_not_a_failure(probe, tools):
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-no-driver.txt", status=9))
    doc = probe_json(probe)
    assert (doc["gpus"], doc["tier"]) == ([], 1)
    assert doc["problems"][0].startswith(f"nvidia-smi failed (exit status 9): {NO_DRIVER}")


def test_hanging_nvidia_smi_is_stopped_at_the_timeout(probe, tools, tmp_path):
    fake_tool(tools, "nvidia-smi", hanging(tmp_path / "pid"))
    started = time.monotonic()
    doc = probe_json(probe, env={hardware.ENV_TIMEOUT: "0.5"})
    assert time.monotonic() - started < 5
    assert doc["problems"][0] == "nvidia-smi gave no answer within 0.5 s and was stopped"
    assert doc["tier"] == 1


def test_garbage_from_nvidia_smi_is_a_problem(probe, tools):
    fake_tool(tools, "nvidia-smi", r"printf '\377\376\000Segmentation fault\n'")
    doc = probe_json(probe)
    assert doc["problems"][0].startswith(
        "nvidia-smi printed output that could not be read: unexpected line")
    assert (doc["gpus"], doc["tier"]) == ([], 1)


def test_amd_from_rocm_smi_leaves_the_igpu_out(probe, tools):
    fake_tool(tools, "rocm-smi", printing("rocm-smi-7900XTX-igpu-rocm6.txt"))
    doc = probe_json(probe)
    assert doc["gpus"] == [{"index": 0, "vendor": "amd",
                            "name": "Navi 31 [Radeon RX 7900 XT/7900 XTX]",
                            "vramMiB": 24560, "uuid": None}]
    assert doc["problems"] == [
        "nvidia-smi not found on PATH",
        "AMD GPU 1 (Raphael, 512 MiB VRAM) not counted: under 1 GiB means an integrated GPU"]
    assert doc["tier"] == 4  # 24560 MiB: a card sold as 24 GB counts as 24 GiB


def test_amd_from_sysfs_when_rocm_smi_is_missing(probe, sysfs):
    amd_card(sysfs, "card1", 68702699520, product_name="AMD Instinct MI210")
    doc = probe_json(probe)
    assert doc["gpus"] == [{"index": 0, "vendor": "amd", "name": "AMD Instinct MI210",
                            "vramMiB": 65520, "uuid": None}]
    assert doc["tier"] == 4


def test_amd_from_sysfs_when_rocm_smi_fails(probe, tools, sysfs):
    fake_tool(tools, "rocm-smi", f'echo "{RSMI_MISSING}" >&2; exit 1')
    amd_card(sysfs, "card0", 25753026560, device="0x744c")
    doc = probe_json(probe)
    assert f"rocm-smi failed (exit status 1): {RSMI_MISSING}" in doc["problems"]
    assert [(g["name"], g["vramMiB"]) for g in doc["gpus"]] == [("AMD GPU 0x744c", 24560)]


def test_plain_output_is_a_short_table(probe, tools, closed_url):
    fake_tool(tools, "nvidia-smi", printing("nvidia-smi-4xRTX4090.csv"))
    r = probe()
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["OS", "CPU", "RAM", "GPU", "GPU", "GPU", "GPU",
                                                  "Tier", "Ollama", "Problem"]
    assert ("GPU 3     NVIDIA GeForce RTX 4090 (nvidia), 24.0 GiB, "
            "GPU-7e9a1c3e-5b7d-9f2a-4c6e-8b0d2f4a6c8e") in lines
    assert "Tier      5 (96 GiB GPU memory)" in lines  # 98256 MiB = 95.95 GiB, rounded
    assert f"Ollama    {unreachable(closed_url)}" in lines
    assert "Problem   rocm-smi not found on PATH" in lines


def test_ollama_address_comes_from_ollama_host(probe, closed_url):
    doc = probe_json(probe, ollama=None, env={"OLLAMA_HOST": closed_url})
    assert (doc["ollama"]["url"], doc["ollama"]["reachable"]) == (closed_url, False)


def test_bad_ollama_address_is_a_usage_error(probe):
    r = probe(ollama="ftp://127.0.0.1:1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith(
        "error: --ollama: Ollama address 'ftp://127.0.0.1:1' must use http:// or https://")


TAGS = {"models": [
    {"name": "llama3.2:latest", "model": "llama3.2:latest",
     "modified_at": "2025-05-04T17:37:44.706015396-07:00", "size": 2019393189,
     "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
     "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                 "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
    {"name": "gpt-oss:120b-cloud", "model": "gpt-oss:120b-cloud", "remote_model": "gpt-oss:120b",
     "remote_host": "https://ollama.com:443", "modified_at": "2025-09-30T10:12:01.123456789Z",
     "size": 384, "digest": "569662207105a8e0b3f4a7b2b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4",
     "details": {"format": "", "family": "gptoss", "parameter_size": "116.8B",
                 "quantization_level": "MXFP4"}},
    {"name": "qwen3:8b", "model": "qwen3:8b", "modified_at": "2025-06-11T08:02:13.112233445Z",
     "size": 5225388164,
     "digest": "500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41",
     "details": {"parent_model": "", "format": "gguf", "family": "qwen3", "families": ["qwen3"],
                 "parameter_size": "8.2B", "quantization_level": "Q4_K_M"}},
]}


class FakeOllama(BaseHTTPRequestHandler):
    """Answers /api/version and /api/tags with the shapes of reference/ollama.md §1."""

    routes = {"/api/version": {"version": "0.12.6"}, "/api/tags": TAGS}

    def do_GET(self) -> None:
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class BrokenGzipOllama(BaseHTTPRequestHandler):
    """Claims a gzip body and sends something else: requests raises ContentDecodingError."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"not gzip!")

    def log_message(self, *args) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # listening once constructed
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ollama_url():
    yield from serve(FakeOllama)


@pytest.fixture
def broken_ollama_url():
    yield from serve(BrokenGzipOllama)


def test_reachable_ollama_lists_local_models(probe, ollama_url):
    doc = probe_json(probe, ollama=ollama_url)
    assert doc["ollama"] == {"url": ollama_url, "reachable": True, "version": "0.12.6",
                             "models": ["llama3.2:latest", "qwen3:8b"], "error": None}
    r = probe(ollama=ollama_url)
    assert (f"Ollama    0.12.6 at {ollama_url}, 2 models: llama3.2:latest, qwen3:8b"
            in r.stdout.splitlines())


def test_unreadable_ollama_answer_is_reported(probe, broken_ollama_url):
    doc = probe_json(probe, ollama=broken_ollama_url)
    assert doc["ollama"]["reachable"] is False
    assert doc["ollama"]["error"] == (
        f"{broken_ollama_url} answered /api/version with something that is not JSON: is "
        "something other than Ollama listening there? check --ollama / OLLAMA_HOST")
