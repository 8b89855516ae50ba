"""Train the book's AlexNet on Fashion-MNIST with MXNet: `python -m alexnet_mxnet.train --help`."""

import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, npx
from mxnet.gluon import nn

from alexnet_mxnet.data import DataIter, load_data_fashion_mnist
from alexnet_mxnet.model import alexnet
from alexnet_mxnet.parallel import replica_contexts, replica_weights, replicas, replicas_name, replicate, train_batch
from common import fashion_mnist
from common.batches import epoch_seed
from common.cli import hparams_from_args, parse_args, run_cli
from common.errors import UserError
from common.metrics import epoch_record, estimate, estimate_line, long_run, memory_record, progress, versions
from common.run import Run
from common.spec import num_params
from common.weights import save_weights

npx.set_np()

BACKEND = "mxnet"
CKPT_EXT = "params"

# ---- Device ----


def _gpu_works() -> bool:
    """Whether MXNet can compute on GPU 0: a CUDA build of MXNet, a driver and a device."""
    try:
        if mx.context.num_gpus() == 0:
            return False
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
    """--fast: the same network hybridized with static memory and shapes (one cached graph per batch shape).

    MXNet 1.9.1's bf16 AMP does not train through the NumPy interface (its first loss came out at 295),
    so this is the whole of MXNet's fast path, on every device (`compile=False`: the usual hybridize);
    on the 2-core CI CPU it measured no faster (docs/results.md).
    """
    static = compile is not False
    net.hybridize(static_alloc=static, static_shape=static)  # in place: reuse buffers, skip shape inference
    return net


# ---- Evaluation ----


def accuracy(y_hat: mx.np.ndarray, y: mx.np.ndarray) -> mx.np.ndarray:
    """The number of correct predictions, as an array (no sync with the device)."""
    return (y_hat.argmax(axis=1) == y).sum()


def evaluate_accuracy(net: nn.HybridSequential, data_iter: DataIter) -> float:
    """Accuracy of `net` on a whole split, dropout off."""
    correct = mx.np.zeros((), dtype=np.int64, ctx=data_iter.device)
    queued = mx.np.zeros(())  # the previous batch's count (see train_epoch)
    for X, y in data_iter:  # outside autograd.record() Gluon predicts: dropout is off
        n = accuracy(net(X), y)
        correct += n
        queued.wait_to_read()
        queued = n
    return correct.item() / data_iter.num_examples


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


def _without_dropout(net: nn.HybridSequential) -> nn.HybridSequential:
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
        net = _without_dropout(net)  # predict mode's network, trained in train mode
    l, _ = train_step(net, X, y, gluon.loss.SoftmaxCrossEntropyLoss(), trainer)
    return l.item() / len(y)


# ---- The training loop ----


def train_epoch(net: nn.HybridSequential, train_iter: DataIter, loss: gluon.loss.Loss,
                trainer: gluon.Trainer, bar) -> tuple[float, float, float]:
    """One pass over the training data: mean loss, accuracy and seconds."""
    metric = mx.np.zeros(2, ctx=train_iter.device)  # summed loss, number correct
    start = time.perf_counter()
    queued = mx.np.zeros(())  # the previous step's loss
    # --devices N: each replica takes its shard of every minibatch (alexnet_mxnet/parallel.py)
    step = train_batch if len(replica_contexts(net)) > 1 else train_step
    for X, y in train_iter:
        l, correct = step(net, X, y, loss, trainer)
        metric += mx.np.stack([l, correct.astype(np.float32)])
        # MXNet runs the steps asynchronously; let it queue one step ahead, no further, so that
        # the bar shows work done and Ctrl-C is not held up until the whole epoch has run.
        queued.wait_to_read()
        queued = l
        bar.update(len(y))
    npx.waitall()  # MXNet computes asynchronously: wait for the last step before reading the clock
    train_l, train_correct = metric.tolist()
    n = train_iter.num_examples
    return train_l / n, train_correct / n, time.perf_counter() - start


def train(net: nn.HybridSequential, train_iter: DataIter, test_iter: DataIter, run: Run,
          trainer: gluon.Trainer, no_progress: bool = False) -> None:
    """Train for the run's remaining epochs, checkpointing after each."""
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    hp = run.hparams
    for epoch in range(run.start_epoch + 1, hp.num_epochs + 1):
        mx.random.seed(epoch_seed(hp.seed, epoch))  # dropout, repeatable on resume
        train_iter.set_epoch(epoch)
        start = time.perf_counter()
        with progress(train_iter.num_examples, epoch, hp.num_epochs, no_progress) as bar:
            train_l, train_acc, train_time = train_epoch(net, train_iter, loss, trainer, bar)
        test_acc = evaluate_accuracy(net, test_iter)
        record = epoch_record(epoch, train_l, train_acc, test_acc, train_iter.num_examples,
                              train_time, time.perf_counter() - start)
        run.end_epoch(record, lambda path, epoch=epoch: save_checkpoint(path, net, trainer, epoch))


