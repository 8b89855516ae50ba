"""The benchmark command, written once: each backend's bench.py gives its framework's part (a `Timer`).

Training and evaluation images/s on random data of the real sizes, beside this machine's matrix-product
ceiling, measured with the same framework in the mode's precision before and after them, so that the
ratios hold on a noisy machine.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.cli import bench_parser
from common.hparams import BOOK
from common.memory import check_memory
from common.metrics import bench_result, ceiling_around, report_bench
from common.precision import compute_dtype
from common.synthetic import bench_dataset


@dataclass(frozen=True)
class Timer:
    """What a backend gives the benchmark: its device, the network to time, and how it times and profiles it."""

    backend: str
    get_device: Callable[[str], Any]  # --device -> the framework's device
    on_cpu: Callable[[Any], bool]  # whether that device is the host's CPU
    build: Callable[[int, bool, Any], Any]  # (resize, fast, device) -> the network, seeded, on the fast path if asked
    load_data: Callable[[Any, int, int, Any], tuple[Any, Any]]  # (data, batch_size, resize, device) -> the iterators
    time_training: Callable[[Any, Any, float], float]  # (net, train_iter, lr) -> images/s
    evaluate_accuracy: Callable[[Any, Any], float]  # (net, test_iter) -> its accuracy, the device waited for
    matmul_ceiling: Callable[[str, int, Any], dict]  # (dtype, side, device) -> the best of several products
    device_name: Callable[[Any], str]
    peak_memory: Callable[[Any], dict]
    profile_training: Callable[[Any, Any, float, Path], str]  # (net, train_iter, lr, trace dir) -> the top ops


def time_evaluation(timer: Timer, net: Any, test_iter: Any) -> float:
    """Evaluation images/s over one pass of `test_iter` (the second pass: the first warms up)."""
    timer.evaluate_accuracy(net, test_iter)
    start = time.perf_counter()
    timer.evaluate_accuracy(net, test_iter)
    return test_iter.num_examples / (time.perf_counter() - start)


def main(timer: Timer, argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s, each as a share of the ceiling measured around them."""
    args = bench_parser(timer.backend).parse_args(argv)
    device = timer.get_device(args.device)
    on_cpu = timer.on_cpu(device)
    dtype = compute_dtype(timer.backend, args.fast, on_cpu)  # what the network computes in
    check_memory(args.resize, args.batch_size, dtype, on_cpu)  # one line, where the OS would kill it unannounced
    net = timer.build(args.resize, args.fast, device)
    before = timer.matmul_ceiling(dtype, args.gemm, device)  # in the same run: ratios hold
    data = bench_dataset(args.batch_size, args.steps)
    train_iter, test_iter = timer.load_data(data, args.batch_size, args.resize, device)
    train_ips, eval_ips = timer.time_training(net, train_iter, BOOK.lr), time_evaluation(timer, net, test_iter)
    ceiling = ceiling_around(before, timer.matmul_ceiling(dtype, args.gemm, device))  # and after: did it move?
    result = bench_result(timer.backend, timer.device_name(device), args.batch_size, args.resize, args.steps,
                          args.fast, train_ips, eval_ips, timer.peak_memory(device), ceiling)
    report_bench(result, args.json)
    if args.profile:
        print(timer.profile_training(net, train_iter, BOOK.lr, args.profile))
