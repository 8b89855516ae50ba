"""The settings a backend makes before its framework starts, for speed on a CPU: set, and a user's own choice wins."""

import os
import platform
import subprocess
import sys

import pytest

from common.launch import cores
from common.precision import OVERRIDE
from tests.harness.page_faults import USERS_OWN, kept, page_faults, unmapped

YNN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"  # XLA's own convolutions (alexnet_jax)


def _environ(backend: str, name: str, **env: str) -> str:
    """The variable `name` after `import alexnet_<backend>`, in a fresh process with `env` (and without `name`)."""
    clean = {k: v for k, v in os.environ.items() if k != name}
    code = f"import os, alexnet_{backend}; print(os.environ.get({name!r}, '-'))"
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_mxnet_uses_every_core(backend):
    if backend != "mxnet":
        pytest.skip("MXNet's OpenMP pool alone takes half the cores by default")
    assert _environ(backend, "OMP_NUM_THREADS") == str(cores())
    assert _environ(backend, "OMP_NUM_THREADS", OMP_NUM_THREADS="1") == "1"


def test_tensorflow_takes_its_share_of_the_cores_from_omp_num_threads(backend):
    if backend != "tf":
        pytest.skip("TensorFlow's own thread pool ignores OMP_NUM_THREADS, each process's share of the cores")
    assert _environ(backend, "TF_NUM_INTRAOP_THREADS", OMP_NUM_THREADS="1") == "1"
    assert _environ(backend, "TF_NUM_INTRAOP_THREADS", OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="2") == "2"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "another thread"])
def test_torch_keeps_freed_memory(backend, in_thread):
    after_import = page_faults(f"\nimport alexnet_{backend}", in_thread)
    if backend != "torch":
        assert unmapped(*after_import)  # too little gain for the memory it costs there (docs/results.md)
        return
    assert kept(*after_import)
    assert unmapped(*page_faults(f"\nimport alexnet_{backend}", in_thread, GLIBC_TUNABLES=USERS_OWN))


def test_jax_convolutions_are_xlas_own(backend):
    if backend != "jax":
        pytest.skip("an XLA flag of jaxlib 0.10 to 0.12's CPU")
    from importlib.metadata import version

    import alexnet_jax

    if not version("jaxlib").startswith(alexnet_jax.YNN_OFF_JAXLIBS):
        assert _environ(backend, "XLA_FLAGS") == "-"  # the flag was measured on these releases only: left alone
        return
    assert _environ(backend, "XLA_FLAGS") == YNN
    assert _environ(backend, "XLA_FLAGS", XLA_FLAGS="--xla_cpu_enable_fast_math=false") == \
        f"--xla_cpu_enable_fast_math=false {YNN}"
    mine = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    assert _environ(backend, "XLA_FLAGS", XLA_FLAGS=mine) == mine


