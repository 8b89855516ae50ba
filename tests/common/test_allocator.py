"""keep_freed_memory: glibc's malloc keeps large freed blocks, so their pages are reused, not faulted in again."""

import platform

import pytest

from common import allocator
from tests.harness.page_faults import USERS_OWN, kept, page_faults, unmapped

GLIBC = platform.libc_ver()[0] == "glibc"
KEEP = "\nfrom common.allocator import keep_freed_memory; print(keep_freed_memory())"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "another thread"])
def test_freed_blocks_are_kept_and_reused(in_thread):
    assert unmapped(*page_faults(in_thread=in_thread))  # by default glibc unmaps a large block when it is freed
    assert kept(*page_faults(KEEP, in_thread=in_thread))


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_a_users_glibc_tunables_win():
    assert unmapped(*page_faults(KEEP, GLIBC_TUNABLES=USERS_OWN))


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))  # macOS, musl: no glibc
    monkeypatch.setattr(allocator.ctypes, "CDLL", None)  # calling it would fail
    assert allocator.keep_freed_memory() is False
