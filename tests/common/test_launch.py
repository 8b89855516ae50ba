"""common.launch: several processes on this machine, each told its place the way its framework reads it."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from common import launch
from common.errors import UserError
from common.hparams import HParams
from common.replicas import Replicas, same_settings


def test_tf_config_names_every_worker_and_this_one():
    config = json.loads(launch.tf_environment(1, 2, [1000, 1001])["TF_CONFIG"])
    assert config == {"cluster": {"worker": ["127.0.0.1:1000", "127.0.0.1:1001"]},
                      "task": {"type": "worker", "index": 1}}


def test_jax_gets_the_coordinator_and_its_place():
    assert launch.jax_environment(1, 2, [1234]) == {
        "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}


def test_a_wait_past_its_bound_ends_the_process_with_one_line(monkeypatch):
    """launch.bounded: ten connect timeouts for a process that works alone; then out, with one line."""
    stuck = ("import time; from common import launch\n"
             "with launch.bounded('stuck', launch.stall_timeout()): time.sleep(60)")
    env = {**os.environ, "ALEXNET_CONNECT_TIMEOUT": "0.05"}  # a bound of 0.5 s
    done = subprocess.run([sys.executable, "-c", stuck], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == UserError.exit_code and done.stderr == "error: stuck\n"
    monkeypatch.setenv("ALEXNET_CONNECT_TIMEOUT", "12")
    assert launch.stall_timeout() == 120
    for bad in ("abc", "-5", "0", "nan"):
        monkeypatch.setenv("ALEXNET_CONNECT_TIMEOUT", bad)
        with pytest.raises(UserError, match=f"ALEXNET_CONNECT_TIMEOUT='{bad}': set it to the seconds .* above 0"):
            launch.connect_timeout()


def test_the_command_uses_each_framework_own_launcher():
    assert launch.prefix("tf", 2, 1, "alexnet_tf.train") == ["python", "-m", "alexnet_tf.train"]
    assert launch.prefix("torch", 2, 2, "m")[:2] == ["torchrun", "--standalone"]
    assert launch.prefix("mxnet", 2, 2, "m")[:5] == ["python", "-m", "common.launch", "--backend", "mxnet"]
    assert launch.prefix("jax", 2, 2, "m") == ["python", "-m", "common.launch", "--backend", "jax", "--processes",
                                               "2", "--", "python", "-m", "m"]


def test_free_ports_are_free_and_a_taken_one_is_named():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    with socket.socket() as s:
        s.bind((launch.HOST, ports[0]))
        with pytest.raises(UserError, match=f"port {ports[0]} .* in use"):
            launch.free_ports(2, ports[0])


def _launch(code: str, *flags: str, timeout: float = 60) -> subprocess.CompletedProcess:
    script = textwrap.dedent(code)
    return subprocess.run([sys.executable, "-m", "common.launch", "--backend", "jax", *flags, "--",
                           sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def test_mxnet_gets_its_workers_a_scheduler_and_a_server_each():
    roles = [launch.mxnet_environment(r, 2, [9091]) for r in range(2)] + launch.mxnet_helpers(2, [9091])
    assert [(e["DMLC_ROLE"], e["DMLC_TASK_ID"]) for e in roles] == [
        ("worker", "0"), ("worker", "1"), ("scheduler", "0"), ("server", "0"), ("server", "1")]
    assert {e["DMLC_PS_ROOT_PORT"] for e in roles} == {"9091"} and {e["DMLC_NUM_WORKER"] for e in roles} == {"2"}


def test_every_process_gets_its_place():
    proc = _launch("import os; os.write(1, f\"process {os.environ['JAX_PROCESS_ID']} of "
                   "{os.environ['JAX_NUM_PROCESSES']}\\n\".encode())",  # one write: lines do not interleave
                   "--processes", "3")
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["process 0 of 3", "process 1 of 3", "process 2 of 3"]


def test_one_failing_process_stops_the_others_in_bounded_time():
    proc = _launch("""
        import os, sys, time
        if os.environ['JAX_PROCESS_ID'] == '1':
            sys.exit(3)
        time.sleep(600)
    """, timeout=30)
    assert proc.returncode == 3
    assert "process 1 of 2 stopped (exit status 3): stopping the others" in proc.stderr


SLEEPER = ("import os, signal, sys, time\n"
           "signal.signal(signal.SIGINT, lambda *a: (print('stopping', flush=True), sys.exit(130)))\n"
           "os.write(1, b'ready\\n')\n"  # one write: two processes' lines cannot interleave
           "time.sleep(30)")  # long enough to be told, short if never told


def test_ctrl_c_reaches_every_process_once():
    proc = subprocess.Popen([sys.executable, "-m", "common.launch", "--backend", "tf", "--", sys.executable, "-c",
                             SLEEPER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines == ["ready\n", "ready\n"]
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a failed check leaves nothing running
            launch.stop([proc])
    assert proc.returncode == 130 and out.count("stopping") == 2, err  # the two may interleave their lines
    assert "stopping the others" not in err


def test_a_ctrl_c_while_the_processes_start_stops_them_all(monkeypatch):
    """Ctrl-C between two starts: the first worker is told at once, the second as soon as it exists."""
    workers = []

    def start(backend, processes, command, port):
        for rank in range(processes):
            workers.append(subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True,
                                            start_new_session=True))
            if rank == 0:
                assert workers[0].stdout.readline() == "ready\n"  # its handler is set
                os.kill(os.getpid(), signal.SIGINT)  # the launcher's Ctrl-C, before the second one starts
            yield workers[-1]

    monkeypatch.setattr(launch, "start", start)
    before = signal.getsignal(signal.SIGINT)  # Python's, or SIG_IGN in a job started in the background
    try:
        code = launch.run("tf", 2, ["unused"])
    finally:
        launch.stop(workers)  # a failed check leaves nothing running
    assert code != 0 and workers[1].returncode != 0  # told during its start: Python's KeyboardInterrupt, or ours
    assert workers[0].returncode == 130 and workers[0].stdout.read() == "stopping\n"  # told once
    assert signal.getsignal(signal.SIGINT) == before  # the launcher's handler is gone


TOLD = ("import os, signal, sys, time\n"
        "def told(signum, frame):\n"  # the terminal may be gone: the signal's name goes to a file
        "    with open(os.environ['TOLD'] + os.environ['JAX_PROCESS_ID'], 'a') as f:\n"
        "        f.write(signal.Signals(signum).name + '\\n')\n"
        "    sys.exit(130)\n"
        "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
        "    signal.signal(s, told)\n"
        "os.write(1, b'ready\\n')\n"
        "time.sleep(30)")


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no terminals' SIGHUP here")
def test_a_closed_terminal_reaches_every_process_as_sighup(tmp_path):
    """The launcher's terminal closes: each worker is told SIGHUP once, and the launcher waits for them."""
    pty, fcntl, termios = (pytest.importorskip(name) for name in ("pty", "fcntl", "termios"))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "common.launch", "--backend", "jax", "--", sys.executable, "-c",
                             TOLD], stdin=slave, stdout=slave, stderr=slave, env={**os.environ,
                            "TOLD": str(tmp_path / "told-")}, start_new_session=True,
                            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # its controlling terminal
    os.close(slave)
    try:
        seen = b""
        while seen.count(b"ready") < 2:
            seen += os.read(master, 1024)
        os.close(master)  # the terminal closes: the kernel hangs it up and sends the launcher SIGHUP
        assert proc.wait(timeout=30) == 130  # the workers' status: they stopped on their own, not killed
    finally:
        launch.stop([proc])  # a failed check leaves nothing running
    told = sorted(tmp_path.glob("told-*"))
    assert [f.name for f in told] == ["told-0", "told-1"]
    assert [f.read_text() for f in told] == ["SIGHUP\n", "SIGHUP\n"]  # to silence themselves, once


