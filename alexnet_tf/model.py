"""The book's AlexNet in TensorFlow with Keras 3 (d2l.ai, chapter 8.1), channels-last (NHWC)."""

import json

import keras
import numpy as np
import tensorflow as tf

from common.cli import model_parser
from common.errors import run_cli
from common.hparams import BOOK, DROPOUT, IN_CHANNELS, NUM_CLASSES
from common.shapes import canonical_names, make_report
from common.spec import check_resize, flat_chw
from common.weights import dense_in_chw_to_hwc, dense_in_hwc_to_chw

BACKEND = "tf"

# ---- The network ----


def alexnet(resize: int = BOOK.resize) -> keras.Sequential:
    """AlexNet for `resize` x `resize` grey images, with Xavier weights and zero biases."""
    check_resize(resize)
    net = keras.Sequential([
        keras.Input(shape=(resize, resize, IN_CHANNELS)),
        # A large 11x11 window with stride 4 to capture objects; conv1 unpadded in every backend.
        keras.layers.Conv2D(96, kernel_size=11, strides=4, padding="valid",
                            activation="relu"),  # (B, 54, 54, 96)
        keras.layers.MaxPool2D(pool_size=3, strides=2),  # (B, 26, 26, 96)
        # A smaller window, padding 'same' (2) keeps the side, more output channels.
        keras.layers.Conv2D(256, kernel_size=5, padding="same", activation="relu"),  # (B, 26, 26, 256)
        keras.layers.MaxPool2D(pool_size=3, strides=2),  # (B, 12, 12, 256)
        # Three successive 3x3 convolutions; only the last is followed by pooling.
        keras.layers.Conv2D(384, kernel_size=3, padding="same", activation="relu"),  # (B, 12, 12, 384)
        keras.layers.Conv2D(384, kernel_size=3, padding="same", activation="relu"),  # (B, 12, 12, 384)
        keras.layers.Conv2D(256, kernel_size=3, padding="same", activation="relu"),  # (B, 12, 12, 256)
        keras.layers.MaxPool2D(pool_size=3, strides=2),  # (B, 5, 5, 256)
        keras.layers.Flatten(),  # (B, 6400), in H, W, C order
        # Dense layers many times larger than LeNet's, with dropout against overfitting.
        keras.layers.Dense(4096, activation="relu"),  # (B, 4096)
        keras.layers.Dropout(DROPOUT),
        keras.layers.Dense(4096, activation="relu"),  # (B, 4096)
        keras.layers.Dropout(DROPOUT),
        # The output layer: ten classes for Fashion-MNIST.
        keras.layers.Dense(NUM_CLASSES),  # (B, 10)
    ])
    for layer in net.layers:
        init_weights(layer)
    net.jit_compile = False  # the book's graph, not XLA (Keras would pick XLA on a GPU; --fast does)
    return net


# ---- Initialisation ----


def init_weights(layer: keras.layers.Layer) -> None:
    """Xavier (Glorot) uniform weights and zero biases, as in the book's training function."""
    if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D):  # Keras's defaults, made explicit
        layer.kernel.assign(keras.initializers.GlorotUniform()(layer.kernel.shape))
        layer.bias.assign(keras.initializers.Zeros()(layer.bias.shape))


# ---- Layer shapes ----

KINDS = {keras.layers.Conv2D: "conv", keras.layers.MaxPool2D: "pool", keras.layers.Flatten: "flatten",
         keras.layers.Dense: "dense", keras.layers.Dropout: "dropout"}


def layer_summary(net: keras.Sequential, resize: int = BOOK.resize) -> None:
    """Print each layer's output shape for one image, as the book does."""
    X = tf.random.uniform((1, resize, resize, IN_CHANNELS))
    for layer in net.layers:
        X = layer(X)
        print(layer.__class__.__name__, "output shape:\t", tuple(X.shape))


def layer_report(net: keras.Sequential, resize: int = BOOK.resize) -> dict:
    """Per-layer output shapes (NCHW, batch left out) and parameters, as canonical JSON."""
    X = tf.zeros((1, resize, resize, IN_CHANNELS))
    layers = []
    for layer in net.layers:
        X = layer(X)
        if type(layer) in KINDS:  # ReLU is inside Conv2D and Dense
            shape = tuple(X.shape[1:])
            chw = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape  # (H, W, C) to (C, H, W)
            layers.append((KINDS[type(layer)], chw, layer.count_params()))
    return make_report(BACKEND, resize, layers)


# ---- Neutral weights ----


def _named_layers(net: keras.Sequential) -> list[tuple[str, keras.layers.Layer]]:
    """The layers under their canonical names (conv1, pool1, ...)."""
    layers = [m for m in net.layers if type(m) in KINDS]
    return list(zip(canonical_names([KINDS[type(m)] for m in layers]), layers))


def get_weights(net: keras.Sequential) -> dict[str, np.ndarray]:
    """The weights under canonical names, moved from Keras's layouts to the canonical ones."""
    weights = {}
    for name, layer in _named_layers(net):
        if isinstance(layer, keras.layers.Conv2D):
            weights[f"{name}.weight"] = layer.kernel.numpy().transpose(3, 2, 0, 1).copy()  # HWIO to OIHW
        elif isinstance(layer, keras.layers.Dense):
            weight = layer.kernel.numpy().T  # (in, out) to (out, in)
            if name == "dense1":  # its inputs come from an NHWC flatten: H, W, C order
                weight = dense_in_hwc_to_chw(weight, flat_chw(net.input_shape[1]))
            weights[f"{name}.weight"] = weight.copy()
        else:
            continue
        weights[f"{name}.bias"] = layer.bias.numpy().copy()
    return weights


def set_weights(net: keras.Sequential, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the network, in place."""
    for name, layer in _named_layers(net):
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(weights[f"{name}.weight"].transpose(2, 3, 1, 0))  # OIHW to HWIO
        elif isinstance(layer, keras.layers.Dense):
            weight = weights[f"{name}.weight"]
            if name == "dense1":
                weight = dense_in_chw_to_hwc(weight, flat_chw(net.input_shape[1]))
            layer.kernel.assign(weight.T)  # (out, in) to (in, out)
        else:
            continue
        layer.bias.assign(weights[f"{name}.bias"])


# ---- NumPy in, NumPy out ----


def predict(net: keras.Sequential, X: np.ndarray) -> np.ndarray:
    """Logits for float32 images (B, 1, H, W), dropout off (for tests and cross-framework parity)."""
    y_hat = net(np.transpose(X, (0, 2, 3, 1)), training=False)  # NCHW to NHWC
    return tf.cast(y_hat, tf.float32).numpy()  # a --fast network's logits are bf16


# ---- Command line ----


def main(argv: list[str] | None = None) -> None:
    """Print the layer summary, or the canonical shape report as JSON."""
    args = model_parser(BACKEND).parse_args(argv)
    net = alexnet(args.resize)
    if args.json:
        print(json.dumps(layer_report(net, args.resize)))
    else:
        layer_summary(net, args.resize)


if __name__ == "__main__":
    run_cli(main)
