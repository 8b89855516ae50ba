"""Training and evaluation throughput of the JAX AlexNet: `python -m alexnet_jax.bench --help`."""

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from alexnet_jax.data import DataIter, load_data_fashion_mnist
from alexnet_jax.model import alexnet
from alexnet_jax.step import (
    commit,
    device_name,
    evaluate_accuracy,
    fast_path,
    get_device,
    on_cpu,
    peak_memory,
    train_step,
)
from common import bench as common_bench
from common.errors import run_cli
from common.metrics import gemm_ceiling

BACKEND = "jax"

# ---- Timing ----


def time_training(net: nnx.Sequential, train_iter: DataIter, lr: float) -> float:
    """Training images/s over one pass of `train_iter` (data path included), after a warm-up step."""
    trainer = nnx.Optimizer(net, optax.sgd(lr), wrt=nnx.Param)
    commit(net, trainer)  # placed as the step's outputs are: the warm-up step is its only compile
    net.train()
    batches = iter(train_iter)
    X, y = next(batches)
    train_step(net, X, y, trainer)[0].block_until_ready()  # warm-up (and compiling)
    start, n = time.perf_counter(), 0
    for X, y in batches:
        l, _ = train_step(net, X, y, trainer)
        n += len(y)
    l.block_until_ready()  # waits for the device (JAX dispatches asynchronously)
    return n / (time.perf_counter() - start)


# ---- Ceiling ----


def matmul_ceiling(dtype: str, side: int, device: jax.Device) -> dict:
    """This machine's matrix-product rate in `dtype` with JAX: the best of several side x side products."""
    a, b = (jax.device_put(jax.random.uniform(jax.random.key(k), (side, side), getattr(jnp, dtype)), device)
            for k in range(2))
    matmul = jax.jit(jnp.matmul)  # compiled by XLA, as the steps are
    return gemm_ceiling(lambda: matmul(a, b).block_until_ready(), side, dtype)


# ---- Profile ----


def profile_training(net: nnx.Sequential, train_iter: DataIter, lr: float, out: Path) -> str:
    """A pass of training steps traced into `out`, for Perfetto or TensorBoard's profiler (it prints no table)."""
    with jax.profiler.trace(str(out)):
        time_training(net, train_iter, lr)  # the same pass of steps, once more, under the profiler
    return (f"trace written to {out}: open its .trace.json.gz in https://ui.perfetto.dev, or pip install "
            f"tensorboard tensorboard-plugin-profile, then tensorboard --logdir {out} (Profile tab)")


# ---- Main ----


def build(resize: int, fast: bool, device: jax.Device) -> nnx.Sequential:
    """The network to time, seeded, on `device`, on the fast path if asked."""
    with jax.default_device(device):
        net = alexnet(resize, seed=0)
        return fast_path(net, device) if fast else net


TIMER = common_bench.Timer(BACKEND, get_device, on_cpu, build, load_data_fashion_mnist, time_training,
                           evaluate_accuracy, matmul_ceiling, device_name, peak_memory, profile_training)


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    common_bench.main(TIMER, argv)


if __name__ == "__main__":
    run_cli(main)
