"""Where and how MXNet computes one step: the device, the opt-in fast path, evaluation, the SGD step."""

import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter
from common.errors import UserError
from common.metrics import memory_record

npx.set_np()

# ---- Device ----


def no_tf32() -> None:
    """Float32 convolutions and matrix products in float32 on a GPU, not in TF32 (10 bits of mantissa, not 23).

    The book's math is float32. On NVIDIA GPUs from Ampere on, cuDNN computes float32 convolutions in
    TF32 by default, and MXNet has no switch for it: NVIDIA's libraries read NVIDIA_TF32_OVERRIDE=0 as
    they start, so it is set before MXNet's first GPU work. --fast keeps float32 in MXNet.
    """
    os.environ["NVIDIA_TF32_OVERRIDE"] = "0"


def _gpu_works() -> bool:
    """Whether MXNet can compute on GPU 0: a CUDA build of MXNet, a driver and a device."""
    try:
        if mx.context.num_gpus() == 0:
            return False
        no_tf32()  # before MXNet's first work on the GPU
        mx.np.zeros(1, ctx=mx.gpu(0)).wait_to_read()
        return True
    except mx.base.MXNetError:  # e.g. a CUDA build without a driver
        return False


def get_device(name: str) -> mx.Context:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu") and _gpu_works():
        return mx.gpu(0)
    if name == "gpu":
        raise UserError("--device gpu: MXNet sees no usable GPU (a CPU build of MXNet, or no CUDA "
                        "device): use --device cpu, or install a CUDA build (e.g. mxnet-cu112) on a "
                        "machine with a GPU")
    return mx.cpu()


def on_cpu(device: mx.Context) -> bool:
    """Whether `device` is the host's CPU: there the memory check applies, and bf16 needs the CPU's instructions."""
    return device.device_type == "cpu"


def device_name(device: mx.Context) -> str:
    """The device as the book prints it: cpu(0) or gpu(0)."""
    return str(device)


def peak_memory(device: mx.Context) -> dict:
    """Memory: on a GPU what is in use now (MXNet keeps no peak), on the CPU this process's peak."""
    if device.device_type == "gpu":
        free, total = mx.context.gpu_memory_info(device.device_id)
        return memory_record((total - free) / 2**20, "GPU memory in use at the end (MXNet keeps no peak)")
    return memory_record()  # this process's peak RSS


# ---- Fast path (opt-in) ----


def fast_path(net: nn.HybridSequential, device: mx.Context, compile: bool | None = None) -> nn.HybridSequential:
    """--fast: the network as it is, hybridized with static memory and shapes as in every mode (model.py).

    MXNet 1.9.1's bf16 AMP does not train through the NumPy interface (its first loss came out at 295), and
    its oneDNN bf16 kernels are slower than its float32 ones here (docs/results.md), so MXNet's fast path is
    its faithful float32 network, on every device. `compile=False` gives the plain hybridize, the reference
    that the static one is tested against.
    """
    if compile is False:
        net.hybridize()  # in place: the cached graph without static memory and shapes
    return net


# ---- Evaluation ----


def accuracy(y_hat: mx.np.ndarray, y: mx.np.ndarray) -> mx.np.ndarray:
    """The number of correct predictions, as an array (no sync with the device)."""
    return (y_hat.argmax(axis=1) == y).sum()


def evaluate_accuracy(net: nn.HybridSequential, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    correct = mx.np.zeros((), dtype=np.int64, ctx=data_iter.device)
    queued = mx.np.zeros(())  # the previous batch's count (see train.train_epoch)
    for X, y in data_iter:  # outside autograd.record() Gluon predicts: dropout is off
        n = accuracy(net(X), y)
        correct += n
        queued.wait_to_read()
        queued = n
    return data_iter.total(correct).item() / data_iter.num_examples  # one process holds every replica's


# ---- One training step ----


def train_step(net: nn.HybridSequential, X: mx.np.ndarray, y: mx.np.ndarray, loss: gluon.loss.Loss,
               trainer: gluon.Trainer) -> tuple[mx.np.ndarray, mx.np.ndarray]:
    """One minibatch SGD step; returns the summed loss and the number correct."""
    with autograd.record():  # train mode: dropout on
        y_hat = net(X)  # (B, 10)
        l = loss(y_hat, y)  # (B,): one loss per example
    l.backward()
    trainer.step(X.shape[0])  # divides the summed gradient by this batch's size: the last one too
    return l.sum(), accuracy(y_hat, y)


def without_dropout(net: nn.HybridSequential) -> nn.HybridSequential:
    """The same layers and parameters without the dropouts: the predict-mode network, to train.

    Not autograd.record(train_mode=False): after a predict-mode forward pass, MXNet 1.9.1's oneDNN
    max-pooling has kept no argmax workspace, and its backward pass returns wrong gradients.
    """
    layers = nn.HybridSequential()
    layers.add(*[layer for layer in net if not isinstance(layer, nn.Dropout)])
    return layers


def sgd_step(net: nn.HybridSequential, X: np.ndarray, y: np.ndarray, lr: float,
             dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    device = net.collect_params().list_ctx()[0]
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    X, y = mx.np.array(X, dtype=np.float32, ctx=device), mx.np.array(y, dtype=np.int64, ctx=device)
    if not dropout:
        net = without_dropout(net)  # predict mode's network, trained in train mode
    l, _ = train_step(net, X, y, gluon.loss.SoftmaxCrossEntropyLoss(), trainer)
    return l.item() / len(y)
