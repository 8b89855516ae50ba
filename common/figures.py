"""The PNG figures of `predict`: the confusion matrix, test images with their labels, feature maps.

matplotlib draws off-screen (Agg); each figure is written atomically, so a reader never sees half of one.
"""

import io
import math
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_bytes


def _pyplot():
    """matplotlib's pyplot, drawing off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Write `fig` as a PNG at `path` atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion(path: Path, confusion: np.ndarray, names: list[str], title: str) -> None:
    """The confusion matrix (rows: true class, columns: predicted), shaded by each row's share, with counts."""
    plt = _pyplot()
    shares = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=120)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if shares[i, j] > 0.5 else "black")
    ticks = range(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    _save(fig, path)


def plot_predictions(path: Path, images: np.ndarray, true: list[str], predicted: list[str], cols: int = 8) -> None:
    """Images (N, 28, 28) titled true/predicted as the book's predict_ch3 does; wrong ones in red, framed."""
    plt = _pyplot()
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.6 * rows), dpi=120, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, true, predicted):
        wrong = t != p
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{t}\n{p}" + (" (x)" if wrong else ""), fontsize=7, color="red" if wrong else "black")
        if wrong:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set(color="red", linewidth=2)
    fig.suptitle("true / predicted (wrong ones in red)", fontsize=9)
    _save(fig, path)


def plot_feature_maps(path: Path, maps: np.ndarray, title: str) -> None:
    """One layer's activations (C, H, W) for one image: a grid of its channels, each scaled to its own range."""
    plt = _pyplot()
    cols = math.ceil(math.sqrt(len(maps) * 1.5))
    rows = math.ceil(len(maps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.6 * cols, 0.6 * rows + 0.4), dpi=120, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, channel in zip(axes.flat, maps):
        ax.imshow(channel, cmap="viridis", vmin=0, vmax=max(float(channel.max()), 1e-12))
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_input(path: Path, image: np.ndarray, title: str) -> None:
    """The 28x28 image as the network sees it (after fitting and inversion)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2, 2.2), dpi=120)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    _save(fig, path)
