"""Runs that go wrong end cleanly: interrupts, divergence, hostile or broken files."""

import json
import pickle
import signal
import subprocess
import sys
import time

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
