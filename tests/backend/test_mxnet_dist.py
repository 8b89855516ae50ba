"""MXNet across processes (kvstore dist_sync): its roles started by hand or by common.launch; the faults.

The equality with one device is in test_parallel.py, a whole run and its resume in test_processes.py; here, the
faults. Every wait is bounded: ALEXNET_CONNECT_TIMEOUT keeps a worker left alone from waiting long.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common import launch, parity
from common.spec import MIN_RESIZE
from tests.backend.test_cli import FAST
from tests.synthetic import make_split

TIMEOUT_S = 12  # how long a worker waits for the others in these tests


@pytest.fixture
def mxnet_backend(backend):
    if backend != "mxnet":
        pytest.skip("MXNet's parameter server: a scheduler, servers and workers told their roles by DMLC_* variables")


def _env(role: str, port: int, workers: int = 2, **extra: str) -> dict[str, str]:
    """What each of MXNet's roles reads (README: Several devices), as on its own machine."""
    return {**os.environ, "ALEXNET_CONNECT_TIMEOUT": str(TIMEOUT_S), "OMP_NUM_THREADS": "1", "DMLC_ROLE": role,
            "DMLC_PS_ROOT_URI": launch.HOST, "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_WORKER": str(workers),
            "DMLC_NUM_SERVER": "1", **extra}


