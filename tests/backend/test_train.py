"""Each backend's data pipeline and training step, checked against NumPy references."""

import numpy as np
import pytest

from common.batches import epoch_order
from common.fashion_mnist import load
from common.hparams import HParams
from common.spec import MIN_RESIZE
from tests.reference import as_numpy, bilinear_resize, cross_entropy
from tests.synthetic import make_split


def test_preprocess_is_bilinear_and_scaled(fw):
    images, _ = make_split(5, seed=3)
    X = fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu"))
    assert X.shape == (5, 1, MIN_RESIZE, MIN_RESIZE) and X.dtype == np.float32
    np.testing.assert_allclose(X, bilinear_resize(images, MIN_RESIZE), atol=2e-6)
    assert fw.data.preprocess(np.full((1, 28, 28), 255, np.uint8), 224, fw.step.get_device("cpu")).min() == 1


def test_minibatches_follow_the_seeded_order(fw, tiny_data):
    data = load(tiny_data)
    device = fw.step.get_device("cpu")
    train_iter, test_iter = fw.data.load_data_fashion_mnist(data, 100, MIN_RESIZE, device, seed=7)
    assert len(train_iter) == 3  # 256 examples: 100 + 100 + 56
    for epoch in (1, 2):
        train_iter.set_epoch(epoch)
        batches = [(as_numpy(X), as_numpy(y)) for X, y in train_iter]
        assert [len(y) for _, y in batches] == [100, 100, 56]
        order = epoch_order(256, 7, epoch)
        np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), data.train_labels[order])
        assert batches[0][0].shape in ((100, 1, MIN_RESIZE, MIN_RESIZE), (100, MIN_RESIZE, MIN_RESIZE, 1))
    labels = np.concatenate([as_numpy(y) for _, y in test_iter])
    np.testing.assert_array_equal(labels, data.test_labels)


def test_one_sgd_step_lowers_the_loss(fw):
    images, labels = make_split(32, seed=5)
    device = fw.step.get_device("cpu")
    X, y = fw.data.preprocess(images, MIN_RESIZE, device), labels.astype(np.int64)
    net = fw.model.alexnet(MIN_RESIZE)
    expected = cross_entropy(fw.model.predict(net, X), y)
    before = fw.step.sgd_step(net, X, y, lr=0.01, dropout=False)
    assert abs(before - expected) < 1e-4 * expected
    after = cross_entropy(fw.model.predict(net, X), y)
    assert after < before - 1e-4


def test_each_gradient_is_the_slope_of_the_loss(fw):
    """A first-order check per tensor: stepping one tensor by its SGD update -lr*g lowers the loss
    by about lr*|g|^2, as measured through predict(); a wrong gradient in any layer shows here."""
    images, labels = make_split(16, seed=9)
    X, y = fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu")), labels.astype(np.int64)
    net, lr = fw.model.alexnet(MIN_RESIZE), 0.1
    before = fw.model.get_weights(net)
    loss0 = fw.step.sgd_step(net, X, y, lr=lr, dropout=False)
    after = fw.model.get_weights(net)
    probe = fw.model.alexnet(MIN_RESIZE)
    for name in ("conv1.weight", "conv2.weight", "conv5.weight", "dense1.weight", "dense3.weight"):
        fw.model.set_weights(probe, {**before, name: after[name]})
        actual = loss0 - cross_entropy(fw.model.predict(probe, X), y)
        predicted = float(np.sum((after[name].astype(np.float64) - before[name]) ** 2)) / lr
        assert actual == pytest.approx(predicted, rel=0.1), name


@pytest.mark.parametrize("fast", [False, True])
def test_the_time_estimate_times_the_runs_own_step(fw, monkeypatch, fast):
    timed = []

    def fastest(call, repeats):  # common.metrics.fastest's contract, with a fixed time
        for _ in range(repeats + 1):  # the warm-up and the timed calls: each a whole training step
            call()
        timed.append(repeats)
        return 0.5

    monkeypatch.setattr(fw.train, "fastest", fastest)
    hp = HParams(batch_size=16, resize=MIN_RESIZE, fast=fast)
    assert fw.train.HOOKS.probe_speed(hp, fw.train.HOOKS.replicas(1, "cpu")) == 16 / 0.5
    assert timed == [2]  # the faster of two steps: one slow step does not stretch a run's estimate
