"""AlexNet as data: each layer's output shape, parameters, FLOPs and memory for any input size.

Run `python -m common.spec [--resize N] [--batch-size B]` for the table (the book's exercises: where do
the parameters live, where does the compute go, and what dominates the memory in training?).
"""

from dataclasses import dataclass
from itertools import pairwise

from common.errors import InputTooSmallError, Parser, positive_int, run_cli
from common.hparams import BOOK, IN_CHANNELS, NUM_CLASSES

BYTES_PER_FLOAT = 4  # float32


@dataclass(frozen=True)
class Layer:
    """One layer of the network; ReLU is folded into the conv and hidden dense layers."""

    name: str
    kind: str  # conv | pool | flatten | dense | dropout
    units: int = 0  # output channels (conv) or features (dense)
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    relu: bool = False


# The book's AlexNet (conv1 unpadded in every backend, see README).
LAYERS = (
    Layer("conv1", "conv", 96, kernel=11, stride=4, padding=0, relu=True),
    Layer("pool1", "pool", kernel=3, stride=2),
    Layer("conv2", "conv", 256, kernel=5, padding=2, relu=True),
    Layer("pool2", "pool", kernel=3, stride=2),
    Layer("conv3", "conv", 384, kernel=3, padding=1, relu=True),
    Layer("conv4", "conv", 384, kernel=3, padding=1, relu=True),
    Layer("conv5", "conv", 256, kernel=3, padding=1, relu=True),
    Layer("pool3", "pool", kernel=3, stride=2),
    Layer("flatten", "flatten"),
    Layer("dense1", "dense", 4096, relu=True),
    Layer("dropout1", "dropout"),
    Layer("dense2", "dense", 4096, relu=True),
    Layer("dropout2", "dropout"),
    Layer("dense3", "dense", NUM_CLASSES),
)
WEIGHTED = tuple(layer.name for layer in LAYERS if layer.kind in ("conv", "dense"))


@dataclass(frozen=True)
class LayerStats:
    """A layer's output shape (C, H, W or features) and its costs for one image."""

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    flops: int  # multiply-adds count 2; ReLU, pooling and dropout are left out
    activation_bytes: int  # the float32 output of this layer for one image


def _side(n: int, layer: Layer) -> int:
    """Output side of a conv or pool: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * layer.padding - layer.kernel) // layer.stride + 1


def _min_side() -> int:
    """The smallest input side for which every layer still has an output."""
    n = 1
    while not _fits(n):
        n += 1
    return n


def _fits(resize: int) -> bool:
    """Whether every conv and pool has an output of at least 1x1 at this input side."""
    n = resize
    for layer in LAYERS:
        if layer.kind in ("conv", "pool"):
            n = _side(n, layer)
            if n < 1:
                return False
    return True


MIN_RESIZE = _min_side()  # 67: the flatten is then 256x1x1


def check_resize(resize: int) -> None:
    """Refuse an input side the network cannot take, with the fix in the message."""
    if resize < MIN_RESIZE:
        raise InputTooSmallError(
            f"input size {resize} is too small for AlexNet: the third max-pool would have no "
            f"output; the smallest valid size is {MIN_RESIZE}: use --resize {MIN_RESIZE} or larger (the book "
            f"uses {BOOK.resize})"
        )


def layer_stats(resize: int = BOOK.resize) -> list[LayerStats]:
    """Every layer's output shape, parameters, FLOPs and activation memory at this input."""
    check_resize(resize)
    c, h = IN_CHANNELS, resize
    features = 0
    stats = []
    for layer in LAYERS:
        params = flops = 0
        if layer.kind == "conv":
            h = _side(h, layer)
            params = layer.units * c * layer.kernel**2 + layer.units
            flops = 2 * c * layer.kernel**2 * layer.units * h * h
            c = layer.units
        elif layer.kind == "pool":
            h = _side(h, layer)
        elif layer.kind == "flatten":
            features = c * h * h
        elif layer.kind == "dense":
            params = features * layer.units + layer.units
            flops = 2 * features * layer.units
            features = layer.units
        shape = (c, h, h) if features == 0 else (features,)
        size = c * h * h if features == 0 else features
        stats.append(LayerStats(layer.name, layer.kind, shape, params, flops, size * BYTES_PER_FLOAT))
    return stats


def flat_features(resize: int = BOOK.resize) -> int:
    """Features entering the first dense layer (6400 = 256x5x5 at 224)."""
    return next(s.shape[0] for s in layer_stats(resize) if s.kind == "flatten")


def flat_chw(resize: int = BOOK.resize) -> tuple[int, int, int]:
    """The (C, H, W) shape the flatten layer flattens (256x5x5 at 224): channels-last backends reorder by it."""
    return next(s.shape for s in layer_stats(resize) if s.name == "pool3")


def num_params(resize: int = BOOK.resize) -> int:
    """Total parameters (46,764,746 at 224)."""
    return sum(s.params for s in layer_stats(resize))


def forward_flops(resize: int = BOOK.resize) -> int:
    """Forward FLOPs for one image (about 1.88 G at 224); training is about three times this."""
    return sum(s.flops for s in layer_stats(resize))


