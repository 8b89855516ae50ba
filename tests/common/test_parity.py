"""The parity comparison, with hand-made results: agreement passes, each kind of drift fails."""

import json

import numpy as np
import pytest

from common import parity
from tests import parity_check


def results(case: dict, logits_shift: float = 0.0, pixel_shift: float = 0.0, step_scale: float = 1.0) -> dict:
    """A backend's results made by hand from the case: the 'SGD step' subtracts 1e-3 x weights."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((len(case["labels"]), 10)).astype(np.float32)
    out = {"pixels": np.full((len(case["labels"]), 1, 67, 67), 0.5 + pixel_shift, np.float32),
           "logits": logits + logits_shift, "loss": np.array([2.3])}
    for name, w in parity.weights_of(case).items():
        out[f"after.{name}"] = w - 1e-3 * step_scale * w
    return out


def test_agreement_passes():
    case = parity.make_case(67, batch=2)
    rows, problems = parity.compare(case, {"a": results(case), "b": results(case)}, reference="a")
    assert problems == [] and any("logits" in row and "ok" in row for row in rows)


def test_each_drift_is_named():
    case = parity.make_case(67, batch=2)
    drifted = {"a": results(case), "b": results(case, logits_shift=1e-2, pixel_shift=1e-3, step_scale=1.05)}
    _, problems = parity.compare(case, drifted, reference="a")
    assert any(p.startswith("logits: b differs from a") for p in problems)
    assert any(p.startswith("pixels: b") for p in problems)
    assert any(" (step): b differs" in p for p in problems)  # the update, not the weights, drifted


def test_case_round_trips_through_files(tmp_path):
    case = parity.make_case(67, batch=3)
    parity.save(tmp_path / "case.safetensors", case)
    back = parity.load(tmp_path / "case.safetensors")
    assert back.keys() == case.keys()
    np.testing.assert_array_equal(back["images"], case["images"])
    assert case["images"].dtype == np.uint8 and back["labels"].dtype == np.int64


def write_evals(directory, accuracies: dict[str, list[float]], order: list[str]) -> None:
    """Each evaluating backend's file, as `parity_worker evaluate` writes it: one entry per trainer in `order`."""
    for backend, accs in accuracies.items():
        entries = [{"weights": str(directory / f"train-{t}" / "weights.safetensors"), "accuracy": a,
                    "predictions": [0, 1, 1]} for t, a in zip(order, accs)]
        (directory / f"eval-{backend}.json").write_text(json.dumps(entries))


def test_accuracy_matrix_agreement_and_drift(tmp_path, capsys):
    backends = ["a", "b"]
    write_evals(tmp_path, {"a": [0.5, 0.75], "b": [0.5, 0.75]}, backends)
    assert parity_check.compare_accuracy(tmp_path, backends) == []
    assert "100.00%" in capsys.readouterr().out
    write_evals(tmp_path, {"a": [0.5, 0.75], "b": [0.5, 0.7]}, backends)
    assert parity_check.compare_accuracy(tmp_path, backends) == [
        "weights trained in b evaluate to different accuracies: [0.75, 0.7]"]


def test_accuracy_matrix_refuses_weights_out_of_order(tmp_path):
    write_evals(tmp_path, {"a": [0.5, 0.5], "b": [0.5, 0.5]}, ["b", "a"])
    with pytest.raises(SystemExit, match="train-a at position 0"):
        parity_check.compare_accuracy(tmp_path, ["a", "b"])
