"""What machine a benchmark ran on, its memory high-water mark, and its theoretical compute peak.

The peak is an upper bound to compare achieved GMAC/s with, not a prediction: cores x clock x multiply-accumulates
per cycle per core for the widest instructions the CPU reports. MACs per cycle per core (two vector pipes assumed,
as on Zen/Skylake-class x86 cores and Cortex-A72/A76):

| flags | float32 | int8 |
| --- | --- | --- |
| x86 AVX-512 + VNNI | 32 | 128 (vpdpbusd) |
| x86 AVX2 + FMA (+ AVX-VNNI) | 16 | 64 (vpmaddubsw; 64 also with AVX-VNNI) |
| Arm NEON (asimd) | 8 | 16 (smlal) |
| Arm NEON + dot product (asimddp) | 8 | 32 (sdot) |

The int8 figure on AVX2 counts vpmaddubsw's 32 products per instruction; the widening and adds it needs afterwards
mean real kernels reach well under half of it.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
    "asimdhp",
    "i8mm",
    "sve",
)


@dataclass(frozen=True)
class Peak:
    """Theoretical multiply-accumulates per second, with the assumptions that produced it."""

    clock_ghz: float | None
    cores: int
    float32_macs_per_cycle: int
    int8_macs_per_cycle: int

    def gmacs(self, dtype: str) -> float | None:
        """Peak GMAC/s for `int8` or `float32` arithmetic; None when the clock is unknown."""
        if self.clock_ghz is None:
            return None
        per_cycle = self.int8_macs_per_cycle if dtype == "int8" else self.float32_macs_per_cycle
        return self.clock_ghz * self.cores * per_cycle


def _cpuinfo_fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in found:
            found[key.strip()] = value.strip()
    return found


def cpu_flags(text: str) -> list[str]:
    fields = _cpuinfo_fields(text)
    listed = set((fields.get("flags") or fields.get("Features") or "").split())
    return [flag for flag in INTERESTING_FLAGS if flag in listed]


def macs_per_cycle(flags: list[str]) -> tuple[int, int]:
    """(float32, int8) multiply-accumulates per cycle per core for these CPU flags (table in the module doc)."""
    present = set(flags)
    if "avx512f" in present:
        return 32, 128 if "avx512_vnni" in present else 64
    if "avx2" in present and "fma" in present:
        return 16, 64
    if "asimd" in present:
        return 8, 32 if "asimddp" in present else 16
    return 4, 8  # SSE-class fallback


def clock_ghz(text: str) -> float | None:
    """Nominal clock: the cpufreq maximum, else the GHz in the model name, else the current MHz."""
    maximum = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if maximum.is_file():
        return int(maximum.read_text().strip()) / 1e6
    fields = _cpuinfo_fields(text)
    named = re.search(r"@\s*([\d.]+)\s*GHz", fields.get("model name", ""))
    if named:
        return float(named.group(1))
    if "cpu MHz" in fields:
        return float(fields["cpu MHz"]) / 1000
    return None


def machine_info(runtime_label: str = "") -> dict[str, Any]:
    """CPU model, cores, relevant flags, clock, OS, Python and runtime: stamped into every result file."""
    text = CPUINFO.read_text() if CPUINFO.is_file() else ""
    fields = _cpuinfo_fields(text)
    flags = cpu_flags(text)
    float32_rate, int8_rate = macs_per_cycle(flags)
    cores = os.cpu_count() or 1
    peak = Peak(clock_ghz(text), cores, float32_rate, int8_rate)
    return {
        "cpu": fields.get("model name") or fields.get("Model") or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cores": cores,
        "flags": flags,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtime": runtime_label,
        "peak": {**asdict(peak), "int8_gmacs": peak.gmacs("int8"), "float32_gmacs": peak.gmacs("float32")},
    }


def _proc_status_mb(pid: int | str, field: str) -> float | None:
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """A process's resident-set high-water mark from ``/proc`` (Linux), None elsewhere."""
    return _proc_status_mb(pid, "VmHWM")


def vm_rss_mb(pid: int | str) -> float | None:
    """A process's resident set now, from ``/proc`` (Linux), None elsewhere."""
    return _proc_status_mb(pid, "VmRSS")


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark.

    ``VmHWM`` first: Linux carries ``ru_maxrss`` across exec, so a child started by a big parent would report the
    parent's peak. ``ru_maxrss`` elsewhere (macOS reports bytes, others KiB).
    """
    own = vm_hwm_mb()
    if own is not None:
        return own
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def describe_machine(machine: dict[str, Any]) -> str:
    """A result file's `machine` in one sentence: what every quoted figure is stamped with."""
    peak = machine["peak"]
    runtime = f", {machine['runtime']}" if machine.get("runtime") else ""
    return (
        f"Machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags'])}, {machine['os']}, "
        f"Python {machine['python']}{runtime}. Theoretical peak {peak['float32_gmacs']:.0f} GMAC/s float32, "
        f"{peak['int8_gmacs']:.0f} GMAC/s int8 (clock {peak['clock_ghz']:.2f} GHz)."
    )
