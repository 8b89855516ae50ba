"""Training and evaluation throughput of the MXNet AlexNet: `python -m alexnet_mxnet.bench --help`."""

import time

import mxnet as mx
from mxnet import gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter, load_data_fashion_mnist
from alexnet_mxnet.model import alexnet
from alexnet_mxnet.train import device_name, evaluate_accuracy, get_device, train_step
from common.cli import bench_parser, run_cli
from common.metrics import bench_result, report_bench
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


# ---- Main ----


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    args = bench_parser(BACKEND).parse_args(argv)
    device = get_device(args.device)
    mx.random.seed(0)
    net = alexnet(args.resize, device)
    data = bench_dataset(args.batch_size, args.steps)
    train_iter, test_iter = load_data_fashion_mnist(data, args.batch_size, args.resize, device)
    result = bench_result(BACKEND, device_name(device), args.batch_size, args.resize, args.steps,
                          time_training(net, train_iter, lr=0.01), time_evaluation(net, test_iter))
    report_bench(result, args.json)


if __name__ == "__main__":
    run_cli(main)
