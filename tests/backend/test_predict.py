"""`python -m alexnet_<fw>.predict` and `train --init-weights`: evaluate, classify, feature maps, start from weights."""

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw

from common.errors import UserError
from common.fashion_mnist import load
from common.parity import make_case, weights_of
from common.predict import CLASSES, prepare_images, softmax
from common.spec import MIN_RESIZE, evaluation_bytes
from common.weights import load_weights, save_weights
from tests.backend.test_cli import FAST, train

PNG = b"\x89PNG\r\n\x1a\n"
TOP_LINE = re.compile(r"^(\S+): ([a-z -]+ \d\.\d{3}), ([a-z -]+ \d\.\d{3}), ([a-z -]+ \d\.\d{3})$", re.M)


@pytest.fixture(scope="module")
def predict_module(backend):
    """The backend's predict module."""
    return importlib.import_module(f"alexnet_{backend}.predict")


@pytest.fixture
def weights_file(tmp_path) -> Path:
    """Glorot-uniform weights with non-zero biases (common.parity's case) as a neutral file at the smallest input."""
    path = tmp_path / "w" / "weights.safetensors"
    save_weights(path, weights_of(make_case(MIN_RESIZE)), MIN_RESIZE, "parity")
    return path


def _pictures(directory: Path) -> list[Path]:
    """A Fashion-MNIST-like grey PNG and a photo-like colour JPEG on a light ground."""
    directory.mkdir(parents=True, exist_ok=True)
    grey = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(grey).rectangle([9, 2, 18, 25], fill=220)
    grey.save(directory / "item.png")
    photo = Image.new("RGB", (160, 120), (235, 230, 220))
    ImageDraw.Draw(photo).ellipse([50, 10, 110, 110], fill=(120, 20, 20))
    photo.save(directory / "photo.jpg", quality=90)
    return [directory / "item.png", directory / "photo.jpg"]


