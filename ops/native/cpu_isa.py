"""Which form of the hot CPU loops opforge's kernels run on this machine, read the way cpu_isa.h's cpu_isa()
decides it: the widest of baseline, avx2, avx512, avx512bf16 whose CPU features /proc/cpuinfo lists, capped by
OPFORGE_CPU_ISA (on aarch64: asimd, or baseline). For benchmark records and for tests that run each form
(Linux; elsewhere every feature reads as absent). What the loaded kernels actually took is
ops.torch.extension.cpu_isa(), read from the compiled library itself."""

from __future__ import annotations

import os
from pathlib import Path

LEVELS = ["baseline", "avx2", "avx512", "avx512bf16"]
# Each level's CPU features beyond the one before it (names as /proc/cpuinfo writes them).
FEATURES = {
    "baseline": set(),
    "avx2": {"avx2", "fma", "f16c"},
    "avx512": {"avx512f", "avx512vl", "avx512bw", "avx512dq"},
    "avx512bf16": {"avx512_bf16"},
}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def missing_features(level: str, flags: set[str] | None = None) -> list[str]:
    """The CPU features `level` needs that this CPU lacks (empty: it can run that form)."""
    flags = cpu_flags() if flags is None else flags
    need = set().union(*(FEATURES[lvl] for lvl in LEVELS[: LEVELS.index(level) + 1]))
    return sorted(need - flags)


def selected() -> str:
    """The form the kernels take here: the widest the CPU has, capped by OPFORGE_CPU_ISA (an unknown value
    is ignored, as the kernels ignore it). On aarch64: asimd (base architecture) unless capped to baseline."""
    import platform

    if platform.machine().lower() in ("aarch64", "arm64"):
        return "baseline" if os.environ.get("OPFORGE_CPU_ISA") == "baseline" else "asimd"
    flags = cpu_flags()
    have = [lvl for lvl in LEVELS if not missing_features(lvl, flags)][-1]
    cap = os.environ.get("OPFORGE_CPU_ISA", LEVELS[-1])
    return cap if cap in LEVELS and LEVELS.index(cap) < LEVELS.index(have) else have
