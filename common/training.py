"""The start and end of every training run, written once: each backend's train.py supplies the hooks.

    parse the flags -> where it runs (replicas) -> find the data -> will a minibatch fit (a CPU's memory)
    -> open the run directory (locked) -> build the network and its trainer -> resume -> say how long it
    will take -> choose the step once -> the backend's training loop (with every checkpoint, the neutral
    weights) -> the test split per class (confusion.png), summary.json and the book's final line;
    --init-weights starts the network from a neutral weights file

The loop itself (train_epoch, train) stays in each backend: it is the lesson.
"""

import argparse
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import fashion_mnist, launch
from common.backends import unused_gpu
from common.cli import hparams_from_args, parse_args
from common.epoch import Loop, StopRequests
from common.errors import UserError, memory_ran_out, out_of_memory
from common.fashion_mnist import FashionMNIST
from common.hparams import HParams
from common.memory import check_memory
from common.metrics import estimate, estimate_line, long_run
from common.precision import compute_dtype, float32_reason
from common.predict import evaluate_net, write_evaluation
from common.replicas import Follower, Replicas, Step, shared_run
from common.run import CannotWrite, Run
from common.spec import num_params
from common.weights import load_weights, read_metadata, recorded_resize, save_weights


@dataclass(frozen=True)
class Hooks:
    """What a backend gives the shared run: its name, checkpoint suffix and framework functions."""

    backend: str
    ckpt_ext: str
    replicas: Callable[[int, str], Replicas]  # (--devices, --device) -> where the run trains
    build: Callable[[HParams, Replicas], tuple[Any, Any]]  # the network and its trainer, seeded
    load_data: Callable[[FashionMNIST, HParams, Replicas], tuple[Any, Any]]  # train_iter, test_iter
    make_step: Callable[[Any, Any, Replicas], Step]  # one device or data parallel: chosen once
    train: Callable[[Any, Any, Step, Any, Any, Loop], None]  # net, trainer, step, train_iter, test_iter, loop
    load_checkpoint: Callable[[Path, Any, Any], int]
    probe_speed: Callable[[HParams, Replicas], float]  # training images/s: the faster of two minibatches
    get_weights: Callable[[Any], dict]  # the neutral weights
    set_weights: Callable[[Any, dict], None]  # neutral weights into the built network (--init-weights)
    preprocess: Callable[[np.ndarray, int, Any], np.ndarray]  # uint8 (N, 28, 28) -> the network's input, NumPy
    predict: Callable[[Any, np.ndarray], np.ndarray]  # (net, input) -> logits (N, 10), dropout off
    describe: Callable[[Replicas], dict]  # versions and peak memory, for summary.json
    close: Callable[[Replicas], None] = lambda replicas: None  # leave the engine (a process group)


def say_estimate(hooks: Hooks, hp: HParams, replicas: Replicas, data: FashionMNIST, epochs_left: float) -> None:
    """On a CPU, time the run's step and say how long a long run will take."""
    num_train, num_test = len(data.train_labels), len(data.test_labels)
    if replicas.on_cpu and long_run(hp, num_train, epochs_left):
        speed = hooks.probe_speed(hp, replicas)  # on every process (PyTorch's and JAX's step: a collective)
        if replicas.is_main:
            fast_helps = not hp.fast and compute_dtype(hooks.backend, True, on_cpu=True) == "bfloat16"
            print(estimate_line(estimate(speed, num_train, num_test, epochs_left), speed, "this CPU", epochs_left,
                                hp.num_epochs, fast_helps))


def epochs_left(hp: HParams, run: Run | Follower) -> float:
    """The epochs a run has still to train: a resumed one may have stopped inside an epoch."""
    done = run.partial["batch"] / run.partial["batches"] if run.partial else 0.0
    return hp.num_epochs - run.start_epoch - done


def resume_command(backend: str, replicas: Replicas) -> str:
    """The command that continues a run on the same replicas (--out and --resume follow it)."""
    command = launch.prefix(backend, replicas.count, replicas.processes, f"alexnet_{backend}.train")
    return " ".join(command + (["--devices", str(replicas.count)] if replicas.count > 1 else []))


def initial_weights(path: Path | None, resize: int) -> tuple[dict | None, dict | None]:
    """--init-weights: the neutral weights to start from, and what summary.json records of them.

    They are checked before the run directory is touched; (None, None) without the flag.
    """
    if path is None:
        return None, None
    recorded_resize(path, resize)  # refuses weights trained at another input side
    origin = {"path": str(Path(path).resolve()), "backend": read_metadata(path).get("backend")}
    return load_weights(path, resize), origin


def evaluate_run(hooks: Hooks, net: Any, data: FashionMNIST, hp: HParams, replicas: Replicas, out: Path) -> dict:
    """The trained network on the test split: per-class accuracy for summary.json; confusion.png and predictions.png."""
    def logits(images: np.ndarray) -> np.ndarray:
        return hooks.predict(net, hooks.preprocess(images, hp.resize, replicas.device))

    result, y_hat = evaluate_net(data.test_images, data.test_labels, logits, hp.batch_size)
    write_evaluation(out, result, data.test_images, data.test_labels, y_hat,
                     f"{hooks.backend}: test acc {result['accuracy']:.3f}")
    return {"per_class_acc": {name: row["accuracy"] for name, row in result["per_class"].items()},
            "confusion": result["confusion"]}


