"""Will it fit? The memory a minibatch needs at the least, against this machine's, before a run starts.

A minibatch too large for the memory would end a CPU run in the kernel's OOM killer ("Killed", no message)
or a framework's stack trace. `check_memory` refuses it first, in one line; where memory runs out anyway (a
GPU's, or more than this lower bound), `common.errors.out_of_memory` recognises the framework's error.
"""

import os
from pathlib import Path

from common.errors import UserError
from common.spec import evaluation_bytes, training_bytes, weights_bytes

GB = 1e9


# A container's memory limit on Linux: cgroup v2 ("max" where it has none), then v1 (a huge number where none).
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def machine_bytes() -> int | None:
    """This machine's memory in bytes, or a container's smaller limit; None where the OS does not say (Windows)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    for path in CGROUP_LIMITS:
        try:
            limit = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def check_memory(resize: int, images: int, dtype: str, on_cpu: bool, available: int | None = None,
                 training: bool = True) -> None:
    """On a CPU, refuse a minibatch of `images` that cannot train (or, `training` False, run forward) in this
    machine's memory: one line, the fix.

    On a GPU the framework says itself when the device's memory runs out (common.errors.out_of_memory).
    """
    if not on_cpu:
        return
    available = machine_bytes() if available is None else available
    need = training_bytes(resize, images, dtype) if training else evaluation_bytes(resize, images)
    if available is None or need <= available:
        return
    if training:
        why = (f"to train ({2 * weights_bytes(resize) / GB:,.1f} GB of weights and their gradients, the rest each "
               f"image's activations)")
        fix = (f"use a smaller --batch-size or --resize (python -m common.spec --resize {resize} --batch-size "
               f"{images} shows where it goes)")
    else:
        why = (f"for its forward pass ({weights_bytes(resize) / GB:,.1f} GB of weights, the rest each image's input "
               f"and its largest layer's)")
        fix = "use a smaller --batch-size"
    raise UserError(f"a minibatch of {images:,} images at {resize}x{resize} needs at least {need / GB:,.1f} GB of "
                    f"memory {why}, and this machine has {available / GB:,.1f} GB: {fix}")
