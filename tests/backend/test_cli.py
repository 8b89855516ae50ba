"""`python -m alexnet_<fw>.train` end to end on tiny generated IDX files at the smallest input."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from common import training
from common.backends import unused_gpu
from common.errors import UserError
from common.spec import MIN_RESIZE
from common.weights import load_weights
from tests.synthetic import write_dataset

FAST = ["--resize", str(MIN_RESIZE), "--batch-size", "64", "--no-progress"]
BOOK_LINE = re.compile(r"^loss \d+\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}, "
                       r"\d+\.\d examples/sec on \S+", re.M)


def train(fw, data: Path, out: Path, *extra: str) -> None:
    """Run the backend's train entry point in this process."""
    fw.train.main([*FAST, "--data-dir", str(data), "--out", str(out), *extra])


def test_end_to_end_writes_every_output(fw, backend, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "2")
    printed = capsys.readouterr().out
    assert BOOK_LINE.search(printed), printed
    assert "epoch 2/2" in printed
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == backend and summary["epochs"] == 2
    assert summary["hparams"]["resize"] == MIN_RESIZE and summary["test_acc"] == metrics[-1]["test_acc"]
    assert set(load_weights(out / "weights.safetensors", MIN_RESIZE))
    assert len(list(out.glob("checkpoint-002.*"))) == 1 and not list(out.glob("checkpoint-001.*"))


