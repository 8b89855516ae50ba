"""Training and evaluation throughput of the MXNet AlexNet: `python -m alexnet_mxnet.bench --help`."""

import time
from pathlib import Path

import mxnet as mx
from mxnet import gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter, load_data_fashion_mnist
from alexnet_mxnet.model import alexnet
from alexnet_mxnet.step import device_name, evaluate_accuracy, fast_path, get_device, peak_memory, train_step
from common.cli import bench_parser
from common.errors import run_cli
from common.hparams import BOOK
from common.memory import check_memory
from common.metrics import bench_result, ceiling_around, gemm_ceiling, report_bench
from common.precision import compute_dtype
from common.synthetic import bench_dataset

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


def time_evaluation(net: nn.HybridSequential, test_iter: DataIter) -> float:
    """Evaluation images/s over one pass of `test_iter` (the second pass: the first warms up)."""
    evaluate_accuracy(net, test_iter)
    start = time.perf_counter()
    evaluate_accuracy(net, test_iter)
    return test_iter.num_examples / (time.perf_counter() - start)


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


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    args = bench_parser(BACKEND).parse_args(argv)
    device = get_device(args.device)
    on_cpu = device.device_type == "cpu"
    dtype = compute_dtype(BACKEND, args.fast, on_cpu)  # what the network computes in
    check_memory(args.resize, args.batch_size, dtype, on_cpu)  # one line, where the OS would kill it unannounced
    mx.random.seed(0)
    net = alexnet(args.resize, device)
    if args.fast:
        net = fast_path(net, device)
    before = matmul_ceiling(dtype, args.gemm, device)  # in the same run: ratios hold
    data = bench_dataset(args.batch_size, args.steps)
    train_iter, test_iter = load_data_fashion_mnist(data, args.batch_size, args.resize, device)
    train_ips, eval_ips = time_training(net, train_iter, BOOK.lr), time_evaluation(net, test_iter)
    ceiling = ceiling_around(before, matmul_ceiling(dtype, args.gemm, device))  # and after: did it move?
    result = bench_result(BACKEND, device_name(device), args.batch_size, args.resize, args.steps, args.fast,
                          train_ips, eval_ips, peak_memory(device), ceiling)
    report_bench(result, args.json)
    if args.profile:
        print(profile_training(net, train_iter, BOOK.lr, args.profile))


if __name__ == "__main__":
    run_cli(main)
