"""Data-parallel steps run in fresh processes: the framework-free file exchange both sides use.

The test writes the starting weights and the data into a temporary directory and runs a worker
command there; the worker reads them and writes one weights file per replica, with the number of
replicas its engine reported.
"""

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.weights import load_weights, save_weights

ROOT = Path(__file__).resolve().parents[2]


def steps_in_subprocess(command: list[str], weights: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray,
                        lr: float, batch_size: int, devices: int) -> tuple[list[dict[str, np.ndarray]], list[int]]:
    """Run `command DIR --lr ... --batch-size ... --devices ...` on files; each replica's weights and count back."""
    resize = X.shape[-1]  # X is NCHW
    with tempfile.TemporaryDirectory() as tmp:
        save_weights(Path(tmp) / "weights.safetensors", weights, resize, "exchange")
        np.save(f"{tmp}/X.npy", X)
        np.save(f"{tmp}/y.npy", y)
        command = [*command, tmp, "--lr", str(lr), "--batch-size", str(batch_size), "--devices", str(devices)]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        found = sorted(Path(tmp).glob("replica-*.safetensors"))
        counts = [json.loads(p.with_suffix(".json").read_text())["count"] for p in found]
        return [load_weights(p, resize) for p in found], counts


def read_steps(prog: str, argv: list[str] | None = None) -> tuple[argparse.Namespace, dict, np.ndarray, np.ndarray]:
    """The worker's side: its arguments, the starting weights, X and y."""
    p = argparse.ArgumentParser(prog=prog, description="one side of a data-parallel steps exchange")
    p.add_argument("dir", type=Path)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--devices", type=int, required=True)
    args = p.parse_args(argv)
    X, y = np.load(args.dir / "X.npy"), np.load(args.dir / "y.npy")
    return args, load_weights(args.dir / "weights.safetensors", X.shape[-1]), X, y


def write_replica(directory: Path, rank: int, weights: dict[str, np.ndarray], resize: int, count: int) -> None:
    """The worker's result: one replica's final weights, and how many replicas its engine reported."""
    save_weights(directory / f"replica-{rank}.safetensors", weights, resize, "exchange")
    (directory / f"replica-{rank}.json").write_text(json.dumps({"count": count}))


def serve(prog: str, steps_here: Callable, argv: list[str] | None = None) -> None:
    """The worker of a backend whose one process drives every replica: files in, one file per replica out."""
    args, weights, X, y = read_steps(prog, argv)
    results, count = steps_here(weights, X, y, args.lr, args.batch_size, args.devices)
    for rank, replica in enumerate(results):
        write_replica(args.dir, rank, replica, X.shape[-1], count)
