"""Training and evaluation throughput of the MXNet AlexNet: `python -m alexnet_mxnet.bench --help`."""

import time
from pathlib import Path

import mxnet as mx
from mxnet import gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter, load_data_fashion_mnist
from alexnet_mxnet.model import alexnet
from alexnet_mxnet.step import device_name, evaluate_accuracy, fast_path, get_device, on_cpu, peak_memory, train_step
from common import bench as common_bench
from common.errors import run_cli
from common.metrics import gemm_ceiling

npx.set_np()

BACKEND = "mxnet"

# ---- Timing ----


def time_training(net: nn.HybridSequential, train_iter: DataIter, lr: float) -> float:
    """Training images/s over one pass of `train_iter` (data path included), after a warm-up step."""
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    batches = iter(train_iter)
    X, y = next(batches)
    train_step(net, X, y, loss, trainer)  # warm-up
    npx.waitall()
    start, n = time.perf_counter(), 0
    for X, y in batches:
        train_step(net, X, y, loss, trainer)
        n += len(y)
    npx.waitall()  # MXNet computes asynchronously: wait for the last step
    return n / (time.perf_counter() - start)


# ---- Ceiling ----


def matmul_ceiling(dtype: str, side: int, device: mx.Context) -> dict:
    """This machine's matrix-product rate in `dtype` with MXNet: the best of several side x side products.

    Gluon's Dense layers run FullyConnected (oneDNN), which is the fast product here: `np.dot` goes
    through another BLAS at a fraction of its speed. MXNet's --fast computes in float32 (common/precision.py),
    so float32 is the one precision measured.
    """
    a, b = (mx.nd.random.uniform(shape=(side, side), ctx=device, dtype=dtype) for _ in range(2))

    def product() -> None:
        mx.nd.FullyConnected(a, b, no_bias=True, num_hidden=side).wait_to_read()  # a @ b.T, waited for

    return gemm_ceiling(product, side, dtype)


# ---- Profile ----


def profile_training(net: nn.HybridSequential, train_iter: DataIter, lr: float, out: Path) -> str:
    """Where a pass of training steps spends its time: the ops by total time, and a trace in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=str(out / "trace.json"))
    mx.profiler.set_state("run")
    time_training(net, train_iter, lr)  # the same pass of steps, once more, under the profiler
    mx.profiler.set_state("stop")
    mx.profiler.dump()
    return mx.profiler.dumps(reset=True, sort_by="total", ascending=False)


# ---- Main ----


def build(resize: int, fast: bool, device: mx.Context) -> nn.HybridSequential:
    """The network to time, seeded, on `device`, on the fast path if asked."""
    mx.random.seed(0)
    net = alexnet(resize, device)
    return fast_path(net, device) if fast else net


TIMER = common_bench.Timer(BACKEND, get_device, on_cpu, build, load_data_fashion_mnist, time_training,
                           evaluate_accuracy, matmul_ceiling, device_name, peak_memory, profile_training)


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    common_bench.main(TIMER, argv)


if __name__ == "__main__":
    run_cli(main)
