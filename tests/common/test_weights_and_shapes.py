"""Neutral weights (safetensors through NumPy) and the shape comparison."""

import json
import pickle

import numpy as np
import pytest

from common.errors import UserError
from common.shapes import canonical_names, compare, main, make_report
from common.spec import layer_stats, param_shapes
from common.weights import dense_in_chw_to_hwc, dense_in_hwc_to_chw, load_weights, save_weights


def random_weights(resize: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in param_shapes(resize).items()}


def test_round_trip_is_exact(tmp_path):
    w = random_weights(67)
    save_weights(tmp_path / "w.safetensors", w, 67, "test")
    back = load_weights(tmp_path / "w.safetensors", 67)
    assert back.keys() == w.keys()
    for k in w:
        np.testing.assert_array_equal(back[k], w[k])


def test_wrong_size_names_the_fix(tmp_path):
    save_weights(tmp_path / "w.safetensors", random_weights(100), 100, "test")
    with pytest.raises(UserError, match=r"dense1.weight has shape .* pass the --resize it was trained with"):
        load_weights(tmp_path / "w.safetensors", 224)


def test_missing_tensor_and_non_safetensors_file(tmp_path):
    w = random_weights(67)
    del w["dense3.bias"]
    with pytest.raises(UserError, match="missing"):
        save_weights(tmp_path / "w.safetensors", w, 67, "test")
    with pytest.raises(UserError, match="does not exist"):
        load_weights(tmp_path / "none.safetensors", 67)


def test_a_pickle_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(UserError, match="not a readable safetensors"):
        load_weights(path, 67)
    assert not list(tmp_path.glob("PWNED"))


def test_hwc_chw_conversions_are_inverse_and_correct():
    c, h, w = 3, 2, 2
    chw = np.arange(5 * c * h * w).reshape(5, c * h * w).astype(np.float32)
    hwc = dense_in_chw_to_hwc(chw, (c, h, w))
    np.testing.assert_array_equal(dense_in_hwc_to_chw(hwc, (c, h, w)), chw)
    x = np.random.default_rng(0).random((c, h, w))  # one feature map
    np.testing.assert_allclose(hwc @ x.transpose(1, 2, 0).ravel(), chw @ x.ravel())


def report_from_spec(resize: int, backend: str = "test") -> dict:
    return make_report(backend, resize, [(s.kind, s.shape, s.params) for s in layer_stats(resize)])


def test_canonical_names():
    assert canonical_names(["conv", "pool", "conv", "flatten", "dense", "dropout"]) == \
        ["conv1", "pool1", "conv2", "flatten", "dense1", "dropout1"]


def test_compare_passes_the_spec_and_names_each_difference():
    assert compare(report_from_spec(224)) == []
    report = report_from_spec(224)
    report["layers"][0]["shape"] = [96, 55, 55]
    report["layers"][9]["params"] += 1
    problems = compare(report)
    assert problems == ["conv1: shape [96, 55, 55] in test, spec says [96, 54, 54]",
                        "dense1: params 26218497 in test, spec says 26218496"]
    report = report_from_spec(224)
    del report["layers"][-1]
    assert compare(report) == ["dense3: missing in test"]


def test_compare_shapes_command_fails_naming_the_layer(tmp_path, capsys):
    good, bad = report_from_spec(224, "torch"), report_from_spec(224, "tf")
    bad["layers"][7]["shape"] = [256, 6, 6]
    paths = []
    for report in (good, bad):
        paths.append(tmp_path / f"{report['backend']}.json")
        paths[-1].write_text(json.dumps(report))
    assert main([str(p) for p in paths]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH input 224: pool3: shape [256, 6, 6] in tf, spec says [256, 5, 5]" in captured.err
    assert "256x6x6 <- differs" in captured.out
    assert main([str(paths[0])]) == 0
