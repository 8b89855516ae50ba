"""The C allocator's setting that keeps freed memory in the process, so each step reuses its pages."""

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # mallopt's parameters, from glibc's <malloc.h>
KEEP = 1 << 30  # freed memory glibc keeps before it gives any back: 1 GiB, a few steps' worth


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep what is freed, instead of unmapping each large block; False where it cannot.

    By default glibc serves every block over 32 MiB (a batch of activations) with its own mmap and unmaps
    it when freed, so the next step faults every page of it in again: over a million page faults in a few
    steps of AlexNet at 224. Served from the one heap that every thread shares (a thread's own arena can
    only map blocks this large) and kept, the pages are reused. PyTorch's CPU tuning guide gets the same by
    preloading jemalloc or TCMalloc; this needs nothing installed. Call it before the framework starts its
    threads. A user's GLIBC_TUNABLES for malloc wins, and other C libraries (macOS, musl) are left alone.
    """
    if platform.libc_ver()[0] != "glibc" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = ctypes.CDLL(None)  # this process's C library
    return all(libc.mallopt(param, value) for param, value in
               [(M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP)])
