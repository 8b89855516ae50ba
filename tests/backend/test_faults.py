"""Runs that go wrong end cleanly: interrupts, divergence, hostile or broken files."""

import gzip
import json
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.errors import UserError
from tests.backend.test_cli import FAST, train


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_the_last_checkpoint_and_resume_goes_on(fw, backend, tiny_data, tmp_path, sig):
    out = tmp_path / "run"
    argv = [*FAST, "--batch-size", "16", "--data-dir", str(tiny_data), "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", f"alexnet_{backend}.train", *argv, "--epochs", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: the checkpoint of epoch" in err and "--resume" in err and "Traceback" not in err
    done = json.loads((out / "state.json").read_text())["epoch"]
    assert (out / json.loads((out / "state.json").read_text())["checkpoint"]).is_file()
    train(fw, tiny_data, out, "--batch-size", "16", "--epochs", str(done + 1), "--resume")
    assert json.loads((out / "summary.json").read_text())["epochs"] == done + 1


def test_a_diverging_run_stops_with_a_clear_message(fw, tiny_data, tmp_path):
    with pytest.raises(UserError, match=r"loss became (nan|inf).*smaller --lr"):
        train(fw, tiny_data, tmp_path / "run", "--epochs", "2", "--lr", "1e12")
    assert not list((tmp_path / "run").glob("checkpoint-*"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, reading the hostile pickle
def test_a_hostile_checkpoint_is_refused_not_executed(fw, tiny_data, tmp_path):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--train-limit", "64")
    checkpoint = out / json.loads((out / "state.json").read_text())["checkpoint"]

    class Boom:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')",))

    checkpoint.write_bytes(pickle.dumps({"net": Boom()}))
    with pytest.raises(UserError, match="cannot load checkpoint"):
        train(fw, tiny_data, out, "--epochs", "2", "--train-limit", "64", "--resume")
    assert not (tmp_path / "PWNED").exists()


def test_a_corrupt_state_file_is_refused(fw, tiny_data, tmp_path):
    out = tmp_path / "run"
    train(fw, tiny_data, out, "--epochs", "1", "--train-limit", "64")
    (out / "state.json").write_text('{"backend": ')
    with pytest.raises(UserError, match="state.json is corrupt"):
        train(fw, tiny_data, out, "--epochs", "2", "--train-limit", "64", "--resume")


def _idx(array: np.ndarray, dtype: int = 0x08) -> bytes:
    return bytes([0, 0, dtype, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


DATA_FAULTS = {
    "truncated gzip": ("train-images-idx3-ubyte.gz", lambda b: gzip.compress(b)[:-30], "truncated"),
    "not gzip": ("train-images-idx3-ubyte.gz", lambda b: b"<html>not found</html>", "not a valid gzip"),
    "wrong magic": ("train-labels-idx1-ubyte", lambda b: b"\x01" + b[1:], "bad magic"),
    "wrong dtype": ("train-labels-idx1-ubyte", lambda b: b[:2] + b"\x0d" + b[3:], "type 0x0d"),
    "wrong image size": ("t10k-images-idx3-ubyte", lambda b: _idx(np.zeros((64, 32, 32), np.uint8)), "32x32"),
    "counts disagree": ("t10k-labels-idx1-ubyte", lambda b: _idx(np.zeros(63, np.uint8)), "63 labels"),
    "label out of range": ("t10k-labels-idx1-ubyte", lambda b: _idx(np.full(64, 12, np.uint8)), "label 12"),
    "checksum mismatch": ("t10k-labels-idx1-ubyte", lambda b: _idx(np.ones(10_000, np.uint8)), "checksum"),
}


@pytest.mark.parametrize("name, corrupt, phrase", DATA_FAULTS.values(), ids=DATA_FAULTS.keys())
def test_a_bad_data_file_is_named_and_nothing_is_written(fw, tiny_data, tmp_path, name, corrupt, phrase):
    raw = name.removesuffix(".gz")
    data = (tiny_data / raw).read_bytes()
    (tiny_data / raw).unlink()
    (tiny_data / name).write_bytes(corrupt(data))
    with pytest.raises(UserError, match=phrase) as e:
        train(fw, tiny_data, tmp_path / "run")
    assert name in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["--epochs", "-1"], ["--batch-size", "0"], ["--lr", "-0.1"],
                                  ["--lr", "inf"], ["--test-limit", "-2"], ["--seed", "x"],
                                  ["--epochs", "2.5"], ["--device", "cuda"]])
def test_bad_numbers_exit_2_with_one_line(fw, tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as e:
        fw.train.main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and argv[0] in err, err
    assert not (tmp_path / "run").exists()