# ---- Checkpoints ----


def save_checkpoint(path: Path, net: nn.HybridSequential, trainer: gluon.Trainer, epoch: int) -> None:
    """Write the network's parameters and the epoch (the run directory makes it atomic)."""
    # Plain SGD (no momentum) keeps no optimizer state; the learning rate is in the run's settings.
    net.save_parameters(str(path))  # Gluon's format: arrays only, named 0.weight, 0.bias, ...
    npx.save(str(path), {**npx.load(str(path)), "epoch": mx.np.array([epoch])})


def load_checkpoint(path: Path, net: nn.HybridSequential, trainer: gluon.Trainer) -> int:
    """Restore a checkpoint safely (arrays only, nothing unpickled) and return its epoch."""
    try:
        net.load_parameters(str(path), ctx=net.collect_params().list_ctx(), ignore_extra=True)
        epoch = int(npx.load(str(path))["epoch"].item())
    except (OSError, ValueError, KeyError, AssertionError, mx.base.MXNetError) as e:
        cause = str(e).strip().splitlines()[-1]  # MXNet's messages end with the cause, after its traceback
        raise UserError(f"cannot load checkpoint {path} ({cause}): "
                        f"start a new run with --force") from None
    return epoch


# ---- Time estimate ----


def probe_speed(net: nn.HybridSequential, resize: int, batch_size: int, device: mx.Context) -> float:
    """Training images/s, timed on a network of the same shape with one random minibatch."""
    probe = alexnet(resize, device)  # a fresh one, not a copy: the speed does not depend on the weights
    trainer = gluon.Trainer(probe.collect_params(), "sgd", {"learning_rate": 0.0})
    X = mx.np.random.uniform(size=(batch_size, 1, resize, resize), ctx=device)
    y = mx.np.zeros(batch_size, dtype=np.int64, ctx=device)
    train_step(probe, X, y, gluon.loss.SoftmaxCrossEntropyLoss(), trainer)  # warm-up
    npx.waitall()
    start = time.perf_counter()
    train_step(probe, X, y, gluon.loss.SoftmaxCrossEntropyLoss(), trainer)
    npx.waitall()
    return batch_size / (time.perf_counter() - start)


# ---- Main ----


def main(argv: list[str] | None = None) -> None:
    """Train with the book's settings (or the flags'), print the book's line, write the run."""
    args = parse_args(BACKEND, argv)
    hp = hparams_from_args(args)
    contexts = replicas(args.devices, get_device(args.device))  # [device] unless --devices N
    device = contexts[0]  # holds the data; evaluates; times the probe
    name = replicas_name(contexts, device_name(device))
    data = fashion_mnist.load(args.data_dir, hp.train_limit, hp.test_limit)
    run = Run(args.out, BACKEND, hp, CKPT_EXT, resume=args.resume, force=args.force)
    print(fashion_mnist.describe(data))
    print(f"training on {name}, writing to {run.out}")
    mx.random.seed(hp.seed)
    net = alexnet(hp.resize, device)
    if hp.fast:
        net = fast_path(net, device)  # the same network, hybridized statically
    replicate(net, contexts)  # --devices N: a copy of every weight on each context
    # kvstore 'device' sums the replicas' gradients (on the GPUs, when there are GPUs); one context needs none.
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": hp.lr}, kvstore="device")
    if run.checkpoint:
        load_checkpoint(run.checkpoint, net, trainer)
        print(f"resuming after epoch {run.start_epoch}")
    epochs_left = hp.num_epochs - run.start_epoch
    if device.device_type == "cpu" and long_run(hp, len(data.train_labels), epochs_left):
        speed = probe_speed(net, hp.resize, hp.batch_size, device)
        seconds = estimate(speed, len(data.train_labels), len(data.test_labels), epochs_left)
        print(estimate_line(seconds, speed, "this CPU", epochs_left))
    train_iter, test_iter = load_data_fashion_mnist(data, hp.batch_size, hp.resize, device, hp.seed)
    try:
        train(net, train_iter, test_iter, run, trainer, args.no_progress)
    except KeyboardInterrupt:
        raise run.interrupted() from None
    save_weights(run.weights_path, replica_weights(net, device), hp.resize, BACKEND)  # the replicas agree
    extra = {"versions": versions("mxnet", mx.__version__), "params": num_params(hp.resize),
             "data": fashion_mnist.describe(data), "devices": args.devices,
             "memory": peak_memory(device)}
    print(run.finish(name, extra))


if __name__ == "__main__":
    run_cli(main)
