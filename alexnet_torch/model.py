"""The book's AlexNet in PyTorch (d2l.ai, chapter 8.1): shapes channels-first (NCHW), stored channels-last."""

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import model_parser
from common.errors import run_cli
from common.hparams import BOOK, DROPOUT, IN_CHANNELS, NUM_CLASSES
from common.shapes import canonical_names, make_report
from common.spec import check_resize, flat_features

BACKEND = "torch"

# ---- The network ----

# conv1 in blocks. With one input channel, oneDNN has no fast kernel for conv1's weight gradient on a CPU (about
# a tenth of a bf16 training step). Cut the image into 4x4 blocks stacked as 16 channels (space-to-depth, one block
# per stride) and the 11x11 kernel, padded with zeros to 12x12, the same way: conv1 becomes a 3x3 convolution over
# 16 channels with the same sums of products (in another order), the same parameters and the same gradients, and
# the step trains 1.1x faster in bf16 on a 2-core CPU (docs/results.md).


class _SpaceToDepthConv2d(nn.Conv2d):
    """The book's unpadded conv1, computed on a CPU as a convolution over stride x stride blocks of its input."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if X.device.type != "cpu" or torch.onnx.is_in_onnx_export():  # measured on a CPU only; a GPU and the
            return super().forward(X)  # ONNX file (whose runtime picks its own kernels) get the book's layer
        (k, _), (s, _) = self.kernel_size, self.stride  # 11, 4
        blocks = -(-k // s)  # 3: the kernel's side in whole blocks
        oh, ow = ((n - k) // s + 1 for n in X.shape[2:])  # 54, 54: the book's output
        # the rows and columns the windows reach, cropped or zero-padded to whole blocks (F.pad crops where negative)
        X = F.pad(X, (0, s * (ow + blocks - 1) - X.shape[3], 0, s * (oh + blocks - 1) - X.shape[2]))  # (B, 1, 224, 224)
        X = F.pixel_unshuffle(X, s).contiguous(memory_format=torch.channels_last)  # (B, 16, 56, 56)
        W = F.pad(self.weight, (0, s * blocks - k, 0, s * blocks - k))  # (96, 1, 12, 12)
        W = F.pixel_unshuffle(W, s).contiguous(memory_format=torch.channels_last)  # (96, 16, 3, 3)
        return F.conv2d(X, W, self.bias)  # (B, 96, 54, 54)


def alexnet(resize: int = BOOK.resize) -> nn.Sequential:
    """AlexNet for `resize` x `resize` grey images, with Xavier weights and zero biases."""
    check_resize(resize)
    net = nn.Sequential(
        # A large 11x11 window with stride 4 to capture objects; conv1 unpadded in every backend.
        # Where a max-pool follows, its ReLU comes after it: the two commute (the largest of nine ReLUs is
        # the ReLU of the largest), so this is the book's math, gradients included, with ReLU on 4 to 6
        # times fewer values: 1.13x the training speed in bf16 on a 2-core CPU (docs/results.md).
        # ReLU in place: one pass over memory less per activation.
        _SpaceToDepthConv2d(IN_CHANNELS, 96, kernel_size=11, stride=4, padding=0),  # (B, 96, 54, 54)
        nn.MaxPool2d(kernel_size=3, stride=2), nn.ReLU(inplace=True),  # (B, 96, 26, 26)
        # A smaller window, padding 2 keeps the side, more output channels.
        nn.Conv2d(96, 256, kernel_size=5, padding=2),  # (B, 256, 26, 26)
        nn.MaxPool2d(kernel_size=3, stride=2), nn.ReLU(inplace=True),  # (B, 256, 12, 12)
        # Three successive 3x3 convolutions; only the last is followed by pooling.
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),  # (B, 384, 12, 12)
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),  # (B, 384, 12, 12)
        nn.Conv2d(384, 256, kernel_size=3, padding=1),  # (B, 256, 12, 12)
        nn.MaxPool2d(kernel_size=3, stride=2), nn.ReLU(inplace=True),  # (B, 256, 5, 5)
        nn.Flatten(),  # (B, 6400)
        # Dense layers many times larger than LeNet's, with dropout against overfitting.
        nn.Linear(flat_features(resize), 4096), nn.ReLU(inplace=True),  # (B, 4096)
        nn.Dropout(p=DROPOUT),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True),  # (B, 4096)
        nn.Dropout(p=DROPOUT),
        # The output layer: ten classes for Fashion-MNIST.
        nn.Linear(4096, NUM_CLASSES),  # (B, 10)
    )
    net.apply(init_weights)
    # Stored channels-last, the NHWC that TF and JAX compute in (shapes stay NCHW): oneDNN's and cuDNN's
    # fast layout, so the convolutions skip a conversion of every tensor (1.15x on a 2-core CPU, docs/results.md).
    return net.to(memory_format=torch.channels_last)


# ---- Initialisation ----


def init_weights(module: nn.Module) -> None:
    """Xavier (Glorot) uniform weights and zero biases, as in the book's training function."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


