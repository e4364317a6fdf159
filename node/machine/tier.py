"""Which tier a node claims, by PROTOCOL.md "Tiers" (the coordinator may lower it)."""
from node.machine.hardware import Hardware

GIB = 1024  # in MiB, the unit Hardware counts in

# (lowest memory in MiB, tier), highest first; lower bounds are inclusive.
_GPU_TIERS = ((80 * GIB, 5), (24 * GIB, 4), (12 * GIB, 3), (6 * GIB, 2))
_APPLE_TIERS = ((64 * GIB, 4), (16 * GIB, 3), (0, 2))


def gpu_memory_mib(hw: Hardware) -> int:
    """Total memory of the discrete GPUs; Apple's unified memory has its own thresholds."""
    return sum(g.vram_mib for g in hw.gpus if g.vendor != "apple")


def tier_for(hw: Hardware, cpu_only: bool = False) -> int:
    """Tier 1-5 from total GPU memory, or from unified memory on Apple Silicon; `cpu_only` → 1."""
    if cpu_only:
        return 1
    if hw.apple_silicon:
        memory, table = hw.ram_mib, _APPLE_TIERS
    else:
        memory, table = gpu_memory_mib(hw), _GPU_TIERS
    return next((tier for lowest, tier in table if memory >= lowest), 1)
