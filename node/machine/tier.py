"""Which tier a node claims, by PROTOCOL.md "Tiers" (the coordinator may lower it)."""
from node.machine.hardware import Hardware

# (lowest memory in whole GiB, tier), highest first; lower bounds are inclusive.
_GPU_TIERS = ((80, 5), (24, 4), (12, 3), (6, 2))
_APPLE_TIERS = ((64, 4), (16, 3), (0, 2))


def gpu_memory_mib(hw: Hardware) -> int:
    """Total memory of the discrete GPUs; Apple's unified memory has its own thresholds."""
    return sum(g.vram_mib for g in hw.gpus if g.vendor != "apple")


def whole_gib(mib: int) -> int:
    """GiB rounded to the nearest whole number, halves up: PROTOCOL.md compares memory this way,
    so a card sold as 24 GB (an RTX 4090 reports 24564 MiB) counts as 24."""
    return (mib + 512) // 1024


def tier_memory_gib(hw: Hardware) -> int:
    """The memory the tier is read from: unified memory on Apple Silicon, else the GPUs'."""
    return whole_gib(hw.ram_mib if hw.apple_silicon else gpu_memory_mib(hw))


def tier_for(hw: Hardware, cpu_only: bool = False) -> int:
    """Tier 1-5 from total GPU memory, or from unified memory on Apple Silicon; `cpu_only` → 1."""
    if cpu_only:
        return 1
    table = _APPLE_TIERS if hw.apple_silicon else _GPU_TIERS
    memory = tier_memory_gib(hw)
    return next((tier for lowest, tier in table if memory >= lowest), 1)