def _logits(fw, weights: dict, images: np.ndarray) -> np.ndarray:
    """The backend's own logits of uint8 images, from a fresh network holding `weights`."""
    net = fw.model.alexnet(MIN_RESIZE)
    fw.model.set_weights(net, weights)
    return fw.model.predict(net, fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu")))


def _predict(predict_module, capsys, *argv: str) -> dict:
    """Run predict --json in this process and return its one JSON object."""
    capsys.readouterr()
    predict_module.main([*argv, "--json", "--device", "cpu"])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    return json.loads(out)


# ---- Evaluate ----


def test_evaluate_reports_the_backends_own_predictions(fw, predict_module, weights_file, tiny_data, tmp_path, capsys):
    result = _predict(predict_module, capsys, "--weights", str(weights_file), "--data-dir", str(tiny_data),
                      "--test-limit", "40", "--out-dir", str(tmp_path / "figs"))
    data = load(tiny_data, test_limit=40)
    y_hat = _logits(fw, load_weights(weights_file, MIN_RESIZE), data.test_images).argmax(axis=1)
    assert result["resize"] == MIN_RESIZE and result["weights_backend"] == "parity" and result["examples"] == 40
    assert result["accuracy"] == pytest.approx(float((y_hat == data.test_labels).mean()))
    confusion = np.array(result["confusion"])
    assert confusion.sum() == 40 and (confusion.sum(axis=0) == np.bincount(y_hat, minlength=10)).all()
    assert list(result["per_class"]) == list(CLASSES)
    for name in ("confusion.png", "predictions.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:8] == PNG
    predict_module.main(["--weights", str(weights_file), "--data-dir", str(tiny_data), "--test-limit", "40",
                         "--device", "cpu"])  # text, figures beside the weights
    printed = capsys.readouterr().out
    assert re.search(r"^all\s+\d\.\d{3}\s+40$", printed, re.M) and "ankle boot" in printed
    assert (weights_file.parent / "confusion.png").is_file()


def test_a_forward_pass_too_large_for_memory_is_refused_in_one_line(predict_module, weights_file, tiny_data,
                                                                    monkeypatch, capsys):
    """A --batch-size whose pass cannot fit is refused before it runs, where the OS would kill the process unsaid."""
    monkeypatch.setattr("common.memory.machine_bytes", lambda: evaluation_bytes(MIN_RESIZE, 32))  # a small machine
    argv = ["--weights", str(weights_file), "--data-dir", str(tiny_data), "--device", "cpu", "--json"]
    with pytest.raises(UserError, match=r"^a minibatch of 64 images at 67x67 needs at least [\d.]+ GB of memory for "
                                        r"its forward pass .*: use a smaller --batch-size$"):
        predict_module.main([*argv, "--batch-size", "1000"])  # all 64 test images in one pass
    capsys.readouterr()
    predict_module.main([*argv, "--batch-size", "32"])
    assert json.loads(capsys.readouterr().out)["examples"] == 64


# ---- Classify your own images ----


def test_classifies_pictures_with_the_backends_forward(fw, predict_module, weights_file, tmp_path, capsys):
    files = _pictures(tmp_path / "pics")
    result = _predict(predict_module, capsys, "--weights", str(weights_file), str(tmp_path / "pics"))
    assert [Path(r["file"]).name for r in result["images"]] == ["item.png", "photo.jpg"]
    assert [r["inverted"] for r in result["images"]] == [False, True]
    images, _ = prepare_images(files)
    probs = softmax(_logits(fw, load_weights(weights_file, MIN_RESIZE), images))
    for r, p in zip(result["images"], probs):
        top = [t["class"] for t in r["top"]]
        assert top == [CLASSES[i] for i in np.argsort(-p)[:3]]
        np.testing.assert_allclose([t["probability"] for t in r["top"]], np.sort(p)[::-1][:3], rtol=1e-4)
    predict_module.main(["--weights", str(weights_file), "--device", "cpu", *map(str, files)])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(TOP_LINE.match(line) for line in lines), lines
    result = _predict(predict_module, capsys, "--weights", str(weights_file), "--no-invert", str(files[1]))
    assert result["images"][0]["inverted"] is False


# ---- Feature maps ----


def test_feature_maps_are_conv1_and_conv2_after_relu(fw, predict_module, weights_file, tmp_path, capsys):
    files = _pictures(tmp_path / "pics")
    weights = load_weights(weights_file, MIN_RESIZE)
    net = predict_module.load_net(weights, MIN_RESIZE, fw.step.get_device("cpu"))
    images, _ = prepare_images(files[1:])
    X = fw.data.preprocess(images, MIN_RESIZE, fw.step.get_device("cpu"))
    conv1, conv2 = predict_module.feature_maps(net, X)
    # conv1 by hand: 11x11 windows at stride 4, canonical (C, H, W), then ReLU
    windows = sliding_window_view(X[0, 0], (11, 11))[::4, ::4]  # (15, 15, 11, 11)
    expected = np.einsum("hwij,oij->ohw", windows, weights["conv1.weight"][:, 0]) + weights["conv1.bias"][:, None, None]
    np.testing.assert_allclose(conv1, np.maximum(expected, 0), atol=1e-4)
    assert conv2.shape == (256, 7, 7) and conv2.min() >= 0 and conv2.max() > 0
    result = _predict(predict_module, capsys, "--weights", str(weights_file), "--feature-maps", str(files[1]),
                      "--out-dir", str(tmp_path / "maps"))
    assert result["shapes"] == [[96, 15, 15], [256, 7, 7]]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "features-photo-conv1.png", "features-photo-conv2.png", "features-photo-input.png"]
    assert all(Path(p).read_bytes()[:8] == PNG for p in result["feature_maps"])


# ---- Start from weights ----


@pytest.mark.parametrize("fast", [False, True], ids=["book", "fast"])
def test_init_weights_starts_exactly_there(fw, weights_file, tiny_data, tmp_path, fast):
    """With a learning rate far below float32's resolution SGD leaves the weights as they start: the saved
    weights must be the file's, bit for bit, and the end-of-run evaluation must match the run's test accuracy."""
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--lr", "1e-30", "--train-limit", "64",
          "--init-weights", str(weights_file), *(["--fast"] if fast else []))
    start, end = load_weights(weights_file, MIN_RESIZE), load_weights(out / "weights.safetensors", MIN_RESIZE)
    for name in start:
        np.testing.assert_array_equal(end[name], start[name], err_msg=name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init_weights"] == {"path": str(weights_file.resolve()), "backend": "parity"}
    assert list(summary["per_class_acc"]) == list(CLASSES)
    confusion = np.array(summary["confusion"])
    assert confusion.sum() == 64 and (out / "confusion.png").read_bytes()[:8] == PNG
    for i, name in enumerate(CLASSES):
        assert summary["per_class_acc"][name] == pytest.approx(confusion[i, i] / confusion[i].sum())
    if not fast:  # the same network, the same test images: the run's accuracy, from the confusion matrix
        assert np.trace(confusion) / 64 == pytest.approx(summary["test_acc"])


def test_a_training_run_writes_its_evaluation(fw, tiny_data, tmp_path):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--train-limit", "64")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init_weights"] is None
    confusion = np.array(summary["confusion"])
    assert np.trace(confusion) / confusion.sum() == pytest.approx(summary["test_acc"])
    assert (out / "confusion.png").is_file() and (out / "predictions.png").is_file()


