"""The network of each backend against the spec: shapes, parameters, initialisation, weights."""

import numpy as np
import pytest

from common.errors import InputTooSmallError
from common.shapes import compare
from common.spec import MIN_RESIZE, num_params, param_shapes
from common.weights import load_weights, save_weights


@pytest.mark.parametrize("resize", [224, MIN_RESIZE, 100])
def test_layer_report_matches_spec(fw, backend, resize):
    report = fw.model.layer_report(fw.model.alexnet(resize), resize)
    assert report["backend"] == backend
    assert compare(report) == []
    assert sum(layer["params"] for layer in report["layers"]) == num_params(resize)


def test_book_parameter_count(fw):
    weights = fw.model.get_weights(fw.model.alexnet(224))
    assert sum(w.size for w in weights.values()) == 46_764_746


def test_layer_summary_prints_each_layer_like_the_book(fw, capsys):
    fw.model.layer_summary(fw.model.alexnet(224), 224)
    lines = capsys.readouterr().out.strip().splitlines()
    assert all("output shape:" in line for line in lines)
    assert "54, 54" in lines[0] and lines[-1].rstrip().endswith("10)")


def test_input_too_small_is_refused(fw):
    with pytest.raises(InputTooSmallError, match="--resize 67"):
        fw.model.alexnet(MIN_RESIZE - 1)


def test_xavier_uniform_weights_and_zero_biases(fw):
    weights = fw.model.get_weights(fw.model.alexnet(MIN_RESIZE))
    for name, w in weights.items():
        if name.endswith(".bias"):
            assert not w.any(), name
            continue
        receptive = int(np.prod(w.shape[2:]))
        bound = np.sqrt(6 / (w.shape[1] * receptive + w.shape[0] * receptive))
        assert np.abs(w).max() <= bound * (1 + 1e-6), name
        assert np.std(w) == pytest.approx(bound / np.sqrt(3), rel=0.1), name


def test_neutral_weights_round_trip_exactly(fw, backend, tmp_path):
    net = fw.model.alexnet(MIN_RESIZE)
    weights = fw.model.get_weights(net)
    assert {k: v.shape for k, v in weights.items()} == param_shapes(MIN_RESIZE)
    save_weights(tmp_path / "w.safetensors", weights, MIN_RESIZE, backend)
    other = fw.model.alexnet(MIN_RESIZE)
    fw.model.set_weights(other, load_weights(tmp_path / "w.safetensors", MIN_RESIZE))
    for name, w in fw.model.get_weights(other).items():
        np.testing.assert_array_equal(w, weights[name], err_msg=name)
    X = np.random.default_rng(0).random((3, 1, MIN_RESIZE, MIN_RESIZE), dtype=np.float32)
    np.testing.assert_array_equal(fw.model.predict(other, X), fw.model.predict(net, X))
