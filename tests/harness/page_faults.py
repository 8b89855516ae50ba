"""Page faults of a large block allocated, written and freed four times, in a fresh process."""

import json
import os
import subprocess
import sys

USERS_OWN = "glibc.malloc.trim_threshold=131072"  # a user's own malloc setting (glibc's default), which wins

# Four rounds of: allocate 64 MiB, write every page, free it, in the main thread or another (as a framework's
# threads do); prints each round's page faults and the block's pages.
ROUNDS = """
import ctypes, json, resource, threading{imports}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
n, faults, rounds = 64 << 20, lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
def run():
    for _ in range(4):
        before = faults(); p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p); rounds.append(faults() - before)
{call}
print(json.dumps([rounds, n // resource.getpagesize()]))
"""


def page_faults(imports: str = "", in_thread: bool = False, **env: str) -> tuple[list[int], int]:
    """Each round's page faults and the block's pages, after `imports` (with `env`, GLIBC_TUNABLES unset)."""
    clean = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    call = "thread = threading.Thread(target=run); thread.start(); thread.join()" if in_thread else "run()"
    code = ROUNDS.format(imports=imports, call=call)
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rounds, pages = json.loads(proc.stdout.splitlines()[-1])  # the last line: after anything `imports` prints
    return rounds, pages


def kept(rounds: list[int], pages: int) -> bool:
    """Whether the freed block was kept: faulted in once, then reused."""
    return rounds[0] > 0.9 * pages and max(rounds[1:]) < 0.01 * pages


def unmapped(rounds: list[int], pages: int) -> bool:
    """Whether the freed block was given back each time: every round faults it in again."""
    return min(rounds) > 0.9 * pages
