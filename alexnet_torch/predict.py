"""Evaluate neutral weights and classify images with PyTorch: `python -m alexnet_torch.predict --help`."""

import numpy as np
import torch
from torch import nn

from alexnet_torch.data import preprocess
from alexnet_torch.model import alexnet, predict, set_weights
from alexnet_torch.step import get_device, on_cpu
from common import predict as common_predict
from common.errors import run_cli

BACKEND = "torch"

# ---- The network from neutral weights ----


def load_net(weights: dict[str, np.ndarray], resize: int, device: torch.device) -> nn.Sequential:
    """AlexNet at `resize` on `device`, holding `weights` (from any backend)."""
    net = alexnet(resize).to(device)
    set_weights(net, weights)
    return net


# ---- Feature maps ----


def feature_maps(net: nn.Sequential, X: np.ndarray) -> list[np.ndarray]:
    """The activations of conv1 and conv2 after their ReLU for one image X (1, 1, H, W), each (C, H, W)."""
    net.eval()
    maps, X = [], torch.from_numpy(X).to(next(net.parameters()).device)
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            if isinstance(layer, nn.Conv2d):  # its ReLU here: in the network it comes after the pooling
                maps.append(torch.relu(X[0]).cpu().numpy())  # (96, 54, 54), then (256, 26, 26)
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