def _start(role: str, port: int, argv: list[str], workers: int = 2) -> subprocess.Popen:
    """One role of the run, started by hand: every role runs the same command."""
    return subprocess.Popen([sys.executable, "-m", "alexnet_mxnet.train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(role, port, workers), start_new_session=True)


def _finish(proc: subprocess.Popen, within: float) -> tuple[str, str]:
    """The process's stdout and stderr once it has stopped on its own within `within` seconds."""
    try:
        return proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"a process was still running after {within} s")


def _one_line_error(err: str) -> str:
    """The `error: ...` line of a stderr that has no traceback."""
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines, err[-3000:]
    return lines[0]


def _argv(data, out, *extra: str) -> list[str]:
    return [*FAST, "--devices", "2", "--epochs", "1", "--data-dir", str(data), "--out", str(out), *extra]


@pytest.fixture
def stop_all():
    """The processes a test starts, killed at its end if still running."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_every_worker_starts_from_rank_0s_weights(mxnet_backend, monkeypatch):
    """Rank 0 alone loads a checkpoint: the others take its weights before the first step."""
    from alexnet_mxnet import data, model, step
    from tests.harness import mxnet_dp

    images, labels = make_split(14, seed=5)
    X, y = data.preprocess(images, MIN_RESIZE, step.get_device("cpu")), labels.astype(np.int64)
    weights = parity.weights_of(parity.make_case(MIN_RESIZE, seed=4))
    net = model.alexnet(MIN_RESIZE)
    model.set_weights(net, weights)
    for i in range(0, len(y), 7):
        step.sgd_step(net, X[i:i + 7], y[i:i + 7], lr=0.05, dropout=False)
    monkeypatch.setenv(mxnet_dp.OTHERS_START_ELSEWHERE, "1")
    found, counts = mxnet_dp.data_parallel_steps(weights, X, y, lr=0.05, batch_size=7, devices=2, processes=2)
    assert counts == [2, 2]
    for name, w in model.get_weights(net).items():
        np.testing.assert_array_equal(found[1][name], found[0][name], err_msg=name)
        np.testing.assert_allclose(found[0][name], w, rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("differ", [["--batch-size", "32"], ["--devices", "4"]], ids=["batch-size", "devices"])
def test_workers_with_different_settings_stop_with_a_clear_line(mxnet_backend, tiny_data, tmp_path, stop_all, differ):
    port = launch.free_ports(1)[0]
    out = tmp_path / "run"
    helpers = [_start("scheduler", port, _argv(tiny_data, out)), _start("server", port, _argv(tiny_data, out))]
    workers = [_start("worker", port, _argv(tiny_data, out)), _start("worker", port, _argv(tiny_data, out, *differ))]
    stop_all += helpers + workers
    for w in workers:
        _, err = _finish(w, TIMEOUT_S + 120)
        assert w.returncode == 2, err[-3000:]
        assert "different settings" in _one_line_error(err)
    for h in helpers:  # the scheduler and the server stop with the workers, silently, writing nothing
        stdout, err = _finish(h, 60)
        assert h.returncode == 0 and stdout == "", err[-3000:]
    assert not list(out.glob("checkpoint-*")) and not (out / "summary.json").exists()


def test_a_worker_that_dies_stops_the_others_in_bounded_time(mxnet_backend, tiny_data, tmp_path, stop_all):
    port = launch.free_ports(1)[0]
    out = tmp_path / "run"
    argv = _argv(tiny_data, out, "--epochs", "100", "--batch-size", "16")
    stop_all += [_start("scheduler", port, argv), _start("server", port, argv)]
    workers = [_start("worker", port, argv), _start("worker", port, argv)]
    stop_all += workers
    deadline = time.monotonic() + 300
    while not (out / "state.json").exists() and time.monotonic() < deadline:  # an epoch done: training
        assert all(w.poll() is None for w in workers), workers[0].communicate()[1][-3000:]
        time.sleep(0.2)
    workers[1].kill()  # as a machine lost
    killed = time.monotonic()
    _, err = _finish(workers[0], TIMEOUT_S + 60)
    assert time.monotonic() - killed < TIMEOUT_S + 30
    assert workers[0].returncode == 2, err[-3000:]
    assert "no answer from the other MXNet processes" in _one_line_error(err)


def test_the_launcher_stops_every_role_when_a_worker_dies(mxnet_backend, tiny_data, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "common.launch", "--backend", "mxnet", "--processes", "2", "--",
               sys.executable, "-m", "alexnet_mxnet.train",
               *_argv(tiny_data, out, "--epochs", "100", "--batch-size", "16")]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "ALEXNET_CONNECT_TIMEOUT": str(TIMEOUT_S), "OMP_NUM_THREADS": "1"},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "state.json").exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        roles = _children(launcher.pid)
        assert sorted(roles.values()) == ["scheduler", "server", "server", "worker", "worker"]
        os.kill(next(pid for pid, role in roles.items() if role == "worker"), signal.SIGKILL)
        _, err = _finish(launcher, launch.GRACE_S + TIMEOUT_S + 60)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode != 0
    assert "stopping the others" in _one_line_error(err)
    assert all(not _alive(pid) for pid in roles), "a role outlived the launcher"


def _children(pid: int) -> dict[int, str]:
    """The launcher's child processes and their DMLC_ROLE, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == pid:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
                found[int(entry)] = env.get(b"DMLC_ROLE", b"").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Whether a process still runs (a zombie, reaped later by its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_scheduler_port_in_use_is_named(mxnet_backend, tiny_data, tmp_path):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        scheduler = _start("scheduler", port, _argv(tiny_data, tmp_path / "run"))
        _, err = _finish(scheduler, 60)
        assert scheduler.returncode == 2
        assert f"DMLC_PS_ROOT_PORT={port}" in _one_line_error(err)
        launcher = subprocess.run([sys.executable, "-m", "common.launch", "--backend", "mxnet", "--port", str(port),
                                   "--", sys.executable, "-m", "alexnet_mxnet.train"], capture_output=True, text=True,
                                  timeout=60)
        assert launcher.returncode == 2 and f"port {port}" in _one_line_error(launcher.stderr)
        # A worker sent to a port where no scheduler answers says where it looked.
        worker = _start("worker", port, _argv(tiny_data, tmp_path / "run"))
        _, err = _finish(worker, TIMEOUT_S + 60)
    assert worker.returncode == 2
    assert f"{launch.HOST}:{port}" in _one_line_error(err)
    assert not (tmp_path / "run").exists()


def test_a_worker_without_the_scheduler_address_is_told_what_to_set(mxnet_backend, tiny_data, tmp_path):
    env = {k: v for k, v in _env("worker", 1).items() if k != "DMLC_PS_ROOT_URI"}
    proc = subprocess.run([sys.executable, "-m", "alexnet_mxnet.train", *_argv(tiny_data, tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "DMLC_PS_ROOT_URI" in _one_line_error(proc.stderr)
