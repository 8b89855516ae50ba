"""After training, framework-free: your own images brought to Fashion-MNIST's look, top-3 lines, the
evaluation on the test split (accuracy per class, confusion matrix) and the `predict` command itself.

Each backend's predict.py gives only its forward pass (a `Forward`): the network from neutral weights,
its preprocessing and logits, and the activations of its first two convolutions.
"""

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import fashion_mnist, figures
from common.cli import predict_parser
from common.errors import UserError
from common.hparams import IMAGE_SIDE, NUM_CLASSES
from common.memory import check_memory
from common.weights import load_weights, read_metadata, recorded_resize

# The book's text labels (d2l.get_fashion_mnist_labels), in label order.
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # what a directory offers
MIN_IMAGE_SIDE = 8  # pixels: a smaller picture holds nothing to classify
GRID = 32  # test images in the predictions figure
LIGHT = 128  # a border brighter than this (median, 0-255) is a light background

# ---- Your own images ----


def image_files(paths: list[Path]) -> list[Path]:
    """The files to classify: each file given, and the image files (by suffix) of each directory given."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"directory {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}): "
                                f"point at the pictures themselves")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path} does not exist: check the path")
    return files


def _eight_bit(image):
    """A 16-bit, 32-bit or floating-point grey image as 8-bit grey, by the range its kind of values spans."""
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    top = float(values.max(initial=0.0))
    if image.mode == "F" and top <= 1:
        full = 1.0  # floats from 0 (black) to 1 (white)
    elif top <= 255 and not image.mode.startswith("I;16"):
        full = 255.0  # 8-bit values kept in a wider type
    else:
        full = max(65535.0, top)  # 16-bit, or wider values: the brightest becomes white
    grey = Image.fromarray(np.clip(values * (255 / full), 0, 255).round().astype(np.uint8), "L")
    if "transparency" in image.info:  # a PNG's one see-through value (tRNS): kept as alpha, made white later
        alpha = np.where(values == image.info["transparency"], 0, 255).astype(np.uint8)
        grey = Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
    return grey


def _decode(path: Path):
    """The image in `path` decoded by Pillow, upright (EXIF), as 8-bit grey; transparency becomes white."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if path.is_dir():
        raise UserError(f"{path} is a directory, not a picture: give one image file")
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file: check the path")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty (0 bytes): give a PNG or JPEG picture")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # a big photo is no attack here
            image = Image.open(path)  # Image.open warns: the filter comes first
        with image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # "L" would clip every value above 255
                image = _eight_bit(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                background = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(background, image.convert("RGBA"))
            return image.convert("L")
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image Pillow can read: give a PNG or JPEG picture") from None
    except Image.DecompressionBombError:
        raise UserError(f"{path} has more pixels than Pillow opens (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                        f"million): give a smaller copy of it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path} is a damaged or unreadable image ({e}): give a PNG or JPEG picture") from None


def light_background(grey: np.ndarray) -> bool:
    """Whether the picture's border (its outermost pixels) is mostly light: a dark object on a light ground."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border)) >= LIGHT


def fit(grey: np.ndarray, side: int = IMAGE_SIDE) -> np.ndarray:
    """A light object on black trimmed to its extent, scaled to fit `side` x `side` by aspect, centred on black."""
    from PIL import Image, ImageOps

    image = Image.fromarray(grey)
    box = image.point(lambda v: 255 if v > 40 else 0).getbbox()  # the object: what is clearly not background
    if box:
        image = image.crop(box)
    image = ImageOps.contain(image, (side, side), method=Image.Resampling.LANCZOS)
    canvas = Image.new("L", (side, side), 0)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return np.array(canvas, dtype=np.uint8)  # a writable copy


def prepare_image(path: Path, invert: bool = True) -> tuple[np.ndarray, bool]:
    """A picture file as a Fashion-MNIST-like uint8 (28, 28) image, and whether it was inverted."""
    image = _decode(Path(path))
    if min(image.size) < MIN_IMAGE_SIDE:
        raise UserError(f"{path} is only {image.width}x{image.height} pixels: give a picture at least "
                        f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}")
    grey = np.asarray(image, dtype=np.uint8)
    inverted = invert and light_background(grey)
    fitted = fit(255 - grey if inverted else grey)
    if not fitted.any():  # nothing stood out from the background (fit's threshold)
        raise UserError(f"{path} shows no object to classify (a blank or nearly even picture): give a picture of "
                        f"a piece of clothing")
    return fitted, inverted


def prepare_images(paths: list[Path], invert: bool = True) -> tuple[np.ndarray, list[bool]]:
    """Every picture as uint8 (N, 28, 28), and which were inverted; a bad one stops all before any work."""
    prepared = [prepare_image(path, invert) for path in paths]
    return np.stack([image for image, _ in prepared]), [inverted for _, inverted in prepared]


# ---- Probabilities ----


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of logits (N, 10), computed stably."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
    """The `k` likeliest classes of one image's probabilities, likeliest first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(CLASSES[i], float(probs[i])) for i in order]


