"""The run directory: no clobbering, atomic checkpoints, exact resume bookkeeping, clear stops."""

import errno
import json
import math
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from common import lock
from common.epoch import Epoch, Loop, StopRequests
from common.errors import UserError, _sigterm
from common.hparams import HParams
from common.metrics import book_line, curve_points, epoch_record, estimate, estimate_line, examples_per_sec, plot_curves
from common.run import CannotWrite, Run, shell_word
from common.spec import BYTES_PER_FLOAT, num_params
from tests.harness.as_on_windows import msvcrt_stand_in

HP = HParams(num_epochs=3, resize=67)


def record(epoch: int, loss: float = 1.0) -> dict:
    return epoch_record(epoch, loss, 0.5, 0.6, num_train=100, train_time=2.0, epoch_time=2.5)


def write(text: str):
    return lambda path: path.write_text(text)


def test_checkpoints_rotate_and_state_commits_last(tmp_path):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))
    run.end_epoch(record(2), write("two"))
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-002.ckpt"]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 2 and state["checkpoint"] == "checkpoint-002.ckpt"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "curves.png").stat().st_size > 1000
    resumed = Run(tmp_path, "x", HP, "ckpt", resume=True)
    assert resumed.start_epoch == 2 and resumed.checkpoint.read_text() == "two"


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, error):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))

    def half_then_fail(path):
        path.write_text("partial")
        raise error

    with pytest.raises(KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else CannotWrite):
        run.end_epoch(record(2), half_then_fail)
    resumed = Run(tmp_path, "x", HP, "ckpt", resume=True)
    assert resumed.start_epoch == 1 and resumed.checkpoint.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir() if "ckpt" in p.name) == ["checkpoint-001.ckpt"]


def test_a_full_disk_stops_the_run_in_one_line_before_the_frameworks_writer_and_keeps_the_last_checkpoint(
        tmp_path, monkeypatch):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))
    need = 2 * num_params(HP.resize) * BYTES_PER_FLOAT  # the checkpoint and the weights file beside it
    room = [need - 1]
    monkeypatch.setattr("common.run.shutil.disk_usage", lambda path: SimpleNamespace(free=room[0]))
    writes = []
    with pytest.raises(CannotWrite, match=r"^cannot write the run's files in .* \(the disk is full: 172.8 MB free "
                                          r"there, and a checkpoint with its weights takes 173 MB\)$") as e:
        run.save_partial({"epoch": 2, "batch": 3, "batches": 10, "sums": [0, 0]}, writes.append)
    assert writes == []  # the framework's writer was not started: a full disk leaves some of them in a bad state
    said = str(run.cannot_write(e.value, "python -m alexnet_x.train"))
    assert said.endswith(": the checkpoint of epoch 1 is kept; make room there, then continue with: "
                         f"python -m alexnet_x.train --out {tmp_path} --resume")
    room[0] = need  # room when the write began, none by its end: the framework's own error, in its words
    with pytest.raises(CannotWrite, match="the disk is full"):
        run.end_epoch(record(2), lambda path: room.append(room.pop() - need) or 1 / 0)
    room[0] = need  # a framework's error with room to spare is not the disk's: its traceback stays
    with pytest.raises(ZeroDivisionError):
        run.end_epoch(record(2), lambda path: 1 / 0)
    assert Run(tmp_path, "x", HP, "ckpt", resume=True).checkpoint.read_text() == "one"
    fresh = Run(tmp_path / "new", "x", HP, "ckpt")
    assert str(fresh.cannot_write(CannotWrite("cannot write"), "c")).endswith(
        "cannot write, so nothing was saved: make room there or choose another --out, and run the same command again")


def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))
    with pytest.raises(UserError, match="became nan in epoch 2.*smaller --lr.*epoch 1 is kept"):
        run.end_epoch(record(2, loss=math.nan), write("bad"))
    assert Run(tmp_path, "x", HP, "ckpt", resume=True).checkpoint.read_text() == "one"


