"""Training and evaluation throughput of the PyTorch AlexNet: `python -m alexnet_torch.bench --help`."""

import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from alexnet_torch.data import DataIter, load_data_fashion_mnist
from alexnet_torch.model import alexnet
from alexnet_torch.step import device_name, evaluate_accuracy, fast_path, get_device, on_cpu, peak_memory, train_step
from common import bench as common_bench
from common.errors import run_cli
from common.metrics import gemm_ceiling

BACKEND = "torch"

# ---- Timing ----


def time_training(net: nn.Module, train_iter: DataIter, lr: float) -> float:
    """Training images/s over one pass of `train_iter` (data path included), after a warm-up step."""
    trainer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    net.train()
    batches = iter(train_iter)
    X, y = next(batches)
    train_step(net, X, y, loss, trainer)[0].item()  # warm-up
    start, n = time.perf_counter(), 0
    for X, y in batches:
        l, _ = train_step(net, X, y, loss, trainer)
        n += len(y)
    l.item()  # waits for the device
    return n / (time.perf_counter() - start)


# ---- Ceiling ----


def matmul_ceiling(dtype: str, side: int, device: torch.device) -> dict:
    """This machine's matrix-product rate in `dtype` with PyTorch: the best of several side x side products."""
    a, b = (torch.rand(side, side, device=device).to(getattr(torch, dtype)) for _ in range(2))
    return gemm_ceiling(lambda: (a @ b)[0, 0].item(), side, dtype)  # .item() waits for the device


# ---- Profile ----


def profile_training(net: nn.Module, train_iter: DataIter, lr: float, out: Path) -> str:
    """Where a pass of training steps spends its time: the top ops by self time, and a trace in `out`."""
    cuda = train_iter.device.type == "cuda"
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities) as prof:
        time_training(net, train_iter, lr)  # the same pass of steps, once more, under the profiler
    out.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out / "trace.json"))
    return prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                     row_limit=15)


# ---- Main ----


def build(resize: int, fast: bool, device: torch.device) -> nn.Module:
    """The network to time, seeded, on `device`, on the fast path if asked."""
    torch.manual_seed(0)
    net = alexnet(resize).to(device)
    return fast_path(net, device) if fast else net


TIMER = common_bench.Timer(BACKEND, get_device, on_cpu, build, load_data_fashion_mnist, time_training,
                           evaluate_accuracy, matmul_ceiling, device_name, peak_memory, profile_training)


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    common_bench.main(TIMER, argv)


if __name__ == "__main__":
    run_cli(main)