def test_a_run_needs_nothing_that_windows_or_macos_lacks(backend, tiny_data, tmp_path):
    """No fcntl, resource, os.sysconf or os.sched_getaffinity, msvcrt's lock in fcntl's place (as_on_windows.py),
    and text not UTF-8 unless asked for, as in Windows' code pages (an ASCII locale here)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # MXNet then counts the cores itself
    env.update(LC_ALL="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    proc = subprocess.run([sys.executable, "-m", "tests.harness.as_on_windows", f"alexnet_{backend}.train", *FAST,
                           "--epochs", "1", "--train-limit", "64", "--data-dir", str(tiny_data), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and BOOK_LINE.search(proc.stdout), proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["memory"] == {"peak_mb": None, "what": "not measured: Windows has no getrusage"}
    assert re.fullmatch(r"pid \d+", (out / ".lock").read_text())  # written by the process that held it


def test_a_gpu_its_framework_cannot_use_is_noted(fw, backend, tiny_data, tmp_path, monkeypatch, capsys,
                                                nvidia_driver):
    """An NVIDIA driver (its nvidia-smi) and a framework that found no GPU: the note names the build to install."""
    monkeypatch.setenv("PATH", f"{nvidia_driver}{os.pathsep}{os.environ['PATH']}")
    train(fw, tiny_data, tmp_path / "auto", "--dry-run")
    assert f"note: {unused_gpu(backend)}\n" in capsys.readouterr().out
    train(fw, tiny_data, tmp_path / "cpu", "--dry-run", "--device", "cpu")
    assert "NVIDIA" not in capsys.readouterr().out  # the CPU was asked for


def test_a_finished_run_meets_the_other_processes_once_rank_0_has_evaluated(fw, tiny_data, tmp_path):
    """The processes leave a finished run together, once rank 0 has evaluated it (Replicas.meet)."""
    out, met = tmp_path / "run", []

    def replicas(devices: int, device: str):
        made = fw.train.HOOKS.replicas(devices, device)
        return dataclasses.replace(made, meet=lambda: met.append((out / "summary.json").is_file()))

    hooks = dataclasses.replace(fw.train.HOOKS, replicas=replicas)
    training.main(hooks, [*FAST, "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1"])
    assert met == [True]


def test_resume_continues_exactly(fw, tiny_data, tmp_path):
    train(fw, tiny_data, tmp_path / "straight", "--epochs", "2")
    train(fw, tiny_data, tmp_path / "resumed", "--epochs", "1")
    train(fw, tiny_data, tmp_path / "resumed", "--epochs", "2", "--resume")
    a = load_weights(tmp_path / "straight" / "weights.safetensors", MIN_RESIZE)
    b = load_weights(tmp_path / "resumed" / "weights.safetensors", MIN_RESIZE)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=name)
    runs = [[json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("straight", "resumed")]
    for x, y in zip(*runs, strict=True):
        for key in ("loss", "train_acc", "test_acc"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), key


def test_a_dry_run_keeps_nothing_even_when_it_fails(fw, backend, tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts the throwaway run
    fw.train.main([*FAST, "--data-dir", str(tiny_data), "--dry-run"])
    assert BOOK_LINE.search(capsys.readouterr().out)
    with pytest.raises(UserError, match="does not exist"):
        fw.train.main([*FAST, "--data-dir", str(tmp_path / "nowhere"), "--dry-run"])
    assert not list(tmp_path.glob("alexnet-*")), list(tmp_path.iterdir())


@pytest.mark.slow
def test_learns_what_a_random_model_cannot(fw, tmp_path, capsys):
    data = write_dataset(tmp_path / "data", n_train=2000, n_test=300)
    train(fw, data, tmp_path / "run", "--epochs", "2", "--lr", "0.1", "--batch-size", "32")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_acc"] >= 0.8  # chance is 0.1; every backend reached 1.0 (docs/results.md: CI time)


def test_refuses_to_overwrite_a_run(fw, tiny_data, tmp_path):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--train-limit", "64")
    before = (out / "weights.safetensors").read_bytes()
    with pytest.raises(UserError, match="already holds a run"):
        train(fw, tiny_data, out, "--epochs", "1")
    assert (out / "weights.safetensors").read_bytes() == before
    with pytest.raises(UserError, match="different settings"):
        train(fw, tiny_data, out, "--epochs", "2", "--lr", "0.1", "--resume", "--train-limit", "64")
    state = json.loads((out / "state.json").read_text())
    (out / "state.json").write_text(json.dumps({**state, "backend": "elsewhere"}))
    with pytest.raises(UserError, match="do not cross frameworks") as refused:
        train(fw, tiny_data, out, "--epochs", "2", "--resume", "--train-limit", "64")
    assert f"continue it with python -m alexnet_elsewhere.train --out {out} --resume" in str(refused.value)
    assert f"--init-weights {out / 'weights.safetensors'} and another --out" in str(refused.value)  # or on here


BAD = {
    "zero epochs": (["--epochs", "0"], "--epochs"),
    "not a number": (["--lr", "fast"], "--lr"),
    "negative limit": (["--train-limit", "-5"], "--train-limit"),
    "input too small": (["--resize", "66"], "too small"),
    "unknown device": (["--device", "tpu"], "--device"),
    "missing data dir": (["--data-dir", "/nonexistent/fmnist"], "does not exist"),
    "seed past 2**32 - 1": (["--seed", "4294967296"], "--seed: expected a whole number from 0 to 4294967295"),
}


@pytest.mark.parametrize("argv, phrase", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_clear_line(backend, tmp_path, argv, phrase):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", f"alexnet_{backend}.train", *argv, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()


def test_tensorflow_lists_its_devices_while_its_logging_is_muted(backend):
    """alexnet_tf lists TensorFlow's devices on import, with stderr muted, and nothing is printed.

    PyPI's `tensorflow` (a CUDA build) logs "failed call to cuInit" there on a machine without a GPU,
    whatever TF_CPP_MIN_LOG_LEVEL says: listed later, that line came before a bad command line's one line.
    """
    if backend != "tf":
        pytest.skip("TensorFlow's C++ logging ignores TF_CPP_MIN_LOG_LEVEL before absl starts")
    code = ("import alexnet_tf\nfrom tensorflow.python.eager import context\n"
            "print(context.context()._physical_devices is not None)")  # what list_physical_devices fills, once
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "True" and not proc.stderr.strip(), proc.stderr


def test_missing_file_names_it(fw, tiny_data, tmp_path):
    (tiny_data / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*apt-get install dataset-fashion-mnist"):
        train(fw, tiny_data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_gpu_asked_for_where_there_is_none(fw):
    if fw.step.get_device("auto") != fw.step.get_device("cpu"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="--device cpu"):
        fw.step.get_device("gpu")