def leave_together(replicas: Replicas) -> None:
    """Wait until every process has finished the run: the others wait while rank 0 evaluates alone."""
    seconds = launch.stall_timeout()
    with launch.bounded(f"the processes did not all reach the end of the run within {seconds:.0f} s: one stopped, "
                        f"cannot be reached (its own error says why) or is slow (this wait is ten times "
                        f"ALEXNET_CONNECT_TIMEOUT)", seconds):
        replicas.meet()


def remove_throwaway(args: argparse.Namespace) -> None:
    """--dry-run without --out: remove its directory, so nothing is kept."""
    if args.temporary_out and args.out is not None:
        shutil.rmtree(args.out, ignore_errors=True)
        print(f"dry run: {args.out} removed, nothing kept")


def train_run(hooks: Hooks, args: argparse.Namespace, hp: HParams, replicas: Replicas, data: FashionMNIST,
              run: Run | Follower, start_weights: dict | None) -> Any:
    """Build the network (from --init-weights or the run's checkpoint), say how long it will take, train it."""
    net, trainer = hooks.build(hp, replicas)
    if start_weights is not None:  # every process: they all start from the same file
        hooks.set_weights(net, start_weights)
    if run.checkpoint:  # rank 0 only: the engine copies its weights to the other processes
        try:
            hooks.load_checkpoint(run.checkpoint, net, trainer)
        except UserError as e:  # the framework could not read it: a damaged file, or not a checkpoint at all
            raise UserError(f"{e}: {run.without_checkpoint()}") from None
        print(f"resuming from the checkpoint of {run.kept()}")
    say_estimate(hooks, hp, replicas, data, epochs_left(hp, run))
    train_iter, test_iter = hooks.load_data(data, hp, replicas)
    step = hooks.make_step(net, trainer, replicas)

    def write_weights(path: Path) -> None:  # beside every checkpoint, on rank 0: every replica holds the same
        save_weights(path, hooks.get_weights(net), hp.resize, hooks.backend)

    with StopRequests() as stop:  # Ctrl-C and SIGTERM: stop after this minibatch, keeping it
        loop = Loop(run, len(data.test_labels), stop, replicas.agree, args.checkpoint_every * 60,
                    args.no_progress or not replicas.is_main, write_weights)
        hooks.train(net, trainer, step, train_iter, test_iter, loop)
    return net


def main(hooks: Hooks, argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    args = parse_args(hooks.backend, argv)
    hp = hparams_from_args(args)
    launch.connect_timeout()  # a bad ALEXNET_CONNECT_TIMEOUT is refused now, not when the run ends
    start_weights, started_from = initial_weights(args.init_weights, hp.resize)
    replicas = hooks.replicas(args.devices, args.device)
    data = fashion_mnist.load(args.data_dir, hp.train_limit, hp.test_limit)
    dtype = compute_dtype(hooks.backend, hp.fast, replicas.on_cpu)  # what the network computes in
    share = -(-min(hp.batch_size, len(data.train_labels)) // replicas.processes)  # each process trains its share
    check_memory(hp.resize, share, dtype, replicas.on_cpu)

    def open_run() -> Run:
        """The run's directory, locked; --dry-run's is a new throwaway one (on rank 0 only)."""
        if args.temporary_out:
            args.out = Path(tempfile.mkdtemp(prefix=f"alexnet-{hooks.backend}-dry-run-"))
        try:
            return Run(args.out, hooks.backend, hp, hooks.ckpt_ext, resume=args.resume, force=args.force,
                       data_dir=args.data_dir)
        except BaseException:
            remove_throwaway(args)
            raise

    run = shared_run(replicas, hp, open_run)
    try:
        if replicas.is_main:
            print(fashion_mnist.describe(data))
            print(f"training on {replicas.name}, writing to {run.out}")
            if args.device == "auto" and replicas.on_cpu and (why := unused_gpu(hooks.backend)):
                print(f"note: {why}")
            if hp.fast and (why := float32_reason(hooks.backend, replicas.on_cpu)):
                print(f"note: --fast computes in float32 here: {why}")
        try:
            net = train_run(hooks, args, hp, replicas, data, run, start_weights)
        except KeyboardInterrupt:  # in the loop, or before it (the build, the resume, the time probe)
            raise run.interrupted(resume_command(hooks.backend, replicas)) from None
        except CannotWrite as e:  # a full disk: rank 0 alone writes
            raise run.cannot_write(e, resume_command(hooks.backend, replicas)) from None
        except Exception as e:  # a GPU's memory, or more than check_memory's lower bound on a CPU
            if not out_of_memory(e):
                raise
            raise memory_ran_out(e, f"; {run.saved()}" if replicas.is_main else "") from None
        if replicas.is_main:  # the last epoch's checkpoint wrote the final weights
            extra = {**hooks.describe(replicas), "dtype": dtype,
                     "params": num_params(hp.resize),
                     "data": fashion_mnist.describe(data), "devices": replicas.count,
                     "init_weights": started_from, **evaluate_run(hooks, net, data, hp, replicas, run.out)}
            print(run.finish(replicas.name, extra))
        leave_together(replicas)  # not when the run failed: a process may be gone
    finally:
        run.close()
        hooks.close(replicas)
        if replicas.is_main:
            remove_throwaway(args)
