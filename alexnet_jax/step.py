"""Where and how JAX computes one step: the device, the opt-in fast path, evaluation, the SGD step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from alexnet_jax.data import DataIter
from common.errors import UserError
from common.metrics import memory_record
from common.precision import compute_dtype

# ---- Device ----


def no_tf32() -> None:
    """Float32 convolutions and matrix products in float32 on a GPU, not in TF32 (10 bits of mantissa, not 23).

    The book's math is float32. On NVIDIA GPUs from Ampere on, XLA computes float32 convolutions and
    matrix products in TF32 at JAX's default precision. Functions compiled after this use it; --fast's
    bf16 layers name their own precision (fast_path).
    """
    jax.config.update("jax_default_matmul_precision", "float32")


def get_device(name: str) -> jax.Device:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu"):
        gpus = [d for d in jax.devices() if d.platform == "gpu"]  # the default backend: CUDA where jaxlib has it
        if gpus:
            no_tf32()
            return gpus[0]
    if name == "gpu":
        raise UserError("--device gpu: JAX sees no GPU (a CPU-only jaxlib or no CUDA device): use --device cpu, "
                        "or pip install -U 'jax[cuda12]' on a machine with a GPU")
    return jax.devices("cpu")[0]


def on_cpu(device: jax.Device) -> bool:
    """Whether `device` is the host's CPU: there the memory check applies, and bf16 needs the CPU's instructions."""
    return device.platform == "cpu"


def device_name(device: jax.Device) -> str:
    """The device as the book prints it, with the GPU's model where there is one."""
    if device.platform == "gpu":
        return f"gpu:{device.id} ({device.device_kind})"
    return f"{device.platform}:{device.id}"


def commit(*nodes: nnx.Module | nnx.Optimizer) -> None:
    """Commit every array of `nodes` (the network, its trainer) to the device it is on, so the step compiles once.

    Arrays made under `jax.default_device` are uncommitted, the compiled step's outputs are committed,
    and XLA compiles a function again for arguments placed differently: without this, the second step
    would compile the training step a second time (1.3 s at 224 on a 2-core CPU, docs/results.md).
    """
    for node in nodes:
        nnx.update(node, jax.tree.map(lambda x: jax.device_put(x, x.sharding), nnx.state(node)))


def peak_memory(device: jax.Device) -> dict:
    """Peak memory so far: XLA's GPU allocator's high-water mark, or this process's on the CPU."""
    stats = device.memory_stats() if device.platform == "gpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return memory_record(stats["peak_bytes_in_use"] / 2**20, "XLA GPU peak_bytes_in_use")
    return memory_record()  # this process's peak RSS


# ---- Fast path (opt-in) ----


def fast_path(net: nnx.Sequential, device: jax.Device, compile: bool | None = None) -> nnx.Sequential:
    """--fast: the same float32 parameters, each conv and dense layer computing in bfloat16 on a GPU (Flax's `dtype`).

    Flax layers keep `param_dtype` (float32) apart from the computation's `dtype`, so the network is the
    same object with its layers told to compute in bf16; the steps cast the logits back to float32.
    XLA's CPU computes bf16 slower than float32 (a 2-core CPU trained at 28 against 35 images/s,
    docs/results.md), so on a CPU the network stays float32. Every JAX step is compiled by XLA already
    (jit), on a CPU too: `compile` is accepted for the shared signature and changes nothing.
    """
    if compute_dtype("jax", fast=True, on_cpu=on_cpu(device)) == "float32":
        return net  # the book's float32 network, as it is
    for layer in net.layers:
        if isinstance(layer, nnx.Conv | nnx.Linear):
            layer.dtype = jnp.bfloat16  # static: the steps compile once more for it
            layer.precision = "default"  # bf16 as XLA computes it by default, whatever no_tf32 set for float32
    return net


# ---- Evaluation ----


def accuracy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """The number of correct predictions, as an array (no sync with the device); padding rows never match."""
    return jnp.sum(jnp.argmax(y_hat, axis=1) == y).astype(jnp.float32)


@nnx.jit
def _correct(net: nnx.Sequential, X: jax.Array, y: jax.Array) -> jax.Array:
    """The number correct on one minibatch, as one compiled function."""
    return accuracy(net(X), y)


def evaluate_accuracy(net: nnx.Sequential, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    net.eval()  # dropout off (a static attribute: its own compiled version)
    correct = jnp.zeros(())
    for X, y in data_iter:  # the whole minibatch: one process drives every replica
        correct += _correct(net, X, y)
    return float(data_iter.total(correct)) / data_iter.num_examples


# ---- One training step ----


def _loss(net: nnx.Sequential, X: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy over the labelled rows (padding rows left out), and the logits."""
    y_hat = net(X).astype(jnp.float32)  # (B, 10); --fast: from bf16
    labelled = y >= 0
    l = optax.softmax_cross_entropy_with_integer_labels(y_hat, jnp.maximum(y, 0))  # per example
    return jnp.sum(jnp.where(labelled, l, 0)) / jnp.maximum(jnp.sum(labelled), 1), y_hat


@nnx.jit
def train_step(net: nnx.Sequential, X: jax.Array, y: jax.Array, trainer: nnx.Optimizer) -> tuple[jax.Array, jax.Array]:
    """One minibatch SGD step, compiled; returns the summed loss and the number correct.

    The loss is `_loss`, compiled in with the step (the other backends pass theirs in). The network's
    dropout streams advance inside (NNX carries the state in and out of jit); on a minibatch laid out
    across a mesh, XLA adds the replicas' gradients (an all-reduce) by itself.
    """
    (l, y_hat), grads = nnx.value_and_grad(_loss, has_aux=True)(net, X, y)
    trainer.update(net, grads)  # p <- p - lr * g, Optax's plain SGD
    return l * jnp.sum(y >= 0), accuracy(y_hat, y)


def sgd_step(net: nnx.Sequential, X: np.ndarray, y: np.ndarray, lr: float, dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    trainer = nnx.Optimizer(net, optax.sgd(lr), wrt=nnx.Param)
    net.train() if dropout else net.eval()
    X = jnp.asarray(np.transpose(X, (0, 2, 3, 1)))  # NCHW to NHWC
    l, _ = train_step(net, X, jnp.asarray(y, jnp.int32), trainer)
    return float(l) / len(y)
