"""The opt-in fast path (--fast): close to the book's float32, trainable, compiled the same, kept apart on resume."""

import json

import numpy as np
import pytest

from common.errors import UserError
from common.precision import OVERRIDE, compute_dtype
from common.spec import MIN_RESIZE
from tests.backend.test_cli import train
from tests.reference import cross_entropy
from tests.synthetic import make_split

BF16 = 2e-2  # bfloat16 keeps 8 significant bits: about 0.4% per rounding, a few roundings deep


@pytest.fixture
def bf16_cpu(monkeypatch):
    """This CPU counted as one with bf16 instructions, so that the bf16 path runs (slowly) on any CI machine."""
    monkeypatch.setenv(OVERRIDE, "1")


def _batch(fw, n: int = 32, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    images, labels = make_split(n, seed=seed)
    return fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu")), labels.astype(np.int64)


def _twin(fw, net):
    """A second network with `net`'s weights."""
    twin = fw.model.alexnet(MIN_RESIZE)
    fw.model.set_weights(twin, fw.model.get_weights(net))
    return twin


def _close(a: np.ndarray, b: np.ndarray, rel: float) -> bool:
    """Whether `a` is within `rel` of `b`, relative to b's largest magnitude."""
    return float(np.abs(a - b).max()) <= rel * float(np.abs(b).max())


def test_fast_logits_are_the_faithful_ones_in_bf16(fw, can, bf16_cpu):
    X, _ = _batch(fw)
    net = fw.model.alexnet(MIN_RESIZE)
    faithful = fw.model.predict(net, X)
    fast = fw.step.fast_path(_twin(fw, net), fw.step.get_device("cpu"))
    logits = fw.model.predict(fast, X)
    assert logits.dtype == np.float32 and logits.shape == faithful.shape
    assert _close(logits, faithful, BF16)
    if can.bf16:  # bf16 really ran: its rounding shows (a fast path without bf16 stays float32)
        assert not _close(logits, faithful, 1e-5)


def test_fast_step_lowers_the_loss(fw, bf16_cpu):
    X, y = _batch(fw)
    fast = fw.step.fast_path(fw.model.alexnet(MIN_RESIZE), fw.step.get_device("cpu"))
    expected = cross_entropy(fw.model.predict(fast, X), y)
    before = fw.step.sgd_step(fast, X, y, lr=0.01, dropout=False)
    assert before == pytest.approx(expected, rel=BF16)
    assert cross_entropy(fw.model.predict(fast, X), y) < before - 1e-4


def test_compiled_fast_step_matches_the_uncompiled_one(fw, bf16_cpu):
    """torch.compile (PyTorch), XLA (TensorFlow), static hybridize (MXNet) change speed, not the step."""
    X, y = _batch(fw, 16, seed=9)
    device = fw.step.get_device("cpu")
    net = fw.model.alexnet(MIN_RESIZE)
    plain = fw.step.fast_path(_twin(fw, net), device, compile=False)
    compiled = fw.step.fast_path(_twin(fw, net), device, compile=True)
    losses = [fw.step.sgd_step(n, X, y, lr=0.05, dropout=False) for n in (plain, compiled)]
    assert losses[1] == pytest.approx(losses[0], rel=BF16)
    assert _close(fw.model.predict(compiled, X), fw.model.predict(plain, X), 2 * BF16)


def test_fast_path_keeps_float32_on_a_cpu_without_bf16(fw, monkeypatch):
    monkeypatch.setenv(OVERRIDE, "0")  # an AVX2 CPU: there bf16 trained 6 to 11 times slower (docs/results.md)
    X, _ = _batch(fw, 8)
    net = fw.model.alexnet(MIN_RESIZE)
    fast = fw.step.fast_path(_twin(fw, net), fw.step.get_device("cpu"))
    np.testing.assert_array_equal(fw.model.predict(fast, X), fw.model.predict(net, X))  # the book's float32 math


def test_fast_run_trains_resumes_and_is_told_apart(backend, fw, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--fast")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hparams"]["fast"] is True and summary["memory"]["peak_mb"] > 0
    dtype = compute_dtype(backend, fast=True, on_cpu=True)  # this CPU's, unless ALEXNET_CPU_BF16 says
    assert summary["dtype"] == dtype
    assert ("note: --fast computes in float32 here" in capsys.readouterr().out) is (dtype == "float32")
    with pytest.raises(UserError, match="fast False"):
        train(fw, tiny_data, out, "--epochs", "2", "--resume", "--no-fast")  # the faithful math cannot continue it
    train(fw, tiny_data, out, "--epochs", "2", "--resume")  # the run's own settings: fast
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2] and "epoch 2/2" in capsys.readouterr().out
