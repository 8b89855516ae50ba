"""Framework-free references the backends are checked against (NumPy only)."""

import numpy as np


def bilinear_resize(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, H, W) to float32 (B, 1, size, size) in [0, 1]: bilinear, half-pixel centres."""
    X = images.astype(np.float64) / 255
    h = X.shape[1]
    src = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, h - 1)
    frac = src - lo
    rows = X[:, lo, :] * (1 - frac)[None, :, None] + X[:, hi, :] * frac[None, :, None]
    out = rows[:, :, lo] * (1 - frac)[None, None, :] + rows[:, :, hi] * frac[None, None, :]
    return out[:, None].astype(np.float32)


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy, computed stably."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def as_numpy(x) -> np.ndarray:
    """A framework tensor as a NumPy array (MXNet's arrays need asnumpy())."""
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)