def test_a_loss_gone_bad_inside_an_epoch_stops_before_a_checkpoint_keeps_it(tmp_path):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("epoch 1"))
    weights = ["epoch 2, minibatch 1"]
    loop = Loop(run, num_test=10, stop=StopRequests(), agree=lambda flag: flag, checkpoint_every=0,
                no_progress=True)  # a checkpoint due after every minibatch
    epoch = Epoch(loop, 2, num_examples=1280, batch_size=128,
                  write_checkpoint=lambda path, number: path.write_text(weights[0]))
    epoch.done(0, 128, lambda: [2.3 * 128, 12.0])
    assert run.checkpoint.read_text() == "epoch 2, minibatch 1"
    weights[0] = "broken"
    with pytest.raises(UserError, match=r"became nan in epoch 2: the run diverged \(try a smaller --lr\); the "
                                        r"checkpoint of epoch 2 up to minibatch 1 of 10, after 1 whole epoch is kept"):
        epoch.done(1, 128, lambda: [math.nan, 24.0])
    epoch.close()
    resumed = Run(tmp_path, "x", HP, "ckpt", resume=True)
    assert resumed.checkpoint.read_text() == "epoch 2, minibatch 1" and resumed.partial["batch"] == 1


def test_refusals(tmp_path):
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))
    with pytest.raises(UserError, match="already holds a run"):
        Run(tmp_path, "x", HP, "ckpt")
    with pytest.raises(UserError, match="holds a x run.*python -m alexnet_x.train --out .* --resume, or start a new y"):
        Run(tmp_path, "y", HP, "ckpt", resume=True)
    (tmp_path / "weights.safetensors").write_bytes(b"")  # written with every checkpoint of a run of today
    with pytest.raises(UserError, match="holds a x run.* or train on in y .* --init-weights .*weights.safetensors"):
        Run(tmp_path, "y", HP, "ckpt", resume=True)
    with pytest.raises(UserError, match=r"different settings: lr 0.1 \(the run has 0.01\)"):
        Run(tmp_path, "x", HParams(num_epochs=3, resize=67, lr=0.1), "ckpt", resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        Run(tmp_path / "empty", "x", HP, "ckpt", resume=True)
    Run(tmp_path, "x", HP, "ckpt", force=True)
    assert not list(tmp_path.glob("checkpoint-*")) and not (tmp_path / "state.json").exists()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UserError, match=r"cannot make the run directory .*a-file.*\(.+\): choose another --out$"):
        Run(tmp_path / "a-file" / "run", "x", HP, "ckpt")


def test_more_epochs_may_be_added_on_resume_but_not_fewer(tmp_path):
    run = Run(tmp_path, "x", HParams(num_epochs=1, resize=67), "ckpt")
    run.end_epoch(record(1), write("one"))
    with pytest.raises(UserError, match="has done its 1 epochs"):
        Run(tmp_path, "x", HParams(num_epochs=1, resize=67), "ckpt", resume=True)
    assert Run(tmp_path, "x", HP, "ckpt", resume=True).start_epoch == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_the_epochs_files_waits_for_them(tmp_path, sig):
    before = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM as the commands treat it: like Ctrl-C
    before_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # live even where started ignored
    try:
        run = Run(tmp_path, "x", HP, "ckpt")

        def write_then_get_interrupted(path):
            os.kill(os.getpid(), sig)  # as if the user pressed Ctrl-C (or was sent SIGTERM) right now
            path.write_text("one")

        with pytest.raises(KeyboardInterrupt):
            run.end_epoch(record(1), write_then_get_interrupted)
        resumed = Run(tmp_path, "x", HP, "ckpt", resume=True)  # the whole epoch was recorded first
        assert resumed.start_epoch == 1 and resumed.checkpoint.read_text() == "one"
        assert (tmp_path / "curves.png").is_file() and (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back
        assert signal.getsignal(signal.SIGTERM) is _sigterm
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, before_int)


