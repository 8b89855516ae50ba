"""Several processes, the way several machines run: started by each framework's launcher on the loopback address.

The equality across processes is in test_parallel.py; here, a whole run, its resume, and what goes wrong.
Every process is bounded in time: ALEXNET_CONNECT_TIMEOUT (common.launch) keeps a lonely worker from waiting long.
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from common import launch
from tests.backend.test_cli import BOOK_LINE, FAST

TIMEOUT_S = 20  # how long a process waits for the others in these tests
ALONE_S = 8  # the same where nobody will come: the wait is the test


@pytest.fixture
def several(can):
    """Skip backends whose one process per replica is already the whole story (test_parallel.py)."""
    if not can.in_process:
        pytest.skip(f"{can.title} runs one process per replica: test_parallel.py trains that way")


@pytest.fixture
def own_environment(backend):
    """The variables a process gets from common.launch; backends with their own launcher skip."""
    if backend not in launch.ENVIRONMENTS:
        pytest.skip(f"alexnet_{backend} is started by torchrun: its own launcher")
    if backend in launch.HELPERS:  # a worker alone would only wait for the scheduler
        pytest.skip(f"alexnet_{backend}'s workers need their scheduler and servers: test_mxnet_dist.py starts them")
    return launch.ENVIRONMENTS[backend]


def _env(extra: dict[str, str] | None = None, timeout: float = TIMEOUT_S) -> dict[str, str]:
    """This environment for a process of the run: one OpenMP thread each (two processes share the cores)."""
    return {**os.environ, "ALEXNET_CONNECT_TIMEOUT": str(timeout), "OMP_NUM_THREADS": "1", **(extra or {})}


def _python(command: list[str]) -> list[str]:
    """A printed command as this test runs it: this venv's Python (and torchrun through it)."""
    if command[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    return [sys.executable if word == "python" else word for word in command]


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    assert any(line.startswith("error: ") for line in err.splitlines()), err[-3000:]


def test_train_in_two_processes_writes_one_run(backend, several, tiny_data, tmp_path):
    out = tmp_path / "run"
    parallel = __import__(f"alexnet_{backend}.parallel", fromlist=["launch_command"])
    command = [*parallel.launch_command(2, processes=2), *FAST, "--devices", "2", "--epochs", "2",
               "--data-dir", str(tiny_data), "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(BOOK_LINE.findall(proc.stdout)) == 1, proc.stdout  # the chief alone prints it
    assert re.search(r" on \S+ x2 \(", proc.stdout), proc.stdout  # this process's device, and how many in all
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["devices"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_interrupted_processes_resume_as_printed(backend, can, tiny_data, tmp_path):
    """Ctrl-C reaches every process through the launcher; the printed command continues the run."""
    out = tmp_path / "run"
    parallel = __import__(f"alexnet_{backend}.parallel", fromlist=["launch_command"])
    command = [*parallel.launch_command(2, processes=2), *FAST, "--devices", "2",
               "--epochs", "100", "--data-dir", str(tiny_data), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 300
    while not (out / "state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert "interrupted: the checkpoint of epoch" in err, err[-3000:]  # the processes stopped together
    if can.launcher == "torchrun":  # torchrun itself ends with its own SignalException (exit status 1)
        assert proc.returncode == 1 and "SignalException" in err, err[-3000:]
    else:
        assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    done = json.loads((out / "state.json").read_text())["epoch"]
    printed = shlex.split(err.split("continue with: ")[1].splitlines()[0])
    assert "--devices" in printed and printed[-1] == "--resume"
    resumed = subprocess.run([*_python(printed), "--epochs", str(done + 1)], capture_output=True, text=True,
                             timeout=600, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["epochs"] == done + 1


def _start(backend: str, environment, rank: int, ports: list[int], argv: list[str],
           timeout: float = TIMEOUT_S) -> subprocess.Popen:
    """One process of a two-process run, started by hand as on its own machine."""
    return subprocess.Popen([sys.executable, "-m", f"alexnet_{backend}.train", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(environment(rank, 2, ports), timeout), start_new_session=True)


def _finish(proc: subprocess.Popen) -> str:
    """The process's stderr once it has stopped on its own, in bounded time."""
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("a process hung past its bounded timeout")
    assert proc.returncode != 0, err[-3000:]
    return err


def _argv(data, out, *extra: str) -> list[str]:
    return [*FAST, "--devices", "2", "--epochs", "1", "--data-dir", str(data), "--out", str(out), *extra]


def test_a_worker_that_cannot_reach_the_others_stops_with_a_clear_line(backend, own_environment, tiny_data, tmp_path):
    ports = launch.free_ports(2)  # nobody listens on the other's ports
    err = _finish(_start(backend, own_environment, 1, ports, _argv(tiny_data, tmp_path / "run"), ALONE_S))
    _one_line_error(err)
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_named(backend, own_environment, tiny_data, tmp_path):
    with socket.socket() as taken:
        taken.bind((launch.HOST, 0))
        taken.listen()
        ports = [taken.getsockname()[1], *launch.free_ports(1)]  # the first process's own port is taken
        err = _finish(_start(backend, own_environment, 0, ports, _argv(tiny_data, tmp_path / "run")))
    _one_line_error(err)
    assert str(ports[0]) in err, err[-3000:]
    assert not list((tmp_path / "run").glob("checkpoint-*")) and not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("differ", [["--batch-size", "32"], ["--devices", "4"]], ids=["batch-size", "devices"])
def test_workers_with_different_settings_stop_with_a_clear_line(backend, own_environment, tiny_data, tmp_path,
                                                                 differ):
    ports = launch.free_ports(2)
    out = tmp_path / "run"
    procs = [_start(backend, own_environment, 0, ports, _argv(tiny_data, out)),
             _start(backend, own_environment, 1, ports, _argv(tiny_data, out, *differ))]
    errs = [_finish(p) for p in procs]
    for err in errs:
        _one_line_error(err)
    assert not list(out.glob("checkpoint-*")) and not (out / "summary.json").exists()
