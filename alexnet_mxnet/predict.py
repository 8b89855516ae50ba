"""Evaluate neutral weights and classify images with MXNet: `python -m alexnet_mxnet.predict --help`."""

import mxnet as mx
import numpy as np
from mxnet import npx
from mxnet.gluon import nn

from alexnet_mxnet.data import preprocess
from alexnet_mxnet.model import alexnet, predict, set_weights
from alexnet_mxnet.step import get_device, on_cpu
from common import predict as common_predict
from common.errors import run_cli

npx.set_np()

BACKEND = "mxnet"

# ---- The network from neutral weights ----


def load_net(weights: dict[str, np.ndarray], resize: int, device: mx.Context) -> nn.HybridSequential:
    """AlexNet at `resize` on `device`, holding `weights` (from any backend)."""
    net = alexnet(resize, device)
    set_weights(net, weights)
    return net


# ---- Feature maps ----


def feature_maps(net: nn.HybridSequential, X: np.ndarray) -> list[np.ndarray]:
    """The activations of conv1 and conv2 after their ReLU for one image X (1, 1, H, W), each (C, H, W)."""
    maps, X = [], mx.np.array(X, dtype=np.float32, ctx=net.collect_params().list_ctx()[0])
    for layer in net:
        X = layer(X)
        if isinstance(layer, nn.Conv2D):  # its ReLU is part of the layer
            maps.append(X[0].asnumpy())  # (96, 54, 54), then (256, 26, 26)
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
