"""One process at a time in a run directory: an OS lock on a file, let go of by the OS when that process ends.

POSIX (Linux, macOS) locks with fcntl; Windows has no fcntl and locks a byte range with msvcrt instead.
Neither leaves a stale lock behind a crash or `kill -9`, as a lock made of a file's existence would.
"""

import errno
import os
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

WINDOWS_BYTE = 2**31 - 2  # Windows' lock keeps other processes from reading the bytes it covers: one far past the pid


class Held(Exception):
    """The lock is another process's; the message names that process as it wrote itself into the file."""


class NoLocks(Exception):
    """The filesystem gives no locks (an NFS mount without its lock service, some FUSE mounts); the OS's words."""


HELD = (errno.EAGAIN, errno.EACCES)  # what fcntl says where another process holds the lock


def hold(path: Path) -> BinaryIO:
    """Lock the file at `path` (made if missing) and write this process's id into it; Held if it is taken,
    NoLocks where its filesystem has no locks."""
    f = open(path, "a+b")
    try:
        _lock(f)
    except OSError as e:
        if fcntl is not None and e.errno not in HELD:  # ENOLCK, EOPNOTSUPP: nobody holds it, nobody can
            f.close()
            raise NoLocks(e.strerror or str(e)) from None
        f.seek(0)
        holder = f.read().decode(errors="replace").strip() or "another process"
        f.close()
        raise Held(holder) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}".encode())
    f.flush()
    return f


def release(f: BinaryIO) -> None:
    """Let go of the lock and close the file (the file stays)."""
    if fcntl is None:
        f.seek(WINDOWS_BYTE)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    f.close()


def _lock(f: BinaryIO) -> None:
    """Lock without waiting: OSError where another process holds it."""
    if fcntl is not None:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        f.seek(WINDOWS_BYTE)  # msvcrt locks from the file's position
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
