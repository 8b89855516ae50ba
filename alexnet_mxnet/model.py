"""The book's AlexNet in MXNet Gluon (d2l.ai, chapter 8.1), channels-first (NCHW)."""

import json

import mxnet as mx
import numpy as np  # real NumPy, as in the other backends; MXNet's arrays are spelled mx.np.… everywhere
from mxnet import init, npx
from mxnet.gluon import nn

from common.cli import model_parser
from common.errors import run_cli
from common.hparams import BOOK, DROPOUT, IN_CHANNELS, NUM_CLASSES
from common.shapes import canonical_names, make_report
from common.spec import check_resize

npx.set_np()  # the book's MXNet: Gluon with NumPy-style arrays

BACKEND = "mxnet"

# ---- The network ----


def alexnet(resize: int = BOOK.resize, device: mx.Context | None = None) -> nn.HybridSequential:
    """AlexNet for `resize` x `resize` grey images, with Xavier weights and zero biases."""
    check_resize(resize)
    device = device or mx.cpu()
    net = nn.HybridSequential()
    net.add(
        # A large 11x11 window with stride 4 to capture objects; conv1 unpadded in every backend.
        nn.Conv2D(96, kernel_size=11, strides=4, activation="relu"),  # (B, 96, 54, 54)
        nn.MaxPool2D(pool_size=3, strides=2),  # (B, 96, 26, 26)
        # A smaller window, padding 2 keeps the side, more output channels.
        nn.Conv2D(256, kernel_size=5, padding=2, activation="relu"),  # (B, 256, 26, 26)
        nn.MaxPool2D(pool_size=3, strides=2),  # (B, 256, 12, 12)
        # Three successive 3x3 convolutions; only the last is followed by pooling.
        nn.Conv2D(384, kernel_size=3, padding=1, activation="relu"),  # (B, 384, 12, 12)
        nn.Conv2D(384, kernel_size=3, padding=1, activation="relu"),  # (B, 384, 12, 12)
        nn.Conv2D(256, kernel_size=3, padding=1, activation="relu"),  # (B, 256, 12, 12)
        nn.MaxPool2D(pool_size=3, strides=2),  # (B, 256, 5, 5)
        nn.Flatten(),  # (B, 6400)
        # Dense layers many times larger than LeNet's, with dropout against overfitting.
        nn.Dense(4096, activation="relu"),  # (B, 4096)
        nn.Dropout(DROPOUT),
        nn.Dense(4096, activation="relu"),  # (B, 4096)
        nn.Dropout(DROPOUT),
        # The output layer: ten classes for Fashion-MNIST.
        nn.Dense(NUM_CLASSES),  # (B, 10)
    )
    init_weights(net, device)
    # One compiled graph per batch shape instead of Python calls per layer, its memory kept from step to step:
    # the same math, 1.07x the training speed of a plain hybridize() on a 2-core CPU (docs/results.md).
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.np.zeros((1, IN_CHANNELS, resize, resize), ctx=device))  # input sizes are inferred: initialise now
    return net


# ---- Initialisation ----


def init_weights(net: nn.HybridSequential, device: mx.Context) -> None:
    """Xavier (Glorot) uniform weights and zero biases, as in the book's training function."""
    # init.Xavier() draws from U(±sqrt(6 / (fan_in + fan_out))); Conv2D and Dense keep their own
    # bias_initializer='zeros'. Gluon defers the draw to the first forward pass, when shapes are known.
    net.initialize(init.Xavier(), ctx=device)


# ---- Layer shapes ----

KINDS = {nn.Conv2D: "conv", nn.MaxPool2D: "pool", nn.Flatten: "flatten", nn.Dense: "dense",
         nn.Dropout: "dropout"}


def layer_summary(net: nn.HybridSequential, resize: int = BOOK.resize) -> None:
    """Print each layer's output shape for one image, as the book does."""
    X = mx.np.random.uniform(size=(1, IN_CHANNELS, resize, resize), ctx=net.collect_params().list_ctx()[0])
    for layer in net:
        X = layer(X)
        print(layer.__class__.__name__, "output shape:\t", X.shape)


def layer_report(net: nn.HybridSequential, resize: int = BOOK.resize) -> dict:
    """Per-layer output shapes (NCHW, batch left out) and parameters, as canonical JSON."""
    X = mx.np.zeros((1, IN_CHANNELS, resize, resize), ctx=net.collect_params().list_ctx()[0])
    layers = []
    for layer in net:
        X = layer(X)
        if type(layer) in KINDS:  # every layer: ReLU is the conv's or dense layer's activation
            params = sum(p.data().size for p in layer.collect_params().values())
            layers.append((KINDS[type(layer)], tuple(X.shape[1:]), params))
    return make_report(BACKEND, resize, layers)


# ---- Neutral weights ----


def _named_layers(net: nn.HybridSequential) -> list[tuple[str, nn.HybridBlock]]:
    """The layers under their canonical names (conv1, pool1, ...)."""
    layers = [m for m in net if type(m) in KINDS]
    return list(zip(canonical_names([KINDS[type(m)] for m in layers]), layers))


def get_weights(net: nn.HybridSequential) -> dict[str, np.ndarray]:
    """The weights under canonical names; MXNet's layouts (OIHW, (out, in)) are already the canonical ones."""
    weights = {}
    for name, layer in _named_layers(net):
        if isinstance(layer, nn.Conv2D | nn.Dense):
            weights[f"{name}.weight"] = layer.weight.data().asnumpy()  # asnumpy() copies
            weights[f"{name}.bias"] = layer.bias.data().asnumpy()
    return weights


def set_weights(net: nn.HybridSequential, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the network, in place."""
    for name, layer in _named_layers(net):
        if isinstance(layer, nn.Conv2D | nn.Dense):
            layer.weight.set_data(mx.np.array(weights[f"{name}.weight"], dtype=np.float32))
            layer.bias.set_data(mx.np.array(weights[f"{name}.bias"], dtype=np.float32))


# ---- NumPy in, NumPy out ----


def predict(net: nn.HybridSequential, X: np.ndarray) -> np.ndarray:
    """Logits for float32 images (B, 1, H, W), dropout off (for tests and cross-framework parity)."""
    # Outside autograd.record() Gluon runs in predict mode: dropout is off.
    return net(mx.np.array(X, dtype=np.float32, ctx=net.collect_params().list_ctx()[0])).asnumpy()


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
