"""Where and how PyTorch computes one step: the device, the opt-in fast path, evaluation, the SGD step."""

import numpy as np
import torch
from torch import nn

from alexnet_torch.data import DataIter
from common.errors import UserError
from common.metrics import memory_record
from common.precision import compute_dtype

# ---- Device ----


def no_tf32() -> None:
    """Float32 convolutions and matrix products in float32 on a GPU, not in TF32 (10 bits of mantissa, not 23).

    The book's math is float32. On NVIDIA GPUs from Ampere on, PyTorch runs float32 convolutions in TF32
    unless told not to (its matrix products already stay float32). --fast computes in bf16 instead.
    """
    torch.backends.cudnn.allow_tf32 = False  # convolutions and RNNs alike (the newer per-operator switch mixed them)
    torch.backends.cuda.matmul.allow_tf32 = False  # its default already


def get_device(name: str) -> torch.device:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            no_tf32()
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
    if name == "gpu":
        raise UserError("--device gpu: PyTorch sees no GPU (no CUDA or MPS device): use --device cpu, "
                        "or install a CUDA build of PyTorch on a machine with a GPU")
    return torch.device("cpu")


def on_cpu(device: torch.device) -> bool:
    """Whether `device` is the host's CPU: there the memory check applies, and bf16 needs the CPU's instructions."""
    return device.type == "cpu"


def device_name(device: torch.device) -> str:
    """The device as the book prints it, with the GPU's model where there is one."""
    if device.type == "cuda":
        return f"cuda:0 ({torch.cuda.get_device_name(device)})"
    return str(device)


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far: the CUDA allocator's high-water mark, or this process's on the CPU."""
    if device.type == "cuda":
        return memory_record(torch.cuda.max_memory_allocated(device) / 2**20, "CUDA max_memory_allocated")
    return memory_record()  # this process's peak RSS


# ---- Fast path (opt-in) ----


class Mixed(nn.Module):
    """The network in bfloat16 autocast; float32 logits for the loss."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """The wrapped network's logits, computed under bf16 autocast, returned in float32."""
        with torch.autocast(X.device.type, dtype=torch.bfloat16):  # matmuls and convs in bf16
            return self.net(X).float()  # (B, 10)


def fast_path(net: nn.Module, device: torch.device, compile: bool | None = None) -> nn.Module:
    """--fast: the same parameters run in bf16, compiled by torch.compile on CUDA.

    On the 2-core CI CPU bf16 (with channels-last, which the model now always uses) doubled training
    speed, and torch.compile then took it down by 15% (docs/results.md), so the CPU is not compiled
    unless `compile` says so. A CPU without bf16 instructions keeps the float32 network: there bf16
    trained 11x slower (common/precision.py).
    """
    if compute_dtype("torch", fast=True, on_cpu=on_cpu(device)) == "float32":
        return net  # the book's float32 network, as it is
    fast = Mixed(net)
    if device.type == "cuda" if compile is None else compile:
        fast = torch.compile(fast, dynamic=False)  # one graph per batch shape (the last batch is smaller)
    return fast


def unwrap(net: nn.Module) -> nn.Module:
    """The nn.Sequential inside torch.compile's and --fast's wrappers (or `net` itself)."""
    while not isinstance(net, nn.Sequential):
        net = net._orig_mod if hasattr(net, "_orig_mod") else net.net  # torch.compile's, or Mixed
    return net


# ---- Evaluation ----


def accuracy(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The number of correct predictions, as a tensor (no sync with the device)."""
    return (y_hat.argmax(dim=1) == y).sum()


def evaluate_accuracy(net: nn.Module, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    net.eval()
    correct = torch.zeros((), device=data_iter.device)
    with torch.no_grad():
        for X, y in data_iter:  # --devices N: this process's shard of each minibatch
            correct += accuracy(net(X), y)
    return data_iter.total(correct).item() / data_iter.num_examples  # over all the shards


# ---- One training step ----


def train_step(net: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: nn.Module,
               trainer: torch.optim.Optimizer) -> tuple[torch.Tensor, torch.Tensor]:
    """One minibatch SGD step; returns the summed loss and the number correct."""
    trainer.zero_grad()
    y_hat = net(X)  # (B, 10)
    l = loss(y_hat, y)
    l.backward()
    trainer.step()
    return l.detach() * X.shape[0], accuracy(y_hat.detach(), y)


def sgd_step(net: nn.Module, X: np.ndarray, y: np.ndarray, lr: float, dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    device = next(net.parameters()).device
    net.train(dropout)
    trainer = torch.optim.SGD(net.parameters(), lr=lr)
    X, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    l, _ = train_step(net, X, y, nn.CrossEntropyLoss(), trainer)
    return l.item() / len(y)
