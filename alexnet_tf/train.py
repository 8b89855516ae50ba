"""Train the book's AlexNet on Fashion-MNIST with TensorFlow: `python -m alexnet_tf.train --help`."""

import time
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.data import DataIter, load_data_fashion_mnist
from alexnet_tf.model import alexnet, get_weights
from alexnet_tf.parallel import local_copies, replicas, replicas_name, train_batch
from common import fashion_mnist
from common.batches import epoch_seed
from common.cli import hparams_from_args, parse_args, run_cli
from common.errors import UserError
from common.metrics import epoch_record, estimate, estimate_line, long_run, memory_record, progress, versions
from common.run import Run
from common.spec import num_params
from common.weights import save_weights

BACKEND = "tf"
CKPT_EXT = "weights.h5"  # Keras 3 insists on this suffix for save_weights

# ---- Device ----


def get_device(name: str) -> str:
    """`auto`: a GPU if there is one, else the CPU; `gpu`: a GPU or a clear error."""
    if name in ("auto", "gpu") and tf.config.list_physical_devices("GPU"):
        return "/GPU:0"
    if name == "gpu":
        raise UserError("--device gpu: TensorFlow sees no GPU (no CUDA build or no CUDA device): use "
                        "--device cpu, or pip install 'tensorflow[and-cuda]' on a machine with a GPU")
    return "/CPU:0"


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
    where PyTorch switches it per region of code (autocast).
    """
    fast = keras.models.clone_model(net, clone_function=_mixed)
    fast.set_weights(net.get_weights())
    fast.jit_compile = device.startswith("/GPU") if compile is None else compile  # read by step_function
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
        for X, y in data_iter:
            correct += correct_fn(net, X, y)
    return float(correct.numpy()) / data_iter.num_examples


# ---- One training step ----


@tf.function(reduce_retracing=True)
def train_step(net: keras.Sequential, X: tf.Tensor, y: tf.Tensor, loss: keras.losses.Loss,
               trainer: keras.optimizers.Optimizer, training: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """One minibatch SGD step; returns the summed loss and the number correct."""
    with tf.GradientTape() as tape:
        y_hat = net(X, training=training)  # (B, 10); training=False: dropout off
        l = loss(y, y_hat)  # the book's name for the loss value
    grads = tape.gradient(l, net.trainable_variables)
    trainer.apply_gradients(zip(grads, net.trainable_variables))
    return l * tf.cast(tf.shape(X)[0], l.dtype), accuracy(y_hat, y)


train_step_xla = tf.function(train_step.python_function, jit_compile=True, reduce_retracing=True)


def step_function(net: keras.Sequential):
    """The step to run: compiled whole by XLA where --fast set net.jit_compile, else the plain graph."""
    return train_step_xla if net.jit_compile else train_step


def sgd_step(net: keras.Sequential, X: np.ndarray, y: np.ndarray, lr: float, dropout: bool = True) -> float:
    """One SGD step on NumPy data; returns the mean loss before the step (tests and parity)."""
    trainer = keras.optimizers.SGD(learning_rate=lr)
    trainer.build(net.trainable_variables)
    X = tf.constant(np.transpose(X, (0, 2, 3, 1)))  # NCHW to NHWC
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    l, _ = step_function(net)(net, X, tf.constant(y), loss, trainer, dropout)
    return float(l.numpy()) / len(y)


# ---- The training loop ----


def _seed_dropout(net: keras.Sequential, seed: int, strategy: tf.distribute.Strategy | None = None) -> None:
    """Restart each dropout layer's random stream from `seed` (Keras keeps it in a variable)."""
    dropouts = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    for i, layer in enumerate(dropouts):
        for rank, state in enumerate(local_copies(layer.seed_generator.state, strategy)):
            state.assign([seed + i, rank])  # --devices N: each replica its own masks (rank 0 alone: as before)


def train_epoch(net: keras.Sequential, train_iter: DataIter, loss: keras.losses.Loss,
                trainer: keras.optimizers.Optimizer, bar,
                strategy: tf.distribute.Strategy | None = None) -> tuple[float, float, float]:
    """One pass over the training data: mean loss, accuracy and seconds."""
    start = time.perf_counter()
    with tf.device(train_iter.device):
        metric = tf.zeros(2)  # summed loss, number correct
        step = step_function(net)
        for X, y in train_iter:
            if strategy is None:
                l, correct = step(net, X, y, loss, trainer)
            else:  # --devices N: each replica takes its share of the minibatch (alexnet_tf/parallel.py)
                l, correct = train_batch(strategy, net, X, y, trainer)
            metric += tf.stack([l, correct])
            bar.update(len(y))
    train_l, train_correct = metric.numpy().tolist()  # waits for the device
    n = train_iter.num_examples
    return train_l / n, train_correct / n, time.perf_counter() - start


