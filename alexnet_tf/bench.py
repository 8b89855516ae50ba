"""Training and evaluation throughput of the TensorFlow AlexNet: `python -m alexnet_tf.bench --help`."""

import time
from pathlib import Path

import keras
import tensorflow as tf

from alexnet_tf.data import DataIter, load_data_fashion_mnist
from alexnet_tf.model import alexnet
from alexnet_tf.step import device_name, evaluate_accuracy, fast_path, get_device, on_cpu, peak_memory, train_step
from common import bench as common_bench
from common.errors import run_cli
from common.metrics import gemm_ceiling

BACKEND = "tf"

# ---- Timing ----


def time_training(net: keras.Sequential, train_iter: DataIter, lr: float) -> float:
    """Training images/s over one pass of `train_iter` (data path included), after a warm-up step."""
    trainer = keras.optimizers.SGD(learning_rate=lr)
    trainer.build(net.trainable_variables)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.device(train_iter.device):
        batches = iter(train_iter)
        X, y = next(batches)
        train_step(net, X, y, loss, trainer)[0].numpy()  # warm-up (and tracing)
        start, n = time.perf_counter(), 0
        for X, y in batches:
            l, _ = train_step(net, X, y, loss, trainer)
            n += len(y)
        l.numpy()  # waits for the device
    return n / (time.perf_counter() - start)


# ---- Ceiling ----


def matmul_ceiling(dtype: str, side: int, device: str) -> dict:
    """This machine's matrix-product rate in `dtype` with TensorFlow: the best of several side x side products."""
    with tf.device(device):
        a, b = (tf.cast(tf.random.uniform((side, side)), dtype) for _ in range(2))
        return gemm_ceiling(lambda: (a @ b)[0, 0].numpy(), side, dtype)  # .numpy() waits for the device


# ---- Profile ----


def profile_training(net: keras.Sequential, train_iter: DataIter, lr: float, out: Path) -> str:
    """A pass of training steps traced into `out`, for TensorBoard's profiler (it prints no table)."""
    tf.profiler.experimental.start(str(out))
    time_training(net, train_iter, lr)  # the same pass of steps, once more, under the profiler
    tf.profiler.experimental.stop()
    return (f"trace written to {out}: pip install tensorboard tensorboard-plugin-profile, then "
            f"tensorboard --logdir {out} (Profile tab)")


# ---- Main ----


def build(resize: int, fast: bool, device: str) -> keras.Sequential:
    """The network to time, seeded, on `device`, on the fast path if asked."""
    keras.utils.set_random_seed(0)
    with tf.device(device):
        net = alexnet(resize)
        return fast_path(net, device) if fast else net


TIMER = common_bench.Timer(BACKEND, get_device, on_cpu, build, load_data_fashion_mnist, time_training,
                           evaluate_accuracy, matmul_ceiling, device_name, peak_memory, profile_training)


def main(argv: list[str] | None = None) -> None:
    """Measure and print training and evaluation images/s on random data of the real sizes."""
    common_bench.main(TIMER, argv)


if __name__ == "__main__":
    run_cli(main)
