"""Runs that go wrong end cleanly: interrupts, divergence, hostile or broken files."""

import gzip
import json
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.errors import STOP_SIGNALS, UserError
from common.hparams import HParams
from common.run import CannotWrite
from common.spec import MIN_RESIZE
from common.weights import load_weights
from tests.backend.test_cli import FAST, train


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=[s.name for s in STOP_SIGNALS])
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
    if sig == getattr(signal, "SIGHUP", None):  # a closed terminal: the same clean stop, with nothing more said
        assert "interrupted" not in err and "Traceback" not in err, err  # (its default: killed with no checkpoint)
        assert (out / json.loads((out / "state.json").read_text())["checkpoint"]).is_file()
        return
    assert "interrupted: the checkpoint of epoch" in err and "Traceback" not in err
    done = json.loads((out / "state.json").read_text())["epoch"]
    assert (out / json.loads((out / "state.json").read_text())["checkpoint"]).is_file()
    printed = shlex.split(err.split("continue with: ")[1].splitlines()[0])
    assert printed[:3] == ["python", "-m", f"alexnet_{backend}.train"] and printed[-1] == "--resume"
    if sig == signal.SIGTERM:  # the same checkpoint as Ctrl-C's: its resume is SIGINT's (CI's time, on 2 cores)
        return
    assert f"{out} (the network so far: weights.safetensors)" in err  # predict, export, --init-weights at once
    hooks, stored = fw.train.HOOKS, json.loads((out / "state.json").read_text())
    net, trainer = hooks.build(HParams(**stored["hparams"]), hooks.replicas(1, "cpu"))
    hooks.load_checkpoint(out / stored["checkpoint"], net, trainer)
    beside = load_weights(out / "weights.safetensors", MIN_RESIZE)
    for name, w in hooks.get_weights(net).items():  # the checkpoint's network, not an earlier one
        np.testing.assert_array_equal(beside[name], w, err_msg=name)
    # As typed (the run's settings, data directory included, come from the run), with fewer epochs to go.
    resumed = subprocess.run([sys.executable, *printed[1:], "--epochs", str(done + 1)], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == done + 1 and summary["hparams"]["batch_size"] == 16


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


def test_a_damaged_checkpoint_is_refused_with_the_way_on_from_the_weights_beside_it(fw, tiny_data, tmp_path):
    out, limit = tmp_path / "run", ["--train-limit", "64"]
    train(fw, tiny_data, out, "--epochs", "1", *limit)
    checkpoint = out / json.loads((out / "state.json").read_text())["checkpoint"]
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut short, as by a failing disk
    with pytest.raises(UserError, match=r"^cannot load checkpoint .+ \(.+\): start the run again with --force, or go "
                                        r"on from the network so far") as e:
        train(fw, tiny_data, out, "--epochs", "3", *limit, "--resume")
    way_on = str(e.value).split("give the run's command ")[1].removesuffix(" and another --out")
    assert way_on == f"--init-weights {out / 'weights.safetensors'} --epochs 2"
    train(fw, tiny_data, tmp_path / "on", *limit, *shlex.split(way_on))  # the run's command, and the way on
    summary = json.loads((tmp_path / "on" / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["init_weights"]["path"] == str(out / "weights.safetensors")


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


def test_a_run_killed_mid_epoch_resumes_exactly_from_its_periodic_checkpoint(fw, backend, tiny_data, tmp_path):
    argv = ["--batch-size", "16", "--epochs", "2"]  # 256 training images: 16 minibatches an epoch
    train(fw, tiny_data, tmp_path / "straight", *argv)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", f"alexnet_{backend}.train", *FAST, *argv, "--data-dir",
                             str(tiny_data), "--out", str(out), "--checkpoint-every", "0.001"],  # every 60 ms
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state, deadline = {}, time.monotonic() + 240
    while not state.get("partial") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        try:
            state = json.loads((out / "state.json").read_text())
        except (OSError, ValueError):
            pass
    proc.send_signal(signal.SIGKILL)  # a crash: no handler runs
    proc.communicate(timeout=60)
    state = json.loads((out / "state.json").read_text())
    assert state["partial"] and 0 < state["partial"]["batch"] < 16, state.get("partial")
    train(fw, tiny_data, out, *argv, "--resume")  # from the minibatch after the checkpoint
    a = load_weights(tmp_path / "straight" / "weights.safetensors", MIN_RESIZE)
    b = load_weights(out / "weights.safetensors", MIN_RESIZE)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=name)
    runs = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (tmp_path / "straight", out)]
    for x, y in zip(*runs, strict=True):
        for key in ("loss", "train_acc", "test_acc"):
            assert x[key] == pytest.approx(y[key], abs=1e-6), key
        assert len(x["points"]) == 5 and np.allclose(x["points"], y["points"], atol=1e-6)  # the curves too


def test_a_network_too_large_for_memory_stops_in_one_line(fw, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["--resize", "530000", "--batch-size", "2", "--device", "cpu", "--no-progress", "--data-dir", str(tiny_data),
            "--out", str(out)]
    with pytest.raises(UserError, match=r"needs at least [\d,.]+ GB of memory to train"):  # refused before it starts
        fw.train.main(argv)
    assert not out.exists()
    # Past that check, the framework's own error: dense1 alone would take 1.15 PB (4096 x 256 x 16561 x 16561
    # float32), more than any machine's memory and swap, so the OS refuses it at once, before a page is touched
    # (MXNet refuses a tensor of 2^31 elements or more before that).
    monkeypatch.setattr("common.training.check_memory", lambda *args: None)
    with pytest.raises(UserError, match=rf"^too large for memory \(\w+: .+\): use a smaller --batch-size or --resize; "
                                        rf"nothing was saved in {re.escape(str(out))}$"):
        fw.train.main(argv)


@pytest.fixture
def small_disk(tmp_path):
    """A filesystem of 1 MB (tmpfs) where this process may mount one (root on Linux); skipped elsewhere."""
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = shutil.which("mount") and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                                       capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a small filesystem needs root on Linux")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_ends_the_run_in_one_line_and_writes_nothing_half(fw, tiny_data, small_disk):
    out = small_disk / "run"
    with pytest.raises(CannotWrite, match=r"^cannot write the run's files in .* \(the disk is full: [\d.]+ MB free "
                                          r"there, .*\), so nothing was saved: make room there or choose another"):
        train(fw, tiny_data, out, "--epochs", "1")
    assert [p.name for p in out.iterdir()] == [".lock"]  # no temporary file left behind either