# ---- Bad input ----


def test_bad_weights_and_pictures_are_one_line_errors(predict_module, weights_file, tmp_path):
    pics = _pictures(tmp_path / "pics")
    with pytest.raises(UserError, match="input size 67, not 100: pass --resize 67"):
        predict_module.main(["--weights", str(weights_file), "--resize", "100", str(pics[0])])
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a readable safetensors"):
        predict_module.main(["--weights", str(tmp_path / "junk.safetensors"), str(pics[0])])
    with pytest.raises(UserError, match="does not exist"):
        predict_module.main(["--weights", str(tmp_path / "none.safetensors")])
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(UserError, match="not an image"):
        predict_module.main(["--weights", str(weights_file), "--device", "cpu", str(pics[0]),
                             str(tmp_path / "notes.png")])
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(UserError, match="1x1"):
        predict_module.main(["--weights", str(weights_file), "--device", "cpu", str(tmp_path / "dot.png")])
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="holds no image files"):
        predict_module.main(["--weights", str(weights_file), "--device", "cpu", str(tmp_path / "nothing")])
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match="cannot write to"):
        predict_module.main(["--weights", str(weights_file), "--device", "cpu", "--feature-maps", str(pics[0]),
                             "--out-dir", str(tmp_path / "a-file" / "maps")])


def test_init_weights_for_another_size_touch_nothing(fw, weights_file, tiny_data, tmp_path):
    with pytest.raises(UserError, match="input size 67, not 100: pass --resize 67"):
        fw.train.main(["--data-dir", str(tiny_data), "--out", str(tmp_path / "run"), "--resize", "100",
                       "--init-weights", str(weights_file)])
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="does not exist"):
        train(fw, tiny_data, tmp_path / "run", "--init-weights", str(tmp_path / "none.safetensors"))
    assert not (tmp_path / "run").exists()


def test_the_command_says_one_line_without_a_traceback(backend, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    done = subprocess.run([sys.executable, "-m", f"alexnet_{backend}.predict", "--weights",
                           str(tmp_path / "junk.safetensors")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "junk.safetensors" in errors[0], done.stderr


def test_init_weights_on_two_replicas(backend, weights_file, tiny_data, tmp_path):
    """Several replicas (and --fast's wrapped networks) all start from the file; rank 0 alone evaluates."""
    parallel = importlib.import_module(f"alexnet_{backend}.parallel")
    out = tmp_path / "run"
    command = [*parallel.launch_command(2), *FAST, "--devices", "2", "--epochs", "1", "--lr", "1e-30", "--fast",
               "--train-limit", "64", "--data-dir", str(tiny_data), "--out", str(out),
               "--init-weights", str(weights_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    start, end = load_weights(weights_file, MIN_RESIZE), load_weights(out / "weights.safetensors", MIN_RESIZE)
    for name in start:
        np.testing.assert_array_equal(end[name], start[name], err_msg=name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"] == 2 and np.array(summary["confusion"]).sum() == 64
    assert summary["init_weights"]["backend"] == "parity" and (out / "confusion.png").is_file()