def test_interrupt_message_says_how_to_continue(tmp_path):
    run = Run(tmp_path, "torch", HP, "pt")
    assert "nothing was saved" in str(run.interrupted()) and "--resume" not in str(run.interrupted())
    run.end_epoch(record(1), write("one"))
    assert "epoch 1 is kept" in str(run.interrupted())
    assert f"python -m alexnet_torch.train --out {tmp_path} --resume" in str(run.interrupted())
    run.save_partial({"epoch": 2, "batch": 27, "batches": 469}, write("part"))
    assert "epoch 2 up to minibatch 27 of 469, after 1 whole epoch is kept" in str(run.interrupted())
    run.end_epoch(record(2), write("two"))
    run.save_partial({"epoch": 3, "batch": 5, "batches": 469}, write("part"))
    assert "after 2 whole epochs is kept" in str(run.interrupted())


def test_every_checkpoint_writes_the_network_so_far_before_state_json_names_it(tmp_path):
    run = Run(tmp_path, "torch", HP, "pt")
    seen = []

    def weights(label):
        def write_weights(path):
            assert path == tmp_path / "weights.safetensors"
            assert (tmp_path / f"checkpoint-{label}.pt").is_file()  # the checkpoint first
            seen.append(json.loads((tmp_path / "state.json").read_text())["checkpoint"] if seen else None)
            path.write_text(label)
        return write_weights

    run.end_epoch(record(1), write("one"), weights("001"))
    assert "(the network so far: weights.safetensors)" in str(run.interrupted())
    run.save_partial({"epoch": 2, "batch": 27, "batches": 469}, write("part"), weights("002-00027"))
    assert (tmp_path / "weights.safetensors").read_text() == "002-00027"
    assert seen == [None, "checkpoint-001.pt"]  # state.json still named the older checkpoint: it commits last
    Run(tmp_path / "none", "torch", HP, "pt").end_epoch(record(1), write("one"))  # no writer: no weights
    assert not (tmp_path / "none" / "weights.safetensors").exists()


def test_book_line_and_throughput():
    history = [record(1), epoch_record(2, 0.25, 0.9, 0.875, num_train=100, train_time=6.0, epoch_time=7)]
    assert examples_per_sec(history) == 25.0  # 200 images in 8 s of training
    assert book_line(history, "cpu") == "loss 0.250, train acc 0.900, test acc 0.875, 25.0 examples/sec on cpu"
    assert estimate(20.0, 60_000, 10_000, 10) == pytest.approx(10 * (60_000 + 10_000 / 3) / 20)


KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
from common.hparams import HParams
from common.metrics import epoch_record
from common.run import Run

run = Run(Path(sys.argv[1]), "x", HParams(num_epochs=3, resize=67), "ckpt", resume=True)

def slow_write(path):
    path.write_text("half of epoch 2")
    print("writing", flush=True)
    time.sleep(60)

run.end_epoch(epoch_record(2, 1.0, 0.5, 0.6, 100, 2.0, 2.5), slow_write)
"""


def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    Run(tmp_path, "x", HP, "ckpt").end_epoch(record(1), write("one"))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = Run(tmp_path, "x", HP, "ckpt", resume=True)
    assert resumed.start_epoch == 1 and resumed.checkpoint.read_text() == "one"


HOLD_THE_RUN = """
import sys, time
from pathlib import Path
from common.hparams import HParams
from common.run import Run