def train(net: keras.Sequential, train_iter: DataIter, test_iter: DataIter, run: Run,
          trainer: keras.optimizers.Optimizer, no_progress: bool = False,
          strategy: tf.distribute.Strategy | None = None) -> None:
    """Train for the run's remaining epochs, checkpointing after each."""
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    hp = run.hparams
    for epoch in range(run.start_epoch + 1, hp.num_epochs + 1):
        _seed_dropout(net, epoch_seed(hp.seed, epoch), strategy)  # dropout, repeatable on resume
        train_iter.set_epoch(epoch)
        start = time.perf_counter()
        with progress(train_iter.num_examples, epoch, hp.num_epochs, no_progress) as bar:
            train_l, train_acc, train_time = train_epoch(net, train_iter, loss, trainer, bar, strategy)
        test_acc = evaluate_accuracy(net, test_iter)
        record = epoch_record(epoch, train_l, train_acc, test_acc, train_iter.num_examples,
                              train_time, time.perf_counter() - start)
        run.end_epoch(record, lambda path, epoch=epoch: save_checkpoint(path, net, trainer, epoch))


# ---- Checkpoints ----


def save_checkpoint(path: Path, net: keras.Sequential, trainer: keras.optimizers.Optimizer,
                    epoch: int) -> None:
    """Write the network and optimizer state (the run directory makes it atomic)."""
    net.save_weights(path)  # Keras's native .weights.h5
    with h5py.File(path, "a") as f:  # beside it: the optimizer's variables and the epoch
        trainer.save_own_variables(f.create_group("trainer"))
        f.attrs["epoch"] = epoch


def load_checkpoint(path: Path, net: keras.Sequential, trainer: keras.optimizers.Optimizer) -> int:
    """Restore a checkpoint (weights and arrays only, no code) and return its epoch."""
    try:
        net.load_weights(path)
        with h5py.File(path, "r") as f:
            trainer.build(net.trainable_variables)
            trainer.load_own_variables({k: v[()] for k, v in f["trainer"].items()})
            epoch = int(f.attrs["epoch"])
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot load checkpoint {path} ({str(e).splitlines()[0]}): "
                        f"start a new run with --force") from None
    return epoch


# ---- Time estimate ----


def probe_speed(net: keras.Sequential, resize: int, batch_size: int, device: str) -> float:
    """Training images/s, timed on a copy of the network with one random minibatch."""
    with tf.device(device):
        probe = keras.models.clone_model(net)  # fresh weights: the speed does not depend on them
        trainer = keras.optimizers.SGD(learning_rate=0.0)
        trainer.build(probe.trainable_variables)
        X = tf.random.uniform((batch_size, resize, resize, 1))
        y = tf.zeros(batch_size, dtype=tf.int64)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        train_step(probe, X, y, loss, trainer)  # warm-up (and tracing)
        start = time.perf_counter()
        train_step(probe, X, y, loss, trainer)[0].numpy()
    return batch_size / (time.perf_counter() - start)


# ---- Main ----


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    args = parse_args(BACKEND, argv)
    hp = hparams_from_args(args)
    device = get_device(args.device)
    strategy = replicas(args.devices, device)  # before any TensorFlow op: virtual CPU devices need it
    name = replicas_name(strategy, device_name(device))
    data = fashion_mnist.load(args.data_dir, hp.train_limit, hp.test_limit)
    run = Run(args.out, BACKEND, hp, CKPT_EXT, resume=args.resume, force=args.force)
    print(fashion_mnist.describe(data))
    print(f"training on {name}, writing to {run.out}")
    keras.utils.set_random_seed(hp.seed)
    with strategy.scope(), tf.device(device):  # --devices N: every variable mirrored on each replica
        net = alexnet(hp.resize)
        if hp.fast:
            net = fast_path(net, device)  # a copy, with the same weights
        trainer = keras.optimizers.SGD(learning_rate=hp.lr)
        trainer.build(net.trainable_variables)
    if run.checkpoint:
        load_checkpoint(run.checkpoint, net, trainer)
        print(f"resuming after epoch {run.start_epoch}")
    epochs_left = hp.num_epochs - run.start_epoch
    if device.startswith("/CPU") and long_run(hp, len(data.train_labels), epochs_left):
        speed = probe_speed(net, hp.resize, hp.batch_size, device)
        seconds = estimate(speed, len(data.train_labels), len(data.test_labels), epochs_left)
        print(estimate_line(seconds, speed, "this CPU", epochs_left))
    train_iter, test_iter = load_data_fashion_mnist(data, hp.batch_size, hp.resize, device, hp.seed)
    try:
        train(net, train_iter, test_iter, run, trainer, args.no_progress,
              strategy if args.devices > 1 else None)
    except KeyboardInterrupt:
        raise run.interrupted() from None
    save_weights(run.weights_path, get_weights(net), hp.resize, BACKEND)
    extra = {"versions": {**versions("tensorflow", tf.__version__), "keras": keras.__version__},
             "params": num_params(hp.resize), "data": fashion_mnist.describe(data), "devices": args.devices,
             "memory": peak_memory(device)}
    print(run.finish(name, extra))


if __name__ == "__main__":
    run_cli(main)
