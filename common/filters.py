"""What the first layer learned: conv1's 96 11x11 filters as one image grid, from the neutral weights alone.

    python -m common.filters W [--out conv1_filters.png] [--scale N]

Like the chapter's figure of AlexNet's first-layer filters: 8 rows of 12, each filter stretched to
its own range (black its lowest weight, white its highest), on a white grid. Framework-free.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError, safe_open

from common.atomic import atomic_write_bytes
from common.errors import Help, Parser, UserError, path_arg, positive_int, run_cli
from common.spec import param_shapes
from common.weights import read_metadata, weights_file

NAME = "conv1.weight"
SHAPE = param_shapes()[NAME]  # (96, 1, 11, 11) at any input size
ROWS, COLS = 8, 12  # 96 filters
GAP = 2  # pixels of white between the filters and around them
SCALE = 6  # pixels per weight
MAX_SCALE = 32
DEFAULT_NAME = "conv1_filters.png"

# ---- Reading ----


def read_conv1(path: Path) -> np.ndarray:
    """conv1's weights (96, 1, 11, 11) from a neutral weights file, without reading the rest."""
    path = Path(path)
    read_metadata(path)  # a checkpoint, a folder, a missing or unreadable file: one line, naming what to pass
    try:
        with safe_open(str(path), framework="np") as f:
            if NAME not in f.keys():
                raise UserError(f"{path} holds no {NAME}: pass AlexNet's neutral weights (a run's weights.safetensors)")
            weight = f.get_tensor(NAME)
    except (SafetensorError, OSError) as e:
        raise UserError(f"{path} is not a readable safetensors weights file ({e}): pass a run's "
                        f"weights.safetensors") from None
    if tuple(weight.shape) != SHAPE:
        raise UserError(f"{path}: {NAME} has shape {tuple(weight.shape)}, not AlexNet's {SHAPE}: pass AlexNet's "
                        f"neutral weights")
    if not np.isfinite(weight).all():
        raise UserError(f"{path}: {NAME} holds NaN or infinite values (the run diverged): train again with a "
                        f"smaller --lr")
    return weight.astype(np.float32)


# ---- The grid ----


def normalise(kernel: np.ndarray) -> np.ndarray:
    """One filter stretched to [0, 1] over its own range (a constant filter is mid-grey)."""
    low, high = float(kernel.min()), float(kernel.max())
    if high == low:
        return np.full(kernel.shape, 0.5, np.float32)
    return (kernel - low) / (high - low)


def cell_origin(index: int, scale: int = SCALE) -> tuple[int, int]:
    """The top-left pixel (row, column) of filter `index` in the grid, filled row by row."""
    side = SHAPE[2] * scale
    row, col = divmod(index, COLS)
    return GAP + row * (side + GAP), GAP + col * (side + GAP)


def filter_grid(weight: np.ndarray, scale: int = SCALE) -> np.ndarray:
    """The 96 filters as one grey uint8 image, ROWS x COLS cells of 11*scale pixels, GAP white between."""
    side = SHAPE[2] * scale
    grid = np.full((GAP + ROWS * (side + GAP), GAP + COLS * (side + GAP)), 255, np.uint8)
    for i, kernel in enumerate(weight[:, 0]):  # one input channel: grey images
        cell = np.kron(normalise(kernel), np.ones((scale, scale), np.float32))  # nearest neighbour
        top, left = cell_origin(i, scale)
        grid[top:top + side, left:left + side] = np.rint(cell * 255).astype(np.uint8)
    return grid


def write_filters(weights: Path, out: Path | None = None, scale: int = SCALE) -> Path:
    """Write the grid of a weights file's conv1 filters as a PNG, atomically; return its path."""
    out = Path(out) if out is not None else Path(weights).with_name(DEFAULT_NAME)
    if not 1 <= scale <= MAX_SCALE:
        raise UserError(f"--scale {scale} is out of range: pick 1 to {MAX_SCALE} pixels per weight")
    if out.is_dir():
        raise UserError(f"{out} is a directory: give the image's file name, for example {out / DEFAULT_NAME}")
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: the grid is written as a PNG: give a name ending in .png")
    buffer = io.BytesIO()
    Image.fromarray(filter_grid(read_conv1(weights), scale), mode="L").save(buffer, format="PNG")
    try:
        atomic_write_bytes(out, buffer.getvalue())
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e}): pick a writable path with --out") from None
    return out


# ---- Command line ----


def main(argv: list[str] | None = None) -> None:
    """Write the filter grid and say where."""
    p = Parser(prog="python -m common.filters", formatter_class=Help,
                description="Write conv1's 96 learned 11x11 filters as one PNG grid (8 x 12).")
    p.add_argument("weights", type=weights_file, help="neutral weights (a run's weights.safetensors, or its directory)")
    p.add_argument("--out", type=path_arg, default=None,
                   help=f"the PNG to write (default: {DEFAULT_NAME} beside the weights)")
    p.add_argument("--scale", type=positive_int, default=SCALE, help="pixels per weight")
    args = p.parse_args(argv)
    out = write_filters(args.weights, args.out, args.scale)
    print(f"wrote {out}: conv1's {SHAPE[0]} filters, {ROWS} x {COLS}, each to its own range")


if __name__ == "__main__":
    run_cli(main)