def test_a_launch_without_a_command_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "common.launch", "--backend", "tf"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no command") and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("flags", "said"), [
    (["--port", "99999"], "argument --port: expected a port from 1 to 65535, got '99999'"),
    (["--port", "0"], "argument --port: expected a port from 1 to 65535, got '0'"),
    (["--port", "65535"], "--port 65535: this run needs 2 ports from it, past the last one (65535): pass --port "
                          "65534 or lower"),
    (["--processes", "0"], "argument --processes: expected a whole number of at least 1, got '0'"),
], ids=["past-65535", "zero", "the-last-but-two-needed", "no-processes"])
def test_a_port_or_count_that_cannot_be_is_one_line(flags, said):
    proc = subprocess.run([sys.executable, "-m", "common.launch", "--backend", "tf", *flags, "--", sys.executable,
                           "-c", "print('started')"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and said in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "started" not in proc.stdout


def test_processes_with_different_settings_all_stop():
    rank0 = {**HParams().to_dict(), "devices": 2}
    def replicas(rank: int, agreed: bool) -> Replicas:
        return Replicas("cpu", "cpu", True, count=2, rank=rank, processes=2, broadcast=lambda v: rank0,
                        agree=lambda flag: agreed)
    same_settings(replicas(0, False), HParams())  # the same: nothing said
    with pytest.raises(UserError, match="batch_size 32 here but 128 in process 0"):
        same_settings(replicas(1, True), HParams(batch_size=32))
    with pytest.raises(UserError, match="different settings"):
        same_settings(replicas(0, True), HParams())  # another process differed


def test_each_process_gets_an_equal_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert launch.threads(2) == {"OMP_NUM_THREADS": "2"} and launch.threads(8) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins, as with torchrun
    assert launch.threads(2) == {}


def test_without_an_affinity_every_core_counts(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delattr(launch.os, "sched_getaffinity")  # macOS and Windows have none
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 6)
    assert launch.cores() == 6 and launch.threads(2) == {"OMP_NUM_THREADS": "3"}


def test_windows_is_told_to_start_the_processes_by_hand(monkeypatch):
    monkeypatch.setattr(launch.os, "name", "nt")
    with pytest.raises(UserError, match="Windows lacks: on Windows start each process by hand"):
        launch.main(["--backend", "tf", "--", "python", "-m", "alexnet_tf.train"])
