"""The one argument parser every `python -m alexnet_<fw>.train` uses, and the checks on its sides and paths."""

import argparse
import os
from pathlib import Path

from common.backends import BACKENDS
from common.errors import (
    Help,
    InputTooSmallError,
    Parser,
    UserError,
    path_arg,
    positive_float,
    positive_int,
    seed_number,
)
from common.hparams import BOOK, HParams
from common.metrics import GEMM_SIDE
from common.run import stored_settings
from common.spec import MIN_RESIZE, check_resize
from common.weights import weights_file

DEVICES = ("auto", "cpu", "gpu")
FAST_HELP = ("opt-in fast path instead of the book's float32: bf16 mixed precision and compiled steps "
             "where they pay off on the device (see README, 'Speed')")


def _resize(text: str) -> int:
    """An input side the network can take (common.spec.check_resize says why not)."""
    side = positive_int(text)
    try:
        check_resize(side)
    except InputTooSmallError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return side


def made_dir(text: str) -> Path:
    """An output folder, made at once: a path that cannot be one is said before any work is done."""
    path = path_arg(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot make the folder {path} ({e.strerror or e}): choose another") from None
    if not os.access(path, os.W_OK):  # there already, and someone else's
        raise argparse.ArgumentTypeError(f"cannot write in the folder {path} (Permission denied): choose another")
    return path


def file_in_made_dir(text: str) -> Path:
    """An output file, its folder made at once (see made_dir)."""
    path = path_arg(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder: name a file in it")
    made_dir(str(path.parent))
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {path} (Permission denied): choose another file")
    return path


# --quick: the book's network and loop on a budget, 5 to 7 minutes on a recent 2-core CPU (README: "A quick try").
QUICK = {"resize": 67, "epochs": 2, "batch_size": 64, "lr": 0.05}
QUICK_TEXT = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())


def parser(backend: str) -> argparse.ArgumentParser:
    """The train command's parser for one backend, every default from the book."""
    p = Parser(
        prog=f"python -m alexnet_{backend}.train",
        description=f"Train the book's AlexNet (d2l.ai, chapter 8.1) on Fashion-MNIST with {BACKENDS[backend].title}.",
        formatter_class=Help,
    )
    p.add_argument("--epochs", type=positive_int, default=BOOK.num_epochs, help="number of epochs")
    p.add_argument("--batch-size", type=positive_int, default=BOOK.batch_size, help="minibatch size")
    p.add_argument("--lr", type=positive_float, default=BOOK.lr, help="SGD learning rate")
    p.add_argument("--resize", type=_resize, default=BOOK.resize,
                   help=f"side the 28x28 images are upsampled to (at least {MIN_RESIZE})")
    p.add_argument("--train-limit", type=positive_int, default=None,
                   help="train on the first N training images only (default: all 60,000)")
    p.add_argument("--test-limit", type=positive_int, default=None,
                   help="evaluate on the first N test images only (default: all 10,000)")
    p.add_argument("--data-dir", type=path_arg, default=None,
                   help="directory holding the four Fashion-MNIST files (default: searched, "
                        "see README)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto picks a GPU when there is one")
    p.add_argument("--seed", type=seed_number, default=BOOK.seed,
                   help="seed for initialisation, shuffling and dropout")
    p.add_argument("--out", type=path_arg, default=Path("runs") / backend,
                   help="directory for metrics, curves, summary, checkpoints and weights")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its stored settings (flags given "
                        "again must agree; a larger --epochs trains on)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a finished or different run in --out")
    p.add_argument("--init-weights", type=weights_file, default=None, metavar="WEIGHTS",
                   help="start from these neutral weights (a weights.safetensors from any backend, or its run "
                        "directory) instead of Xavier's; trained at the same --resize")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--checkpoint-every", type=positive_float, default=15.0, metavar="MINUTES",
                   help="also checkpoint inside an epoch this often, against a crash or kill -9 (Ctrl-C and "
                        "SIGTERM always checkpoint at the current minibatch)")
    p.add_argument("--devices", type=positive_int, default=1,
                   help="data-parallel replicas, each taking an equal share of every minibatch: GPUs, "
                        "or CPU processes/devices (PyTorch: launch with torchrun, see README)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=False, help=FAST_HELP)
    p.add_argument("--quick", action="store_true",
                   help=f"a quick try that visibly learns: {QUICK_TEXT} (flags given too win), into "
                        f"runs/{backend}-quick, replaced each time")
    p.add_argument("--dry-run", action="store_true",
                   help="one epoch on two batches into a temporary directory, removed after: checks the "
                        "set-up in seconds and keeps nothing (with --out, into that directory, kept)")
    return p


# The train flags a run stores, so that --resume needs none of them: stored name -> argparse dest.
STORED_FLAGS = {"lr": "lr", "batch_size": "batch_size", "num_epochs": "epochs", "resize": "resize", "seed": "seed",
                "train_limit": "train_limit", "test_limit": "test_limit", "fast": "fast", "data_dir": "data_dir"}


def given(backend: str, argv: list[str] | None) -> set[str]:
    """The dests of the flags the command line really gives (not defaults)."""
    p = parser(backend)
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return set(vars(p.parse_args(argv)))


def take_stored(args: argparse.Namespace, explicit: set[str], stored: dict) -> None:
    """--resume: every setting the command line leaves out comes from the run's stored ones."""
    for name, dest in STORED_FLAGS.items():
        if dest not in explicit and stored.get(name) is not None:
            setattr(args, dest, Path(stored[name]) if dest == "data_dir" else stored[name])


def model_parser(backend: str) -> argparse.ArgumentParser:
    """The model command's parser: the book's layer summary, or the shape report as JSON."""
    p = Parser(prog=f"python -m alexnet_{backend}.model",
                description=f"Each layer's output shape in the {BACKENDS[backend].title} AlexNet.",
                formatter_class=Help)
    p.add_argument("--resize", type=_resize, default=BOOK.resize, help="input side")
    p.add_argument("--json", action="store_true", help="print the canonical (NCHW) shape report as JSON")
    return p


def bench_parser(backend: str, book_path: bool = False) -> argparse.ArgumentParser:
    """The benchmark command's parser, the book's settings by default (`book_path`: float32, no ceiling or profile)."""
    p = Parser(prog=f"python -m alexnet_{backend}.bench",
                description=f"Training and evaluation images/s of AlexNet with {BACKENDS[backend].title}.",
                formatter_class=Help)
    p.add_argument("--batch-size", type=positive_int, default=BOOK.batch_size, help="minibatch size")
    p.add_argument("--resize", type=_resize, default=BOOK.resize, help="input side")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps (after one warm-up step)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks a GPU when there is one")
    if not book_path:
        p.add_argument("--fast", action="store_true", help=FAST_HELP)
        p.add_argument("--gemm", type=positive_int, default=GEMM_SIDE, metavar="SIDE",
                       help="side of the square matrix product that measures this machine's ceiling (the same "
                            "framework, the mode's precision: float32, or bfloat16 with --fast)")
    p.add_argument("--json", type=file_in_made_dir, default=None, help="also append the result as a JSON line here")
    if not book_path:
        p.add_argument("--profile", type=made_dir, default=None, metavar="DIR",
                       help="then profile the training steps once more: print the ops that take the time and "
                            "write a trace to DIR (Perfetto or chrome://tracing; TensorFlow: TensorBoard)")
    return p


def predict_parser(backend: str) -> argparse.ArgumentParser:
    """The predict command's parser: evaluate weights on the test split, or classify image files."""
    p = Parser(prog=f"python -m alexnet_{backend}.predict",
                description=f"Evaluate neutral AlexNet weights with {BACKENDS[backend].title} on Fashion-MNIST's "
                            f"test split, or classify your own pictures (PNG, JPEG, any that Pillow reads).",
                formatter_class=Help)
    p.add_argument("images", type=path_arg, nargs="*", metavar="IMAGE",
                   help="image files or directories of them to classify (none: evaluate on the test split)")
    p.add_argument("--weights", type=weights_file, default=Path("runs") / backend / "weights.safetensors",
                   help="neutral weights from a training run in any backend (or its run directory)")
    p.add_argument("--resize", type=_resize, default=None,
                   help="input side (default: the one recorded in the weights; a different one is refused)")
    p.add_argument("--data-dir", type=path_arg, default=None,
                   help="directory holding the four Fashion-MNIST files (default: searched, see README)")
    p.add_argument("--test-limit", type=positive_int, default=None,
                   help="evaluate on the first N test images only (default: all 10,000)")
    p.add_argument("--batch-size", type=positive_int, default=BOOK.batch_size, help="images per forward pass")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto picks a GPU when there is one")
    p.add_argument("--out-dir", type=path_arg, default=None,
                   help="directory for the PNGs (default: the weights' directory)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-invert", action="store_true",
                   help="never invert an image (by default one with a light background is inverted, since "
                        "Fashion-MNIST has light objects on black)")
    p.add_argument("--feature-maps", type=path_arg, default=None, metavar="IMAGE",
                   help="write the activations of conv1 and conv2 for this image as PNGs in --out-dir")
    return p


def parse_args(backend: str, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the train flags; --resume takes the run's settings; --dry-run shrinks the run."""
    args = parser(backend).parse_args(argv)
    explicit = given(backend, argv)
    args.temporary_out = False
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: pass only one")
    if args.resume and args.init_weights:
        raise UserError("--init-weights starts a new run, it cannot --resume one (that continues from its "
                        "checkpoint): drop one of them")
    if args.resume:
        take_stored(args, explicit, stored_settings(args.out))
    if args.quick:
        if args.resume:
            raise UserError("--quick starts a new quick try, it cannot --resume a run: drop one of them")
        for dest, value in QUICK.items():
            if dest not in explicit:
                setattr(args, dest, value)
        if "out" not in explicit:  # its own directory, replaced by the next quick try
            args.out, args.force = Path("runs") / f"{backend}-quick", True
    if args.dry_run:
        if args.resume:
            raise UserError("--dry-run starts a throwaway run, it cannot --resume one: drop one of them")
        if "out" not in explicit:  # a throwaway directory, made when the run opens (common.training)
            args.out, args.temporary_out = None, True
        args.epochs = 1
        args.train_limit = min(args.train_limit or 2 * args.batch_size, 2 * args.batch_size)
        args.test_limit = min(args.test_limit or args.batch_size, args.batch_size)
    return args


def hparams_from_args(args: argparse.Namespace) -> HParams:
    """The hyperparameters a parsed command line asks for."""
    check_resize(args.resize)
    return HParams(lr=args.lr, batch_size=args.batch_size, num_epochs=args.epochs,
                   resize=args.resize, seed=args.seed,
                   train_limit=args.train_limit, test_limit=args.test_limit, fast=args.fast)