# ---- Layer shapes ----

KINDS = {_SpaceToDepthConv2d: "conv", nn.Conv2d: "conv", nn.MaxPool2d: "pool", nn.Flatten: "flatten",
         nn.Linear: "dense", nn.Dropout: "dropout"}


def layer_summary(net: nn.Sequential, resize: int = BOOK.resize) -> None:
    """Print each layer's output shape for one image, as the book does."""
    X = torch.randn(1, IN_CHANNELS, resize, resize, device=next(net.parameters()).device)
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            print(type(layer).__name__.lstrip("_"), "output shape:\t", tuple(X.shape))  # conv1: SpaceToDepthConv2d


def layer_report(net: nn.Sequential, resize: int = BOOK.resize) -> dict:
    """Per-layer output shapes (NCHW, batch left out) and parameters, as canonical JSON."""
    X = torch.zeros(1, IN_CHANNELS, resize, resize, device=next(net.parameters()).device)
    layers = []
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            if type(layer) in KINDS:  # ReLU is folded into the layer before it
                params = sum(p.numel() for p in layer.parameters())
                layers.append((KINDS[type(layer)], tuple(X.shape[1:]), params))
    return make_report(BACKEND, resize, layers)


# ---- Neutral weights ----


def _named_layers(net: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """The layers under their canonical names (conv1, pool1, ...); ReLU left out."""
    layers = [m for m in net if type(m) in KINDS]
    return list(zip(canonical_names([KINDS[type(m)] for m in layers]), layers))


def get_weights(net: nn.Sequential) -> dict[str, np.ndarray]:
    """The weights under canonical names; PyTorch's layouts are already the canonical ones."""
    weights = {}
    for name, layer in _named_layers(net):
        if isinstance(layer, nn.Conv2d | nn.Linear):
            weights[f"{name}.weight"] = layer.weight.detach().cpu().numpy().copy()
            weights[f"{name}.bias"] = layer.bias.detach().cpu().numpy().copy()
    return weights


def set_weights(net: nn.Sequential, weights: dict[str, np.ndarray]) -> None:
    """Copy canonical weights into the network, in place."""
    with torch.no_grad():
        for name, layer in _named_layers(net):
            if isinstance(layer, nn.Conv2d | nn.Linear):
                layer.weight.copy_(torch.from_numpy(weights[f"{name}.weight"]))
                layer.bias.copy_(torch.from_numpy(weights[f"{name}.bias"]))


# ---- NumPy in, NumPy out ----


def predict(net: nn.Sequential, X: np.ndarray) -> np.ndarray:
    """Logits for float32 images (B, 1, H, W), dropout off (for tests and cross-framework parity)."""
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(X).to(next(net.parameters()).device)).cpu().numpy()


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
