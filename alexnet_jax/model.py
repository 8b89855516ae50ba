"""The book's AlexNet in JAX with Flax NNX (d2l.ai, chapter 8.1), channels-last (NHWC)."""

import json
from functools import reduce

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from common.cli import model_parser
from common.errors import run_cli
from common.hparams import BOOK, DROPOUT, IN_CHANNELS, NUM_CLASSES
from common.shapes import canonical_names, make_report
from common.spec import check_resize, flat_chw, flat_features
from common.weights import dense_in_chw_to_hwc, dense_in_hwc_to_chw

BACKEND = "jax"


# ---- The network ----

# Max-pooling: what nnx.max_pool computes, with its gradient written as work XLA fuses. nnx.max_pool's
# gradient is XLA's select-and-scatter, which XLA's CPU runs as loops: about 4x the time (docs/results.md).

_WINDOW = [(i, j) for i in range(3) for j in range(3)]  # the book's 3x3 window, row by row; stride 2


def _windows(X: jax.Array, oh: int, ow: int) -> list[jax.Array]:
    """The (B, oh, ow, C) views of X at each window position: every window's pixel (i, j) at once."""
    return [X[:, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2] for i, j in _WINDOW]


@jax.custom_vjp
def _max_pool(X: jax.Array) -> jax.Array:
    """The book's max-pooling, 3x3 windows at stride 2, unpadded: the largest of each window's nine pixels."""
    oh, ow = (X.shape[1] - 3) // 2 + 1, (X.shape[2] - 3) // 2 + 1
    return reduce(jnp.maximum, _windows(X, oh, ow))  # (B, oh, ow, C)


def _max_pool_fwd(X: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """The pooling, keeping its input and output for the gradient."""
    Y = _max_pool(X)
    return Y, (X, Y)


def _max_pool_bwd(saved: tuple[jax.Array, jax.Array], dY: jax.Array) -> tuple[jax.Array]:
    """Each window's gradient goes to its first largest pixel, as select-and-scatter's; overlaps add up."""
    X, Y = saved
    (H, W), (oh, ow) = X.shape[1:3], Y.shape[1:3]
    zero = jnp.zeros((), dY.dtype)
    dX, taken = jnp.zeros_like(X), jnp.zeros(Y.shape, bool)
    for (i, j), pixels in zip(_WINDOW, _windows(X, oh, ow), strict=True):
        first = (pixels == Y) & ~taken  # (B, oh, ow, C): pixel (i, j) is the window's first maximum
        taken = taken | first
        # back to the pixels' places: offset (i, j), stride 2 (one zero between neighbours)
        dX = dX + lax.pad(jnp.where(first, dY, zero), zero,
                          [(0, 0, 0), (i, H - i - 2 * oh + 1, 1), (j, W - j - 2 * ow + 1, 1), (0, 0, 0)])
    return (dX,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _flatten(X: jax.Array) -> jax.Array:
    """(B, H, W, C) to (B, H*W*C): the channels-last flatten."""
    return X.reshape(X.shape[0], -1)


# Under jit the weights are drawn by one compiled program: op by op, NNX compiles each draw of each shape
# on its own, and a process took 6.9 s to build the net instead of 2.3 (docs/results.md: CI time). Same values.
@nnx.jit(static_argnames=("resize", "seed"))
def alexnet(resize: int = BOOK.resize, seed: int = 0) -> nnx.Sequential:
    """AlexNet for `resize` x `resize` grey images, with Xavier weights and zero biases, drawn from `seed`."""
    check_resize(resize)
    rngs = nnx.Rngs(params=seed, dropout=seed)  # explicit random streams: one for weights, one for dropout
    net = nnx.Sequential(
        # A large 11x11 window with stride 4 to capture objects; conv1 unpadded in every backend.
        nnx.Conv(IN_CHANNELS, 96, kernel_size=(11, 11), strides=4, padding=0, rngs=rngs), nnx.relu,  # (B, 54, 54, 96)
        _max_pool,  # (B, 26, 26, 96)
        # A smaller window, padding 2 keeps the side, more output channels.
        nnx.Conv(96, 256, kernel_size=(5, 5), padding=2, rngs=rngs), nnx.relu,  # (B, 26, 26, 256)
        _max_pool,  # (B, 12, 12, 256)
        # Three successive 3x3 convolutions; only the last is followed by pooling.
        nnx.Conv(256, 384, kernel_size=(3, 3), padding=1, rngs=rngs), nnx.relu,  # (B, 12, 12, 384)
        nnx.Conv(384, 384, kernel_size=(3, 3), padding=1, rngs=rngs), nnx.relu,  # (B, 12, 12, 384)
        nnx.Conv(384, 256, kernel_size=(3, 3), padding=1, rngs=rngs), nnx.relu,  # (B, 12, 12, 256)
        _max_pool,  # (B, 5, 5, 256)
        _flatten,  # (B, 6400), in H, W, C order
        # Dense layers many times larger than LeNet's, with dropout against overfitting.
        nnx.Linear(flat_features(resize), 4096, rngs=rngs), nnx.relu,  # (B, 4096)
        nnx.Dropout(DROPOUT, rngs=rngs),
        nnx.Linear(4096, 4096, rngs=rngs), nnx.relu,  # (B, 4096)
        nnx.Dropout(DROPOUT, rngs=rngs),
        # The output layer: ten classes for Fashion-MNIST.
        nnx.Linear(4096, NUM_CLASSES, rngs=rngs),  # (B, 10)
    )
    net.resize = resize  # static: dense1's input order depends on it (neutral weights)
    for layer in net.layers:
        init_weights(layer, rngs)
    return net


# ---- Initialisation ----


def init_weights(layer: object, rngs: nnx.Rngs) -> None:
    """Xavier (Glorot) uniform weights and zero biases, as in the book's training function (Flax's default is LeCun)."""
    if isinstance(layer, nnx.Linear | nnx.Conv):
        kernel = layer.kernel[...]
        layer.kernel[...] = nnx.initializers.glorot_uniform()(rngs.params(), kernel.shape, kernel.dtype)
        layer.bias[...] = jnp.zeros_like(layer.bias[...])


# ---- Layer shapes ----

KINDS = {nnx.Conv: "conv", nnx.Linear: "dense", nnx.Dropout: "dropout"}


def _kind(layer: object) -> str | None:
    """The canonical kind of a layer, or None for ReLU (a plain function in NNX, as in the book's Linen)."""
    if layer is _max_pool:
        return "pool"
    if layer is _flatten:
        return "flatten"
    return KINDS.get(type(layer))


def _name(layer: object) -> str:
    """A layer's name for the summary: its class, or its function's name."""
    if isinstance(layer, nnx.Module):
        return type(layer).__name__
    return getattr(getattr(layer, "func", layer), "__name__", "layer").lstrip("_")


def layer_summary(net: nnx.Sequential, resize: int = BOOK.resize) -> None:
    """Print each layer's output shape for one image, as the book does."""
    X = jax.random.uniform(jax.random.key(0), (1, resize, resize, IN_CHANNELS))
    for layer in nnx.view(net, deterministic=True).layers:  # a view with dropout off; the same arrays
        X = layer(X)
        print(_name(layer), "output shape:\t", tuple(X.shape))


def _count(layer: object) -> int:
    """The parameters a layer holds (0 for a function)."""
    if not isinstance(layer, nnx.Module):
        return 0
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(layer, nnx.Param)))


