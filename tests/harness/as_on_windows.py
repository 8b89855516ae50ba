"""Run a module or a script on Linux without the calls that Windows lacks, to show the project needs none of them.

    python -m tests.harness.as_on_windows alexnet_torch.train --out DIR ...
    python -m tests.harness.as_on_windows -c "CODE" ARGS ...

Windows has no fcntl, no resource (getrusage), no os.sysconf (the machine's memory) and no
os.sched_getaffinity (macOS lacks that one too). They are taken away before the module starts. msvcrt,
Windows' own lock, is stood in for by fcntl's byte-range locks: they lock the same bytes from the same file
position and the OS lets go of them when the process ends, as Windows does. What it cannot show: on Windows
a locked byte cannot be read by others, which is why common.lock locks a byte far past the pid that others
read.
"""

import fcntl
import os
import runpy
import sys
import types


def msvcrt_stand_in() -> types.ModuleType:
    """msvcrt.locking's non-blocking lock and its unlock, on fcntl's byte ranges."""
    msvcrt = types.ModuleType("msvcrt")
    msvcrt.LK_UNLCK, msvcrt.LK_NBLCK = 0, 2  # msvcrt's values

    def locking(fd: int, mode: int, nbytes: int) -> None:
        start = os.lseek(fd, 0, os.SEEK_CUR)  # msvcrt locks from the file's position
        try:
            fcntl.lockf(fd, fcntl.LOCK_UN if mode == msvcrt.LK_UNLCK else fcntl.LOCK_EX | fcntl.LOCK_NB, nbytes, start)
        except BlockingIOError:
            raise PermissionError(13, "Permission denied") from None  # what msvcrt raises when the bytes are taken

    msvcrt.locking = locking
    return msvcrt


def take_away() -> None:
    """Make this process lack what Windows lacks, with msvcrt in place of fcntl for common.lock."""
    sys.modules["fcntl"] = sys.modules["resource"] = None  # an import of either now fails, as on Windows
    del os.sched_getaffinity, os.sysconf
    sys.modules["msvcrt"] = msvcrt_stand_in()
    try:
        import common.lock  # takes Windows' branch, keeping the stand-in
    finally:
        del sys.modules["msvcrt"]  # elsewhere msvcrt would mean Windows: subprocess would look for _winapi
    assert common.lock.fcntl is None


if __name__ == "__main__":
    take_away()
    if sys.argv[1] == "-c":
        code, sys.argv = sys.argv[2], ["-c", *sys.argv[3:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    else:
        module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