def top_line(name: str, probs: np.ndarray, k: int = 3) -> str:
    """One line for one file: its top `k` classes with their probabilities."""
    return f"{name}: " + ", ".join(f"{c} {p:.3f}" for c, p in top_k(probs, k))


# ---- Evaluation ----


def confusion_matrix(y: np.ndarray, y_hat: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts (num_classes, num_classes): row the true class, column the predicted one."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y, dtype=np.int64), np.asarray(y_hat, dtype=np.int64)), 1)
    return confusion


def per_class(confusion: np.ndarray) -> dict[str, dict]:
    """Each class's accuracy (None when the split has none of it) and count, under the book's names."""
    counts = confusion.sum(axis=1)
    return {name: {"accuracy": float(confusion[i, i] / counts[i]) if counts[i] else None, "count": int(counts[i])}
            for i, name in enumerate(CLASSES)}


def evaluation(y: np.ndarray, y_hat: np.ndarray) -> dict:
    """Accuracy, accuracy per class and the confusion matrix of predictions `y_hat` of labels `y`."""
    confusion = confusion_matrix(y, y_hat)
    return {"accuracy": float(np.trace(confusion) / max(len(y), 1)), "examples": len(y),
            "per_class": per_class(confusion), "confusion": confusion.tolist()}


def class_table(result: dict) -> str:
    """The per-class accuracy as a text table, the whole accuracy last."""
    lines = [f"{'class':<12} {'accuracy':>8} {'images':>7}"]
    for name, row in result["per_class"].items():
        acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        lines.append(f"{name:<12} {acc:>8} {row['count']:>7}")
    lines.append(f"{'all':<12} {result['accuracy']:>8.3f} {result['examples']:>7}")
    return "\n".join(lines)


def write_evaluation(out_dir: Path, result: dict, images: np.ndarray, y: np.ndarray, y_hat: np.ndarray,
                     title: str) -> list[Path]:
    """The confusion matrix and a grid of the first test images with true and predicted labels, as PNGs."""
    paths = [Path(out_dir) / "confusion.png", Path(out_dir) / "predictions.png"]
    figures.plot_confusion(paths[0], np.array(result["confusion"]), list(CLASSES), title)
    figures.plot_predictions(paths[1], images[:GRID], [CLASSES[i] for i in y[:GRID]],
                             [CLASSES[i] for i in y_hat[:GRID]])
    return paths


# ---- The forward pass, from a backend ----


@dataclass(frozen=True)
class Forward:
    """What a backend gives the predict command: its device, the network from weights and its forward passes."""

    backend: str
    get_device: Callable[[str], Any]  # --device -> the framework's device
    on_cpu: Callable[[Any], bool]  # whether that device is the host's CPU
    load_net: Callable[[dict, int, Any], Any]  # (neutral weights, resize, device) -> the network
    preprocess: Callable[[np.ndarray, int, Any], np.ndarray]  # uint8 (N, 28, 28) -> float32 (N, 1, resize, resize)
    predict: Callable[[Any, np.ndarray], np.ndarray]  # (net, X) -> logits (N, 10)
    feature_maps: Callable[[Any, np.ndarray], list[np.ndarray]]  # (net, X of one image) -> conv1, conv2 (C, H, W)


def all_logits(images: np.ndarray, logits: Callable[[np.ndarray], np.ndarray], batch_size: int) -> np.ndarray:
    """Logits (N, 10) of uint8 images (N, 28, 28), `batch_size` images at a time."""
    parts = [logits(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, NUM_CLASSES), np.float32)


def evaluate_net(images: np.ndarray, labels: np.ndarray, logits: Callable[[np.ndarray], np.ndarray],
                 batch_size: int) -> tuple[dict, np.ndarray]:
    """The evaluation of a network's logits on labelled images, and its predicted labels."""
    y_hat = all_logits(images, logits, batch_size).argmax(axis=1)
    return evaluation(labels, y_hat), y_hat


# ---- The command ----


@contextmanager
def writing(out_dir: Path) -> Iterator[Path]:
    """`out_dir`, created if need be; a file that cannot be written there becomes a one-line error."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        yield out_dir
    except OSError as e:  # permissions, a file in the way, a full disk: each figure is whole or absent
        raise UserError(f"cannot write to {out_dir} ({e.strerror or e}): choose another --out-dir") from None


def _evaluate(forward: Forward, logits: Callable, args: Any, meta: dict) -> dict:
    """Evaluate on the test split: print the accuracy table (or return it), write the two PNGs."""
    data = fashion_mnist.load(args.data_dir, 1, args.test_limit)
    result, y_hat = evaluate_net(data.test_images, data.test_labels, logits, args.batch_size)
    title = f"{meta.get('backend', '?')} weights, {forward.backend} forward: test acc {result['accuracy']:.3f}"
    with writing(args.out_dir) as out_dir:
        paths = write_evaluation(out_dir, result, data.test_images, data.test_labels, y_hat, title)
    if not args.json:
        kind = "Fashion-MNIST" if data.official else "custom IDX data"
        print(f"test split: {len(data.test_labels):,} images of {kind} from {data.source}")
        print(class_table(result))
        print("wrote " + ", ".join(map(str, paths)))
    return {**result, "figures": [str(p) for p in paths]}


def _classify(logits: Callable, args: Any) -> dict:
    """Classify image files: print one top-3 line per file, or return them."""
    files = image_files(args.images)
    images, inverted = prepare_images(files, invert=not args.no_invert)
    probs = softmax(all_logits(images, logits, args.batch_size))
    if not args.json:
        for path, p in zip(files, probs):
            print(top_line(str(path), p))
    return {"images": [{"file": str(path), "inverted": inv, "top": [{"class": c, "probability": q}
                                                                    for c, q in top_k(p)]}
                       for path, p, inv in zip(files, probs, inverted)]}


def _feature_maps(forward: Forward, net: Any, resize: int, device: Any, args: Any) -> dict:
    """Write the input and the activations of conv1 and conv2 for one image as PNGs."""
    image, inverted = prepare_image(args.feature_maps, invert=not args.no_invert)
    maps = forward.feature_maps(net, forward.preprocess(image[None], resize, device))
    stem = Path(args.feature_maps).stem
    with writing(args.out_dir) as out_dir:
        paths = [out_dir / f"features-{stem}-{part}.png" for part in ("input", "conv1", "conv2")]
        figures.plot_input(paths[0], image, f"{stem}: input" + (" (inverted)" if inverted else ""))
        for i, (path, m) in enumerate(zip(paths[1:], maps), start=1):
            c, h, w = m.shape
            figures.plot_feature_maps(path, m, f"{stem}: conv{i} after ReLU, {c} maps of {h}x{w}")
    if not args.json:
        print("wrote " + ", ".join(map(str, paths)))
    return {"feature_maps": [str(p) for p in paths], "shapes": [list(m.shape) for m in maps]}


def main(forward: Forward, argv: list[str] | None = None) -> None:
    """Evaluate weights on the test split, classify image files, or show one image's feature maps."""
    args = predict_parser(forward.backend).parse_args(argv)
    if args.feature_maps and args.images:
        raise UserError("--feature-maps IMAGE looks at one image: classify the others in a separate command")
    resize = recorded_resize(args.weights, args.resize)
    meta = read_metadata(args.weights)
    weights = load_weights(args.weights, resize)
    args.out_dir = args.out_dir or Path(args.weights).parent
    device = forward.get_device(args.device)
    net = forward.load_net(weights, resize, device)

    def logits(images: np.ndarray) -> np.ndarray:
        check_memory(resize, len(images), "float32", forward.on_cpu(device), training=False)  # not the OOM killer
        return forward.predict(net, forward.preprocess(images, resize, device))

    if args.feature_maps:
        result = _feature_maps(forward, net, resize, device, args)
    elif args.images:
        result = _classify(logits, args)
    else:
        result = _evaluate(forward, logits, args, meta)
    if args.json:
        print(json.dumps({"backend": forward.backend, "weights": str(args.weights),
                          "weights_backend": meta.get("backend"), "resize": resize, **result}))
