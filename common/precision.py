"""The precision each mode computes in: the book's float32, or bfloat16 with --fast where bf16 is faster.

bf16 pays only where the hardware computes it. On a CPU with bf16 instructions (Intel's AMX or
AVX512-BF16, AMD's Zen 4 and later, Arm's BF16) --fast trained PyTorch 2.1x to 3.8x faster; on one
without them (every AMD CPU before Zen 4, most laptops) the frameworks convert every value in software,
and on a 2-core AVX2 EPYC PyTorch's bf16 training was 11x slower than its float32 and TensorFlow's 6x
(docs/results.md). So --fast keeps float32 on such a CPU, and says so. Which CPU has them is read from
the operating system here, once for every backend; no framework is imported.
"""

import functools
import os
import platform
import subprocess
from pathlib import Path

from common.backends import BACKENDS
from common.errors import UserError

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert", "bf16")  # Linux's names: x86's, then Arm's
OVERRIDE = "ALEXNET_CPU_BF16"  # 1 or 0: whether to count this CPU as computing bf16, where the check is wrong
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's feature flags as Linux lists them (x86 `flags`, Arm `Features`), or macOS's; None where unknown."""
    if cpuinfo is None:
        if platform.system() == "Darwin":
            return _mac_flags()
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:  # Windows, or a sandbox without /proc
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # the first CPU's; every core of one CPU has the same
            return frozenset(value.split())
    return None


def _mac_flags() -> frozenset[str]:
    """Apple silicon's BF16 instructions (M2 and later), as sysctl reports them."""
    proc = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
    return frozenset({"bf16"}) if proc.stdout.strip() == "1" else frozenset()


@functools.cache
def _this_cpu() -> frozenset[str] | None:
    """This machine's flags, read once."""
    return cpu_flags()


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has bfloat16 instructions (unknown counts as no); ALEXNET_CPU_BF16=1 or 0 says instead."""
    override = os.environ.get(OVERRIDE, "")
    if override not in ("", "0", "1"):
        raise UserError(f"{OVERRIDE}={override!r}: set it to 1 (this CPU computes bf16 fast), 0 (it does not), "
                        f"or unset it to let the CPU's flags decide")
    if override:
        return override == "1"
    flags = _this_cpu() if flags is None else flags
    return bool(flags and flags & set(BF16_FLAGS))


def float32_reason(backend: str, on_cpu: bool) -> str | None:
    """Why --fast computes in float32 for `backend` on this device, or None where it computes in bf16."""
    b = BACKENDS[backend]
    if not b.gpu_bf16:
        return f"{b.title}'s bf16 is slower than its float32 and cannot train through its NumPy interface"
    if on_cpu and not b.bf16:
        return f"{b.title} computes bf16 more slowly than float32 on a CPU"
    if on_cpu and not has_bf16():
        return (f"this CPU has no bf16 instructions (AVX512-BF16, AMX or Arm's BF16), so bf16 would be emulated, "
                f"several times slower than float32 ({OVERRIDE}=1 uses it anyway)")
    return None


def compute_dtype(backend: str, fast: bool, on_cpu: bool) -> str:
    """The precision a mode's convolutions and matrix products compute in: float32, or bfloat16 on --fast."""
    return "bfloat16" if fast and float32_reason(backend, on_cpu) is None else "float32"