def layer_report(net: nnx.Sequential, resize: int = BOOK.resize) -> dict:
    """Per-layer output shapes (NCHW, batch left out) and parameters, as canonical JSON."""
    X = jnp.zeros((1, resize, resize, IN_CHANNELS))
    layers = []
    for layer in nnx.view(net, deterministic=True).layers:
        X = layer(X)
        if _kind(layer):  # ReLU is a function of its own, not in the spec's list
            shape = tuple(X.shape[1:])
            chw = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape  # (H, W, C) to (C, H, W)
            layers.append((_kind(layer), chw, _count(layer)))
    return make_report(BACKEND, resize, layers)


# ---- Neutral weights ----


def _named_layers(net: nnx.Sequential) -> list[tuple[str, object]]:
    """The layers under their canonical names (conv1, pool1, ...)."""
    layers = [m for m in net.layers if _kind(m)]
    return list(zip(canonical_names([_kind(m) for m in layers]), layers))


def get_weights(net: nnx.Sequential) -> dict[str, np.ndarray]:
    """The weights under canonical names, moved from Flax's layouts to the canonical ones."""
    weights = {}
    for name, layer in _named_layers(net):
        if isinstance(layer, nnx.Conv):
            weights[f"{name}.weight"] = np.asarray(layer.kernel[...]).transpose(3, 2, 0, 1).copy()  # HWIO to OIHW
        elif isinstance(layer, nnx.Linear):
            weight = np.asarray(layer.kernel[...]).T  # (in, out) to (out, in)
            if name == "dense1":  # its inputs come from an NHWC flatten: H, W, C order
                weight = dense_in_hwc_to_chw(weight, flat_chw(net.resize))
            weights[f"{name}.weight"] = weight.copy()
        else:
            continue
        weights[f"{name}.bias"] = np.asarray(layer.bias[...]).copy()
    return weights


def set_weights(net: nnx.Sequential, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the network, in place (on the device, sharding, of its arrays)."""
    for name, layer in _named_layers(net):
        if isinstance(layer, nnx.Conv):
            kernel = weights[f"{name}.weight"].transpose(2, 3, 1, 0)  # OIHW to HWIO
        elif isinstance(layer, nnx.Linear):
            weight = weights[f"{name}.weight"]
            if name == "dense1":
                weight = dense_in_chw_to_hwc(weight, flat_chw(net.resize))
            kernel = weight.T  # (out, in) to (in, out)
        else:
            continue
        for var, value in ((layer.kernel, kernel), (layer.bias, weights[f"{name}.bias"])):
            old = var[...]
            var[...] = jax.device_put(jnp.asarray(value, old.dtype), old.sharding)


# ---- NumPy in, NumPy out ----


@nnx.jit
def _logits(net: nnx.Sequential, X: jax.Array) -> jax.Array:
    """The network's float32 logits, compiled (a --fast network computes in bf16)."""
    return net(X).astype(jnp.float32)


def predict(net: nnx.Sequential, X: np.ndarray) -> np.ndarray:
    """Logits for float32 images (B, 1, H, W), dropout off (for tests and cross-framework parity)."""
    y_hat = _logits(nnx.view(net, deterministic=True), jnp.asarray(np.transpose(X, (0, 2, 3, 1))))  # NCHW to NHWC
    return np.asarray(y_hat)


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
