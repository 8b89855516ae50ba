"""Neutral weights: one safetensors file, read and written with numpy, that every backend loads.

Names and layouts are canonical (PyTorch's): `conv1.weight` (O, I, H, W), `conv1.bias` (O,),
`dense1.weight` (out, in) with the flattened features in C, H, W order, `dense1.bias` (out,).
"""

import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from common.atomic import atomic_write_bytes
from common.errors import UserError, path_arg
from common.spec import param_shapes

FORMAT = "alexnet-d2l/1"
CHECKPOINT = re.compile(r"checkpoint-\d{3}(-\d{5})?\.")  # a run's own checkpoints (common/run.py)


def save_weights(path: Path, weights: dict[str, np.ndarray], resize: int, backend: str) -> None:
    """Check `weights` against the spec and write them atomically as float32 safetensors."""
    check_weights(weights, resize, str(path))
    tensors = {name: np.ascontiguousarray(w, dtype=np.float32) for name, w in weights.items()}
    meta = {"format": FORMAT, "resize": str(resize), "backend": backend}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def weights_file(text: str) -> Path:
    """A weights argument as a file path: a run's directory stands for the weights.safetensors in it."""
    path = path_arg(text)
    return path / "weights.safetensors" if path.is_dir() else path


def _checkpoint(path: Path) -> UserError:
    """The error for a run's framework checkpoint given where neutral weights are asked for."""
    return UserError(f"{path} is a training checkpoint in its framework's own format, not neutral weights: "
                     f"pass {path.parent / 'weights.safetensors'} (a run writes it with every checkpoint)")


def load_weights(path: Path, resize: int) -> dict[str, np.ndarray]:
    """Read a neutral weights file (never unpickles) and check it fits the network at `resize`."""
    read_metadata(path)  # a checkpoint, a folder, a missing or unreadable file: one line, naming what to pass
    try:
        weights = st_load(Path(path).read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable safetensors weights file ({e})") from None
    check_weights(weights, resize, str(path))
    return weights


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata a weights file records (format, resize, backend), without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UserError(f"weights file {path} {what}: check the path (a run writes <out>/weights.safetensors"
                        f"{_runs_beside(path)})")
    named_as_checkpoint = CHECKPOINT.match(path.name)  # JAX's are safetensors too, without our format
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, ValueError, OSError) as e:
        if named_as_checkpoint:  # .pt, .params, .weights.h5
            raise _checkpoint(path) from None
        raise UserError(f"{path} is not a readable safetensors weights file ({e})") from None
    if named_as_checkpoint and meta.get("format") != FORMAT:
        raise _checkpoint(path)
    return meta


def _runs_beside(path: Path) -> str:
    """The runs beside (or under) a missing run's weights that have theirs (runs/torch-quick), as a hint."""
    if path.name != "weights.safetensors":
        return ""
    found = sorted({str(p.parent) for d in (path.parent, path.parent.parent) for p in d.glob("*/weights.safetensors")})
    return f"; these runs have one: {', '.join(found[:4])}" if found else ""


def recorded_resize(path: Path, asked: int | None = None) -> int:
    """The input side the weights were trained at (their metadata); a different `asked` side is refused."""
    recorded = read_metadata(path).get("resize")
    if recorded is None or not recorded.isdigit():
        _check_names(path)  # not AlexNet's at all: say so before asking for a --resize that cannot help
        if asked is None:
            raise UserError(f"{path} does not record the input size it was trained at: pass --resize")
        return asked
    if asked is not None and asked != int(recorded):
        raise UserError(f"{path} holds weights for input size {recorded}, not {asked}: pass --resize {recorded}")
    return int(recorded)


def _names_differ(names: set[str], where: str) -> UserError:
    """The error for a file whose tensors are not AlexNet's by name, a few of each named."""
    expected = set(param_shapes())  # the same names at every input size
    missing, extra = sorted(expected - names), sorted(names - expected)

    def some(found: list[str]) -> str:
        return ", ".join(found[:2]) + (", ..." if len(found) > 2 else "")

    said = [f"{len(missing)} of its {len(expected)} tensors missing: {some(missing)}" if missing else "",
            f"{len(extra)} not AlexNet's: {some(extra)}" if extra else ""]
    return UserError(f"{where} does not hold AlexNet's neutral weights ({'; '.join(filter(None, said))}): pass a "
                     f"run's weights.safetensors")


def _check_names(path: Path) -> None:
    """Refuse a safetensors file whose tensor names are not AlexNet's, without reading the tensors."""
    with safe_open(str(path), framework="numpy") as f:
        names = set(f.keys())
    if names != set(param_shapes()):
        raise _names_differ(names, str(path))


def check_weights(weights: dict[str, np.ndarray], resize: int, where: str) -> None:
    """Refuse weights whose names or shapes differ from the spec's at `resize`."""
    expected = param_shapes(resize)
    if set(weights) != set(expected):
        raise _names_differ(set(weights), where)
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise UserError(f"{where}: {name} has shape {tuple(weights[name].shape)} but the network at "
                            f"input size {resize} needs {shape}: pass the --resize it was trained with")


# ---- Layout conversions for channels-last backends ----


def dense_in_hwc_to_chw(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a dense weight (out, H*W*C) that follows an NHWC flatten to (out, C*H*W)."""
    c, h, w = chw
    return weight.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(weight.shape[0], -1)


def dense_in_chw_to_hwc(weight: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Reorder a dense weight (out, C*H*W) to follow an NHWC flatten: (out, H*W*C)."""
    c, h, w = chw
    return weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
