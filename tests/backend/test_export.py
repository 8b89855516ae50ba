"""The ONNX export (alexnet_torch.export): onnxruntime gives PyTorch's logits on the same weights; bad input: one line.

Every backend's logits against the exported model: `nox -s export`.
"""

import importlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from common import parity
from common.errors import UserError
from common.spec import MIN_RESIZE
from common.weights import save_weights


@pytest.fixture
def export(backend):
    """alexnet_torch.export, for the torch backend with onnx and onnxruntime installed."""
    if backend != "torch":
        pytest.skip("the ONNX export goes through torch.onnx: PyTorch's alone (run with --backend torch)")
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: pip install '.[export]'")
    return importlib.import_module("alexnet_torch.export")


@pytest.fixture
def weights(tmp_path):
    """A neutral weights file at the smallest input side (a parity case's weights), and the case."""
    case = parity.make_case(MIN_RESIZE, batch=5, seed=1)
    path = tmp_path / "weights.safetensors"
    save_weights(path, parity.weights_of(case), MIN_RESIZE, "tf")
    return path, case


def test_onnxruntime_gives_the_networks_logits_for_any_batch(export, fw, weights, tmp_path, capsys):
    import onnx
    import onnxruntime

    path, case = weights
    export.main([str(path), str(tmp_path / "out" / "model.onnx")])
    assert "(batch, 1, 67, 67)" in capsys.readouterr().out
    model = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert {p.key: p.value for p in model.metadata_props} == {"resize": str(MIN_RESIZE), "weights_backend": "tf"}
    assert model.opset_import[0].version == export.DEFAULT_OPSET
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"] and [o.name for o in session.get_outputs()] == ["logits"]
    net = fw.model.alexnet(MIN_RESIZE)
    fw.model.set_weights(net, parity.weights_of(case))
    pixels = fw.data.preprocess(case["images"], MIN_RESIZE, fw.step.get_device("cpu"))
    for batch in (pixels, pixels[:1]):  # the batch size is free
        got = session.run(["logits"], {"X": batch})[0]
        want = fw.model.predict(net, batch)
        assert got.shape == (len(batch), 10)
        assert np.max(np.abs(got - want)) <= parity.LOGITS_RTOL * np.max(np.abs(want))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.onnx"]  # no temporary file left


def test_another_opset(export, weights, tmp_path):
    import onnx

    export.export(weights[0], tmp_path / "m.onnx", opset=13)
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 13
    with pytest.raises(UserError, match="--opset 5 .* pick 9 to 20"):
        export.export(weights[0], tmp_path / "m5.onnx", opset=5)


def test_bad_weights_are_refused_by_name(export, weights, tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(UserError, match="does not exist"):
        export.export(tmp_path / "none.safetensors", out)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="not a readable safetensors"):
        export.export(tmp_path / "junk.safetensors", out)
    parity.save(tmp_path / "bare.safetensors", parity.weights_of(weights[1]))  # no metadata
    with pytest.raises(UserError, match="does not record a valid input size"):
        export.export(tmp_path / "bare.safetensors", out)
    parity.save(tmp_path / "lies.safetensors", parity.weights_of(weights[1]), resize="224")  # shapes are for 67
    with pytest.raises(UserError, match="dense1.weight has shape"):
        export.export(tmp_path / "lies.safetensors", out)
    assert not out.exists()


def test_bad_outputs_and_no_onnx_are_one_line(export, weights, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="is a directory"):
        export.export(weights[0], tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot write"):
        export.export(weights[0], tmp_path / "file" / "m.onnx")  # a file as a folder
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install '\.\[export\]'"):
        export.export(weights[0], tmp_path / "m.onnx")


def test_the_command_line_says_one_line_and_no_traceback(export, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alexnet_torch.export", str(tmp_path / "none.safetensors"),
                           str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: weights file {tmp_path / 'none.safetensors'} does not "
                                                f"exist: check the path (a run writes <out>/weights.safetensors)"]
