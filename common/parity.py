"""Numerical parity between backends, framework-free: the shared case and the comparison.

`nox -s parity` writes one case (weights, a uint8 batch, labels), each backend computes its
results in its own venv, and `compare` lays them side by side. Files are safetensors via NumPy.
"""

from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from common.spec import param_shapes

LOGITS_RTOL = 1e-4  # float32: no looser than 1e-4 relative (of the largest logit)
LOSS_RTOL = 1e-5
PIXELS_ATOL = 2e-6  # the resized pixels, in [0, 1]
WEIGHTS_RTOL = 1e-4  # updated weights, relative to each tensor's largest value
STEP_RTOL = 1e-2  # the update itself (lr x gradient): norm of the difference over the update's norm.
# Looser on purpose: where two max-pool inputs differ by ~1e-8, float32 kernels that round
# differently (oneDNN in TensorFlow and MXNet) may pick the other one, and the gradient flows
# through a different pixel; the weights themselves still agree to WEIGHTS_RTOL.


def make_case(resize: int, batch: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Glorot-uniform weights, a batch of random uint8 images and labels, as one flat dict."""
    rng = np.random.default_rng(seed)
    case = {}
    for name, shape in param_shapes(resize).items():
        if name.endswith(".bias"):
            case[f"w.{name}"] = rng.uniform(-0.05, 0.05, shape).astype(np.float32)
            continue
        receptive = int(np.prod(shape[2:]))
        bound = np.sqrt(6 / (shape[0] * receptive + shape[1] * receptive))
        case[f"w.{name}"] = rng.uniform(-bound, bound, shape).astype(np.float32)
    case["images"] = rng.integers(0, 256, (batch, 28, 28), dtype=np.uint8)
    case["labels"] = rng.integers(0, 10, batch).astype(np.int64)
    return case


def weights_of(tensors: dict[str, np.ndarray], prefix: str = "w.") -> dict[str, np.ndarray]:
    """The canonical weights stored under `prefix` in a case or result file."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def save(path: Path, tensors: dict[str, np.ndarray], **meta: str) -> None:
    """Write a case or a result (safetensors, NumPy only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=meta or None)


def load(path: Path) -> dict[str, np.ndarray]:
    """Read a case or a result."""
    return load_file(str(path))


# ---- Comparison ----


def _rel(a: np.ndarray, b: np.ndarray, norm: bool = False) -> tuple[float, float]:
    """Max absolute difference, and the relative difference: to the reference's largest
    magnitude, or with `norm`, the L2 norm of the difference over the reference's."""
    d = a.astype(np.float64) - b.astype(np.float64)
    diff = float(np.max(np.abs(d)))
    if norm:
        return diff, float(np.linalg.norm(d)) / max(float(np.linalg.norm(b)), 1e-30)
    return diff, diff / max(float(np.max(np.abs(b))), 1e-30)


def compare(case: dict[str, np.ndarray], results: dict[str, dict[str, np.ndarray]],
            reference: str) -> tuple[list[str], list[str]]:
    """Table rows and problems: each backend's pixels, logits, loss and SGD step against `reference`."""
    ref = results[reference]
    before = weights_of(case)
    rows = [f"{'quantity':<22}{'backend':<9}{'max abs diff':>14}{'relative':>12}  limit"]
    problems = []

    def check(label: str, backend: str, a: np.ndarray, b: np.ndarray, limit: float, relative: bool,
              norm: bool = False) -> None:
        absolute, rel = _rel(a, b, norm)
        value = rel if relative else absolute
        ok = value <= limit
        rows.append(f"{label:<22}{backend:<9}{absolute:>14.3e}{rel:>12.3e}  "
                    f"{'norm' if norm else 'rel' if relative else 'abs'} {limit:g} {'ok' if ok else 'FAIL'}")
        if not ok:
            problems.append(f"{label}: {backend} differs from {reference} by {value:.3e} "
                            f"({'relative' if relative else 'absolute'}), over {limit:g}")

    for backend, res in results.items():
        if backend == reference:
            continue
        check("pixels", backend, res["pixels"], ref["pixels"], PIXELS_ATOL, relative=False)
        check("logits", backend, res["logits"], ref["logits"], LOGITS_RTOL, relative=True)
        check("loss", backend, res["loss"], ref["loss"], LOSS_RTOL, relative=True)
        after, ref_after = weights_of(res, "after."), weights_of(ref, "after.")
        for name in before:
            check(f"{name}", backend, after[name], ref_after[name], WEIGHTS_RTOL, relative=True)
            check(f"{name} (step)", backend, after[name] - before[name], ref_after[name] - before[name],
                  STEP_RTOL, relative=True, norm=True)
    return rows, problems
