"""The precision --fast computes in: bf16 only where the backend and the CPU compute it faster than float32."""

import pytest

from common import precision
from common.errors import UserError
from common.precision import OVERRIDE, compute_dtype, cpu_flags, float32_reason, has_bf16

# /proc/cpuinfo, shortened: the three CPUs this project was measured on (docs/results.md), and an Arm server
ZEN1 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx fma avx2 sha_ni clzero\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
XEON = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8 avx512_fp16\n"
NEOVERSE = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"


def test_cpu_flags_are_read_from_linux_cpuinfo():
    assert "avx2" in cpu_flags(ZEN1) and "avx512_bf16" in cpu_flags(ZEN4)
    assert cpu_flags(NEOVERSE) == {"fp", "asimd", "sve", "bf16", "i8mm"}
    assert cpu_flags("processor\t: 0\n") is None  # no flags line: unknown


@pytest.mark.parametrize(("cpuinfo", "bf16"), [(ZEN1, False), (ZEN4, True), (XEON, True), (NEOVERSE, True)])
def test_bf16_instructions_are_told_apart(monkeypatch, cpuinfo, bf16):
    monkeypatch.delenv(OVERRIDE, raising=False)
    assert has_bf16(cpu_flags(cpuinfo)) is bf16


def test_an_unknown_cpu_counts_as_without_bf16(monkeypatch):
    monkeypatch.delenv(OVERRIDE, raising=False)
    monkeypatch.setattr(precision, "_this_cpu", lambda: None)  # Windows, or no /proc
    assert has_bf16() is False and compute_dtype("torch", fast=True, on_cpu=True) == "float32"


def test_the_override_wins_and_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setenv(OVERRIDE, "1")
    assert has_bf16(cpu_flags(ZEN1)) is True
    monkeypatch.setenv(OVERRIDE, "0")
    assert has_bf16(cpu_flags(XEON)) is False
    monkeypatch.setenv(OVERRIDE, "yes")
    with pytest.raises(UserError, match=f"{OVERRIDE}='yes': set it to 1 .*, 0 .*or unset it"):
        has_bf16()


def test_fast_computes_in_bf16_where_it_pays(monkeypatch):
    monkeypatch.setenv(OVERRIDE, "1")  # a CPU with bf16 instructions
    assert [compute_dtype(b, fast=True, on_cpu=True) for b in ("torch", "tf", "mxnet", "jax")] == \
        ["bfloat16", "bfloat16", "float32", "float32"]  # XLA's CPU and MXNet 1.9.1: slower in bf16
    assert [compute_dtype(b, fast=True, on_cpu=False) for b in ("torch", "tf", "mxnet", "jax")] == \
        ["bfloat16", "bfloat16", "float32", "bfloat16"]  # a GPU
    assert compute_dtype("torch", fast=False, on_cpu=False) == "float32"  # the book's math
    monkeypatch.setenv(OVERRIDE, "0")  # a CPU without
    assert compute_dtype("torch", fast=True, on_cpu=True) == compute_dtype("tf", fast=True, on_cpu=True) == "float32"
    assert compute_dtype("torch", fast=True, on_cpu=False) == "bfloat16"  # the GPU is not the CPU
    assert "no bf16 instructions" in float32_reason("tf", on_cpu=True) and OVERRIDE in float32_reason("tf", True)
    assert "JAX" in float32_reason("jax", on_cpu=True) and "MXNet" in float32_reason("mxnet", on_cpu=False)
    assert float32_reason("jax", on_cpu=False) is None
