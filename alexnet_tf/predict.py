"""Evaluate neutral weights and classify images with TensorFlow: `python -m alexnet_tf.predict --help`."""

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data import preprocess
from alexnet_tf.model import alexnet, predict, set_weights
from alexnet_tf.step import get_device, on_cpu
from common import predict as common_predict
from common.errors import run_cli

BACKEND = "tf"

# ---- The network from neutral weights ----


def load_net(weights: dict[str, np.ndarray], resize: int, device: str) -> keras.Sequential:
    """AlexNet at `resize` on `device`, holding `weights` (from any backend)."""
    with tf.device(device):
        net = alexnet(resize)
    set_weights(net, weights)
    return net


# ---- Feature maps ----


def feature_maps(net: keras.Sequential, X: np.ndarray) -> list[np.ndarray]:
    """The activations of conv1 and conv2 after their ReLU for one image X (1, 1, H, W), each (C, H, W)."""
    maps, X = [], np.transpose(X, (0, 2, 3, 1))  # NCHW to NHWC
    for layer in net.layers:
        X = layer(X)
        if isinstance(layer, keras.layers.Conv2D):  # its ReLU is part of the layer
            maps.append(np.transpose(X[0].numpy(), (2, 0, 1)))  # (54, 54, 96) to (96, 54, 54), then conv2's
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
