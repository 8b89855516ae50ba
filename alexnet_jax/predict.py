"""Evaluate neutral weights and classify images with JAX: `python -m alexnet_jax.predict --help`."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alexnet_jax.data import preprocess
from alexnet_jax.model import alexnet, predict, set_weights
from alexnet_jax.step import commit, get_device, on_cpu
from common import predict as common_predict
from common.errors import run_cli

BACKEND = "jax"

# ---- The network from neutral weights ----


def load_net(weights: dict[str, np.ndarray], resize: int, device: jax.Device) -> nnx.Sequential:
    """AlexNet at `resize` on `device`, holding `weights` (from any backend)."""
    with jax.default_device(device):
        net = alexnet(resize)
        set_weights(net, weights)
    commit(net)  # its dropout streams too: the forward pass compiles once, not again for its second batch
    return net


# ---- Feature maps ----


def feature_maps(net: nnx.Sequential, X: np.ndarray) -> list[np.ndarray]:
    """The activations of conv1 and conv2 after their ReLU for one image X (1, 1, H, W), each (C, H, W)."""
    maps, X = [], jnp.asarray(np.transpose(X, (0, 2, 3, 1)))  # NCHW to NHWC
    for previous, layer in zip([None, *net.layers], net.layers):
        X = layer(X)
        if isinstance(previous, nnx.Conv):  # the ReLU after a convolution
            maps.append(np.transpose(np.asarray(X[0]), (2, 0, 1)))  # (54, 54, 96) to (96, 54, 54), then conv2's
        if len(maps) == 2:
            break
    return maps


# ---- Main ----

FORWARD = common_predict.Forward(BACKEND, get_device, on_cpu, load_net, preprocess, predict, feature_maps)


def main(argv: list[str] | None = None) -> None:
    """Evaluate weights on the test split, classify image files, or show one image's feature maps."""
    common_predict.main(FORWARD, argv)


if __name__ == "__main__":
    run_cli(main)
