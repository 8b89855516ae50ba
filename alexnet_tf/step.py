"""Where and how TensorFlow computes one step: the device, the opt-in fast path, evaluation, the SGD step."""

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data import DataIter
from common.errors import UserError
from common.metrics import memory_record
from common.precision import compute_dtype

# ---- Device ----


def no_tf32() -> None:
    """Float32 convolutions and matrix products in float32 on a GPU, not in TF32 (10 bits of mantissa, not 23).

    The book's math is float32. On NVIDIA GPUs from Ampere on, TensorFlow runs float32 convolutions and
    matrix products in TF32 unless told not to. --fast computes in bf16 instead.
    """
    tf.config.experimental.enable_tensor_float_32_execution(False)


def get_device(name: str) -> str:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu") and tf.config.list_physical_devices("GPU"):
        no_tf32()
        return "/GPU:0"
    if name == "gpu":
        raise UserError("--device gpu: TensorFlow sees no GPU (no CUDA build or no CUDA device): use "
                        "--device cpu, or pip install 'tensorflow[and-cuda]' on a machine with a GPU")
    return "/CPU:0"


def on_cpu(device: str) -> bool:
    """Whether `device` is the host's CPU: there the memory check applies, and bf16 needs the CPU's instructions."""
    return device.startswith("/CPU")


def device_name(device: str) -> str:
    """The device as the book prints it, with the GPU's model where there is one."""
    if device.startswith("/GPU"):
        gpu = tf.config.list_physical_devices("GPU")[0]
        return f"{device} ({tf.config.experimental.get_device_details(gpu).get('device_name', 'GPU')})"
    return device


def peak_memory(device: str) -> dict:
    """Peak memory so far: TensorFlow's GPU allocator's high-water mark, or this process's on the CPU."""
    if device.startswith("/GPU"):
        return memory_record(tf.config.experimental.get_memory_info(device[1:])["peak"] / 2**20,
                             "TensorFlow GPU peak")
    return memory_record()  # this process's peak RSS


# ---- Fast path (opt-in) ----


def _mixed(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh copy of `layer` that computes in bfloat16 and keeps float32 weights."""
    return layer.__class__.from_config({**layer.get_config(), "dtype": "mixed_bfloat16"})


def fast_path(net: keras.Sequential, device: str, compile: bool | None = None) -> keras.Sequential:
    """--fast: a copy of the network with the same weights, computing in bf16, its steps compiled by XLA on a GPU.

    Keras itself turns XLA off on CPU-only machines; on the 2-core CI CPU bf16 took training from 80
    to 144 images/s and XLA took it down to 52 (docs/results.md), so the CPU is not compiled unless
    `compile` says so. Keras sets the precision per layer as it builds it, so the layers are rebuilt,
    where PyTorch switches it per region of code (autocast). A CPU without bf16 instructions keeps the
    float32 network: there bf16 trained 6x slower (common/precision.py).
    """
    if compute_dtype("tf", fast=True, on_cpu=on_cpu(device)) == "float32":
        return net  # the book's float32 network, as it is
    fast = keras.models.clone_model(net, clone_function=_mixed)
    fast.set_weights(net.get_weights())
    fast.jit_compile = device.startswith("/GPU") if compile is None else compile  # read by the steps
    return fast


# ---- Evaluation ----


def accuracy(y_hat: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The number of correct predictions, as a tensor (no sync with the device)."""
    return tf.reduce_sum(tf.cast(tf.argmax(y_hat, axis=1, output_type=y.dtype) == y, tf.float32))


@tf.function(reduce_retracing=True)
def _correct(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """The number correct on one minibatch, dropout off, as one compiled graph."""
    return accuracy(net(X, training=False), y)


_correct_xla = tf.function(_correct.python_function, jit_compile=True, reduce_retracing=True)


def evaluate_accuracy(net: keras.Sequential, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    with tf.device(data_iter.device):
        correct = tf.zeros(())
        correct_fn = _correct_xla if net.jit_compile else _correct  # XLA: --fast on a GPU
        for X, y in data_iter:  # the whole minibatch: one process drives every replica
            correct += correct_fn(net, X, y)
    return float(data_iter.total(correct).numpy()) / data_iter.num_examples


# ---- One training step ----


@tf.function(reduce_retracing=True)
def _train_step(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor, loss: keras.losses.Loss,
                trainer: keras.optimizers.Optimizer, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """train_step as one compiled graph."""
    with tf.GradientTape() as tape:
        y_hat = net(X, training=training)  # (B, 10); training=False: dropout off
        l = loss(y, y_hat)  # the book's name for the loss value
    grads = tape.gradient(l, net.trainable_variables)
    trainer.apply_gradients(zip(grads, net.trainable_variables))
    return l * tf.cast(tf.shape(X)[0], l.dtype), accuracy(y_hat, y)


_train_step_xla = tf.function(_train_step.python_function, jit_compile=True, reduce_retracing=True)


def train_step(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor, loss: keras.losses.Loss,
               trainer: keras.optimizers.Optimizer, training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """One minibatch SGD step; returns the summed loss and the number correct."""
    step = _train_step_xla if net.jit_compile else _train_step  # XLA: --fast on a GPU
    return step(net, X, y, loss, trainer, training)


def sgd_step(net: keras.Sequential, X: np.ndarray, y: np.ndarray, lr: float, dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    trainer = keras.optimizers.SGD(learning_rate=lr)
    trainer.build(net.trainable_variables)
    X = tf.constant(np.transpose(X, (0, 2, 3, 1)))  # NCHW to NHWC
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    l, _ = train_step(net, X, tf.constant(y), loss, trainer, dropout)
    return float(l.numpy()) / len(y)