run = Run(Path(sys.argv[1]), "x", HParams(num_epochs=3, resize=67), "ckpt")
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("windows", [False, True], ids=["fcntl", "msvcrt"])
def test_a_second_process_is_refused_while_the_first_holds_the_run(tmp_path, monkeypatch, windows):
    """Both processes lock as on POSIX, or both as on Windows (msvcrt's byte range, stood in for on Linux)."""
    harness = ["-m", "tests.harness.as_on_windows"] if windows else []
    if windows:
        monkeypatch.setattr(lock, "fcntl", None)
        monkeypatch.setattr(lock, "msvcrt", msvcrt_stand_in(), raising=False)
    holder = subprocess.Popen([sys.executable, *harness, "-c", HOLD_THE_RUN, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(UserError, match=rf"in use by a run that is still going \(pid {holder.pid}\)"):
            Run(tmp_path, "x", HP, "ckpt", force=True)
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: the OS lets go of its lock, nothing stale is left
        holder.wait(timeout=30)
    run = Run(tmp_path, "x", HP, "ckpt", force=True)
    run.close()
    Run(tmp_path, "x", HP, "ckpt", force=True).close()  # closed: the directory is free again


@pytest.mark.skipif(lock.fcntl is None, reason="fcntl's locks: POSIX")
def test_a_filesystem_without_locks_lets_the_run_go_on_and_says_so(tmp_path, monkeypatch, capsys):
    """An NFS mount without its lock service, or a FUSE mount without locks (ENOLCK): no one holds the lock."""

    def says(code: int):
        def lockf(f, how):
            raise OSError(code, os.strerror(code))
        return lockf

    monkeypatch.setattr(lock.fcntl, "lockf", says(errno.ENOLCK))
    run = Run(tmp_path, "x", HP, "ckpt")
    run.end_epoch(record(1), write("one"))
    run.close()
    assert (f"note: {tmp_path} is on a filesystem without file locks (No locks available), so this run goes on "
            f"without its lock") in capsys.readouterr().out
    Run(tmp_path, "x", HP, "ckpt", resume=True).close()  # and resumes the same way
    monkeypatch.setattr(lock.fcntl, "lockf", says(errno.EAGAIN))  # where locks work, another process's
    with pytest.raises(UserError, match="in use by a run that is still going"):
        Run(tmp_path, "x", HP, "ckpt", resume=True)


def test_the_resume_command_quotes_the_directory_for_the_shell_at_hand(monkeypatch):
    assert shell_word("runs/torch") == "runs/torch" and shell_word("my runs/x") == "'my runs/x'"
    monkeypatch.setattr(os, "name", "nt")  # cmd.exe and PowerShell: no single quotes, backslashes as they are
    assert shell_word(r"runs\torch") == r"runs\torch" and shell_word(r"my runs\x") == r'"my runs\x"'


def test_files_get_the_users_normal_permissions(tmp_path):
    before = os.umask(0o027)
    try:
        run = Run(tmp_path, "x", HP, "ckpt")
        run.end_epoch(record(1), write("one"))
    finally:
        os.umask(before)
    for name in ("state.json", "metrics.jsonl", "curves.png", "checkpoint-001.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name  # 0666 less the umask, not 0600


def test_a_long_run_is_announced_with_how_to_shorten_it():
    long = estimate_line(2 * 3600, 25.0, "this CPU", 10, 10)
    assert long.startswith("warning:") and "2.0 hours" in long and "--quick" in long and "Ctrl-C" in long
    assert "so 10 epochs will take" in long
    assert "--fast" in long  # where it computes in bf16; not on a CPU where it would be float32 anyway
    assert "--fast" not in estimate_line(2 * 3600, 25.0, "this CPU", 10, 10, fast_helps=False)
    assert estimate_line(600, 25.0, "this CPU", 1, 1) == \
        "note: measured 25.0 training images/s on this CPU, so 1 epoch will take about 10 minutes"
    resumed = estimate_line(3 * 3600, 25.0, "this CPU", 10 - 51 / 469, 10)  # stopped at minibatch 51 of epoch 1
    assert "so the 9.9 epochs left will take about 3.0 hours" in resumed
    assert "so the 6 epochs left will take" in estimate_line(3 * 3600, 25.0, "this CPU", 6, 10)  # after epoch 4
    assert "so the 1 epoch left will take" in estimate_line(600, 25.0, "this CPU", 1, 10)


def test_a_stop_request_waits_for_the_minibatch_and_a_second_one_stops_at_once():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with StopRequests() as stop:
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: a request, nothing raised
            assert stop.requested
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)  # the second: at once
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back
    finally:
        signal.signal(signal.SIGINT, before)


def test_one_epoch_plots_its_points_with_markers(tmp_path):
    history = [epoch_record(1, 0.9, 0.6, 0.7, 100, 4.0, 5.0, points=[[0.2, 2.3, 0.1], [0.4, 2.0, 0.3]])]
    assert curve_points(history) == [(0.2, 2.3, 0.1), (0.4, 2.0, 0.3), (1, 0.9, 0.6)]
    plot_curves(tmp_path / "c.png", history, 1, "one epoch")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