def test_torch_convolutions_are_stored_channels_last(backend, fw):
    if backend != "torch":
        pytest.skip("PyTorch's memory format; TF and JAX compute NHWC already")
    import torch

    convs = [m for m in fw.model.alexnet(67) if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert fw.model.get_weights(fw.model.alexnet(67))["conv2.weight"].flags["C_CONTIGUOUS"]  # neutral: NCHW order


@pytest.mark.parametrize("side", [67, 68, 69, 70, 224])  # every input side modulo conv1's stride, and the book's
def test_torch_conv1_in_blocks_is_the_books_convolution(backend, fw, side):
    if backend != "torch":
        pytest.skip("PyTorch's conv1 computed over 4x4 blocks, for oneDNN's kernels")
    import torch

    conv1 = fw.model.alexnet(side)[0].double()
    assert isinstance(conv1, fw.model._SpaceToDepthConv2d) and conv1.weight.shape == (96, 1, 11, 11)
    X = torch.randn(2, 1, side, side, dtype=torch.float64)
    book = torch.nn.functional.conv2d(X, conv1.weight, conv1.bias, stride=4)  # as nn.Conv2d computes it
    Y = conv1(X)
    assert Y.shape == book.shape and book.abs().max() > 0
    dY = torch.randn_like(book)
    grads = [torch.autograd.grad(out, (conv1.weight, conv1.bias), dY) for out in (Y, book)]
    torch.testing.assert_close(Y, book, rtol=0, atol=1e-12)  # the same sums, in another order
    for ours, books in zip(*grads, strict=True):
        torch.testing.assert_close(ours, books, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fast", [False, True], ids=["book", "fast"])
def test_torch_relu_after_the_pooling_is_the_books_math(backend, fw, fast, monkeypatch):
    if backend != "torch":
        pytest.skip("PyTorch's layer order: its ReLU comes after each max-pool")
    monkeypatch.setenv(OVERRIDE, "1")  # --fast in bf16, on any CPU
    import copy

    import torch

    net = fw.model.alexnet(67)
    layers = list(copy.deepcopy(net))  # the same weights in the book's order: Conv2d, ReLU, MaxPool2d
    for i in range(len(layers) - 2):
        if isinstance(layers[i], torch.nn.Conv2d) and isinstance(layers[i + 1], torch.nn.MaxPool2d):
            layers[i + 1], layers[i + 2] = layers[i + 2], layers[i + 1]
    book = torch.nn.Sequential(*layers)
    assert [type(m) for m in net] != [type(m) for m in book]
    X = torch.randn(8, 1, 67, 67).contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for model in (net, book):
        model.eval()  # dropout off: both see the same math
        model = fw.step.fast_path(model, torch.device("cpu")) if fast else model
        out = model(X)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    assert torch.equal(*outs) and outs[0].abs().max() > 0  # exactly: max and ReLU commute, ties included
    assert all(torch.equal(a, b) for a, b in zip(*grads)) and len(grads[0]) == 16


def test_mxnet_graph_keeps_its_memory(backend, fw):
    if backend != "mxnet":
        pytest.skip("MXNet's hybridize options")
    flags = dict(fw.model.alexnet(67)._flags)  # what hybridize() was given (Gluon keeps them there)
    assert flags["static_alloc"] and flags["static_shape"]  # test_fast.py: the same step as a plain hybridize


def test_jax_fast_path_computes_bf16_on_a_gpu_only(backend, fw):
    if backend != "jax":
        pytest.skip("JAX's --fast is device-dependent: XLA's CPU bf16 is slower than its float32")
    from types import SimpleNamespace

    import jax.numpy as jnp

    cpu = fw.step.fast_path(fw.model.alexnet(67), fw.step.get_device("cpu"))
    assert {layer.dtype for layer in cpu.layers if hasattr(layer, "dtype")} == {None}  # float32 as built
    gpu = fw.step.fast_path(fw.model.alexnet(67), SimpleNamespace(platform="gpu"))  # only its platform is read
    assert {layer.dtype for layer in gpu.layers if hasattr(layer, "dtype")} == {jnp.bfloat16}


@pytest.mark.parametrize("side", [54, 26, 12, 15, 7, 3])  # the pooled sides at 224 and at the smallest input
def test_jax_max_pool_is_flaxs_with_the_same_gradient(backend, fw, side):
    if backend != "jax":
        pytest.skip("JAX's max-pooling gradient is written out for XLA's CPU")
    import jax
    import numpy as np
    from flax import nnx

    rng = np.random.default_rng(side)
    X = rng.integers(-2, 3, (2, side, side, 3)).astype(np.float32)  # few values: many tied maxima
    flax_pool = lambda X: nnx.max_pool(X, window_shape=(3, 3), strides=(2, 2), padding="VALID")  # noqa: E731
    np.testing.assert_array_equal(fw.model._max_pool(X), flax_pool(X))
    dY = rng.integers(1, 5, flax_pool(X).shape).astype(np.float32)  # integers: sums exact in any order
    grads = [jax.grad(lambda X, pool=pool: (pool(X) * dY).sum())(X) for pool in (fw.model._max_pool, flax_pool)]
    np.testing.assert_array_equal(*grads)  # each window's first maximum takes its gradient, ties included


@pytest.mark.parametrize("entry", ["train", "bench", "predict"])
def test_jax_steps_compile_once(backend, fw, tiny_data, tmp_path, caplog, entry):
    if backend != "jax":
        pytest.skip("XLA compiles a JAX function again for arguments placed differently")
    import importlib
    import logging

    import jax

    from common.spec import MIN_RESIZE
    from common.weights import save_weights

    small = ["--resize", str(MIN_RESIZE), "--batch-size", "32"]
    weights = tmp_path / "w.safetensors"
    save_weights(weights, fw.model.get_weights(fw.model.alexnet(MIN_RESIZE)), MIN_RESIZE, "jax")
    argv = {"train": [*small, "--data-dir", str(tiny_data), "--out", str(tmp_path / "run"), "--no-progress",
                      "--epochs", "2"],  # 8 steps an epoch, then 2 test batches
            "bench": [*small, "--steps", "3", "--gemm", "64"],
            "predict": [*small, "--data-dir", str(tiny_data), "--weights", str(weights)]}[entry]  # 2 batches
    jax.clear_caches()  # what earlier tests in this process compiled
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        importlib.import_module(f"alexnet_jax.{entry}").main(argv)
    compiled = [r.getMessage().split(" ")[1] for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    step = {"predict": "jit(_logits)"}.get(entry, "jit(train_step)")
    assert compiled.count(step) == 1  # the first call's: the network and trainer start where a step leaves them