def weights_bytes(resize: int = BOOK.resize) -> int:
    """The float32 weights' size in bytes (187 MB at 224): a checkpoint holds at least this much."""
    return num_params(resize) * BYTES_PER_FLOAT


def input_bytes(resize: int) -> int:
    """One image's resized input in bytes: it stays float32 in every mode."""
    return IN_CHANNELS * resize**2 * BYTES_PER_FLOAT


def training_bytes(resize: int, batch_size: int, dtype: str = "float32") -> int:
    """At least this much memory trains a minibatch: the weights and their gradients, and every layer's output.

    The backward pass needs each image's input and layer outputs (in `dtype`: bfloat16 takes 2 bytes a value), so
    they are all kept. The backends' peak memory was 2.1 to 2.4 times this at 224 and batch 128 (docs/results.md).
    """
    bytes_per_value = 2 if dtype == "bfloat16" else BYTES_PER_FLOAT
    activations = sum(s.activation_bytes for s in layer_stats(resize)) // BYTES_PER_FLOAT * bytes_per_value
    per_image = input_bytes(resize) + activations
    return 2 * weights_bytes(resize) + batch_size * per_image


def evaluation_bytes(resize: int, batch_size: int) -> int:
    """At least this much memory runs a minibatch forward without gradients: the weights, and for each image
    its input on the host beside the largest pair of a layer's input and output, which exist at once."""
    sizes = [input_bytes(resize), *(s.activation_bytes for s in layer_stats(resize))]
    per_image = sizes[0] + max(a + b for a, b in pairwise(sizes))
    return weights_bytes(resize) + batch_size * per_image


def param_shapes(resize: int = BOOK.resize) -> dict[str, tuple[int, ...]]:
    """Canonical neutral-weight names and shapes: conv OIHW, dense (out, in)."""
    shapes: dict[str, tuple[int, ...]] = {}
    c, features = IN_CHANNELS, flat_features(resize)
    for layer in LAYERS:
        if layer.kind == "conv":
            shapes[f"{layer.name}.weight"] = (layer.units, c, layer.kernel, layer.kernel)
            c = layer.units
        elif layer.kind == "dense":
            shapes[f"{layer.name}.weight"] = (layer.units, features)
            features = layer.units
        else:
            continue
        shapes[f"{layer.name}.bias"] = (layer.units,)
    return shapes


# ---- The table ----


def _fmt(n: float, unit: str = "") -> str:
    """A number with a metric suffix: 46.8M, 1.88G."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def table(resize: int = BOOK.resize, batch_size: int = BOOK.batch_size) -> str:
    """The per-layer table with totals, the convolution vs dense split and a minibatch's training memory."""
    stats = layer_stats(resize)
    rows = [f"AlexNet at {resize}x{resize} (per image, float32)", ""]
    rows.append(f"{'layer':<9} {'output':<14} {'params':>12} {'FLOPs':>9} {'activations':>12}")
    for s in stats:
        shape = "x".join(map(str, s.shape))
        rows.append(
            f"{s.name:<9} {shape:<14} {s.params:>12,} {_fmt(s.flops):>9} {_fmt(s.activation_bytes, 'B'):>12}"
        )
    params, flops = num_params(resize), forward_flops(resize)
    acts = sum(s.activation_bytes for s in stats)
    rows += ["", f"total params {params:,} ({_fmt(weights_bytes(resize), 'B')} of weights)"]
    rows.append(f"forward {_fmt(flops)}FLOP per image, training about {_fmt(3 * flops)}FLOP")
    rows.append(f"activations {_fmt(acts, 'B')} per image in the forward pass")
    for kind, label in (("conv", "convolutions"), ("dense", "dense layers")):
        p = sum(s.params for s in stats if s.kind == kind)
        f = sum(s.flops for s in stats if s.kind == kind)
        rows.append(f"{label:<13} {p / params:6.1%} of params, {f / flops:6.1%} of FLOPs")
    weights, need = 2 * weights_bytes(resize), training_bytes(resize, batch_size)
    rows.append(f"training a minibatch of {batch_size} keeps at least {_fmt(need, 'B')}: {_fmt(weights, 'B')} of "
                f"weights and gradients, {_fmt(need - weights, 'B')} of inputs and activations")
    forward = evaluation_bytes(resize, batch_size)
    rows.append(f"its forward pass alone (predict) at least {_fmt(forward, 'B')}: the weights, and each image's "
                f"input and its largest layer's input and output")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Print the table for the input size given on the command line."""
    parser = Parser(prog="python -m common.spec", description=table.__doc__)
    parser.add_argument("--resize", type=int, default=BOOK.resize,
                        help=f"input side in pixels (default: {BOOK.resize}, minimum {MIN_RESIZE})")
    parser.add_argument("--batch-size", type=positive_int, default=BOOK.batch_size,
                        help=f"minibatch size, for the training memory (default: {BOOK.batch_size})")
    run_cli(lambda: print(table(**vars(parser.parse_args(argv)))))


if __name__ == "__main__":
    main()
