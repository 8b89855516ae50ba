"""Every backend against a NumPy forward pass in canonical NCHW: layers, layouts and weight conversions."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common.spec import LAYERS, param_shapes

RESIZE = 100  # pool3 is then 256x2x2, so dense1's (C, H, W) vs (H, W, C) order matters (at 67 it is 1x1)


def _windows(X: np.ndarray, k: int, stride: int) -> np.ndarray:
    """All k x k windows of NCHW X at the stride: (B, C, H', W', k, k)."""
    return sliding_window_view(X, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def reference_forward(weights: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """The network's logits in float64, NCHW throughout, driven by the spec's layer list."""
    X = X.astype(np.float64)
    for layer in LAYERS:
        if layer.kind == "conv":
            p = layer.padding
            W, b = weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"]
            X = np.pad(X, ((0, 0), (0, 0), (p, p), (p, p)))
            X = np.einsum("bchwij,ocij->bohw", _windows(X, layer.kernel, layer.stride), W, optimize=True)
            X = X + b[None, :, None, None]
        elif layer.kind == "pool":
            X = _windows(X, layer.kernel, layer.stride).max(axis=(-2, -1))
        elif layer.kind == "flatten":
            X = X.reshape(len(X), -1)  # C, H, W order: the canonical one
        elif layer.kind == "dense":
            X = X @ weights[f"{layer.name}.weight"].T + weights[f"{layer.name}.bias"]
        if layer.relu:
            X = np.maximum(X, 0)
    return X


def test_canonical_weights_give_the_numpy_logits(fw):
    rng = np.random.default_rng(0)
    weights = {}
    for name, shape in param_shapes(RESIZE).items():
        fan_in = int(np.prod(shape[1:])) if name.endswith(".weight") else 1
        weights[name] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32)
    net = fw.model.alexnet(RESIZE)
    fw.model.set_weights(net, weights)
    X = rng.random((2, 1, RESIZE, RESIZE), dtype=np.float32)
    expected = reference_forward(weights, X)
    got = fw.model.predict(net, X)
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    for name, w in fw.model.get_weights(net).items():  # and back to the canonical layout, exactly
        np.testing.assert_array_equal(w, weights[name], err_msg=name)
