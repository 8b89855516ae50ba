"""Data-parallel training through each framework's own engine, on two CPU replicas."""

import importlib
import json
import subprocess

import numpy as np
import pytest

from common import parity
from common.spec import MIN_RESIZE
from tests.backend.test_cli import BOOK_LINE, FAST
from tests.synthetic import make_split


@pytest.fixture(scope="module")
def parallel(backend):
    return importlib.import_module(f"alexnet_{backend}.parallel")


@pytest.fixture(scope="module")
def harness(backend):
    return importlib.import_module(f"tests.harness.{backend}_dp")


@pytest.mark.parametrize("processes", [1, 2], ids=["one-process", "two-processes"])
def test_replicas_agree_and_match_the_plain_step(fw, harness, can, processes):
    """Two replicas end where one device does, driven from one process or from two (as on two machines)."""
    if processes == 1 and not can.in_process:
        pytest.skip(f"{can.title} runs one process per replica: the two-process case is the one")
    images, labels = make_split(31, seed=11)  # minibatches of 7, 7, 7, 7, 3: uneven shards
    X = fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu"))
    y = labels.astype(np.int64)
    weights = parity.weights_of(parity.make_case(MIN_RESIZE, seed=3))  # the same start, run after run
    net = fw.model.alexnet(MIN_RESIZE)  # the baseline: the one-device step a training run takes
    fw.model.set_weights(net, weights)
    for i in range(0, len(y), 7):
        fw.step.sgd_step(net, X[i:i + 7], y[i:i + 7], lr=0.05, dropout=False)
    one = fw.model.get_weights(net)
    two, counts = harness.data_parallel_steps(weights, X, y, lr=0.05, batch_size=7, devices=2,
                                                   processes=processes)
    assert len(two) == 2 and counts == [2, 2]  # as the engine counted its replicas
    for name, w in weights.items():
        assert not np.array_equal(one[name], w), f"{name} did not change"
        np.testing.assert_array_equal(two[1][name], two[0][name], err_msg=f"replicas differ: {name}")
        np.testing.assert_allclose(two[0][name], one[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", [[], ["--fast"]], ids=["faithful", "fast"])
def test_train_on_two_devices_writes_one_run(backend, parallel, tiny_data, tmp_path, mode):
    out = tmp_path / "run"
    command = [*parallel.launch_command(2), *FAST, "--devices", "2", "--epochs", "2", *mode,
               "--data-dir", str(tiny_data), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(BOOK_LINE.findall(proc.stdout)) == 1, proc.stdout
    assert proc.stdout.count("epoch 2/2:") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["hparams"]["fast"] == bool(mode)
    assert summary["devices"] == 2  # the replicas the engine reports, not the flag copied
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert len(list(out.glob("checkpoint-*"))) == 1


def test_one_device_is_one_replica(fw, parallel):
    where = parallel.replicas(1, "cpu")
    assert where.count == 1 and where.processes == 1 and where.is_main and where.on_cpu
