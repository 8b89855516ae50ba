"""Several training processes on this machine, each started the way its framework expects.

    PyTorch     torchrun (its own launcher): RANK, WORLD_SIZE, MASTER_ADDR, ... per process
    MXNet       DMLC_* roles: a scheduler, servers and workers (its tools/launch.py fails on Python 3.9+)
    TensorFlow  no launcher of its own: TF_CONFIG per worker (the cluster and this worker's index)
    JAX         no launcher of its own: the coordinator's address, the process count and this id

For the last three, `python -m common.launch --backend tf --processes 2 -- python -m alexnet_tf.train
--devices 2` starts the command once per process with the variables its framework reads, on the
loopback address with free ports; it stops them all when one fails, and passes Ctrl-C (SIGTERM, or
SIGHUP as a terminal closes) on to every worker once, so that they stop together after the same
minibatch. On several machines, start one process per machine with the same variables by hand
(README: Several devices).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from common.errors import (
    MAX_PORT,
    STOP_SIGNALS,
    Parser,
    UserError,
    port_number,
    positive_float,
    positive_int,
    run_cli,
    silence_if_hung_up,
)

HOST = "127.0.0.1"  # the loopback address: a try on one machine, and the tests
GRACE_S = 10.0  # how long the others get to stop after one process failed, before they are killed
STALL = 10  # a wait on a process that is alive but busy alone (rank 0 evaluating) allows this many connect timeouts


def connect_timeout() -> float:
    """Seconds a process waits for the others to join (ALEXNET_CONNECT_TIMEOUT, default 120)."""
    text = os.environ.get("ALEXNET_CONNECT_TIMEOUT", "120")
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise UserError(f"ALEXNET_CONNECT_TIMEOUT={text!r}: set it to the seconds a process waits for the others, "
                        f"a number above 0, or unset it (120)") from None


def stall_timeout() -> float:
    """Seconds a process waits for another that works alone, such as rank 0 evaluating a finished run."""
    return STALL * connect_timeout()


@contextmanager
def bounded(message: str, seconds: float | None = None) -> Iterator[None]:
    """Stop this process with `error: message` if the block, a wait on the other processes, outlasts `seconds`.

    The default is connect_timeout(); the main thread is then stuck in (or about to be aborted by) C++.
    """

    def give_up() -> None:  # from the timer's thread: one line, then out at once
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(UserError.exit_code)

    timer = threading.Timer(connect_timeout() if seconds is None else seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# ---- What each framework reads ----


def tf_environment(rank: int, processes: int, ports: list[int]) -> dict[str, str]:
    """TensorFlow's TF_CONFIG: every worker's address, and which one this process is (0 is the chief)."""
    cluster = {"worker": [f"{HOST}:{port}" for port in ports[:processes]]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})}


def jax_environment(rank: int, processes: int, ports: list[int]) -> dict[str, str]:
    """jax.distributed.initialize's arguments: the coordinator (process 0) and this process's place."""
    return {"JAX_COORDINATOR_ADDRESS": f"{HOST}:{ports[0]}", "JAX_NUM_PROCESSES": str(processes),
            "JAX_PROCESS_ID": str(rank)}


def _dmlc(role: str, task: int, processes: int, ports: list[int]) -> dict[str, str]:
    """One of MXNet's parameter-server roles: the scheduler's address, how many of each, and this one's role."""
    return {"DMLC_PS_ROOT_URI": HOST, "DMLC_PS_ROOT_PORT": str(ports[0]), "DMLC_NUM_WORKER": str(processes),
            "DMLC_NUM_SERVER": str(processes), "DMLC_NODE_HOST": HOST, "DMLC_ROLE": role, "DMLC_TASK_ID": str(task)}


def mxnet_environment(rank: int, processes: int, ports: list[int]) -> dict[str, str]:
    """MXNet's dist_sync kvstore: a worker's DMLC_* variables (the scheduler listens on the first port)."""
    return _dmlc("worker", rank, processes, ports)


def mxnet_helpers(processes: int, ports: list[int]) -> list[dict[str, str]]:
    """The processes that serve MXNet's workers: the scheduler and one server per worker."""
    return [_dmlc("scheduler", 0, processes, ports), *(_dmlc("server", i, processes, ports) for i in range(processes))]


ENVIRONMENTS = {"tf": tf_environment, "jax": jax_environment, "mxnet": mxnet_environment}
HELPERS = {"mxnet": mxnet_helpers}  # processes besides the workers, which Ctrl-C leaves to stop after them
PORTS = {"tf": lambda processes: processes, "jax": lambda processes: 1, "mxnet": lambda processes: 1}


# ---- The command that starts a run ----


def prefix(backend: str, devices: int, processes: int, module: str, python: str = "python") -> list[str]:
    """The command (before the run's flags) that trains `module` on `devices` replicas in `processes` processes."""
    if backend == "torch" and devices > 1:  # one process per replica, always
        return ["torchrun", "--standalone", "--nproc-per-node", str(devices), "-m", module] if python == "python" \
            else [python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(devices), "-m", module]
    if processes == 1:
        return [python, "-m", module]
    return [python, "-m", "common.launch", "--backend", backend, "--processes", str(processes), "--",
            python, "-m", module]


# ---- Starting, watching and stopping the processes ----


def free_ports(count: int, first: int | None = None) -> list[int]:
    """`count` ports free on the loopback address: `first` and those after it, or any the OS picks."""
    if first is not None:
        ports = list(range(first, first + count))
        if ports[-1] > MAX_PORT:
            raise UserError(f"--port {first}: this run needs {count} ports from it, past the last one ({MAX_PORT}): "
                            f"pass --port {MAX_PORT - count + 1} or lower, or none to let the system pick free ones")
        for port in ports:
            with socket.socket() as s:
                try:
                    s.bind((HOST, port))
                except OSError:
                    raise UserError(f"port {port} on {HOST} is in use: pass another --port, or none "
                                    f"to let the system pick free ones") from None
        return ports
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cores() -> int:
    """The CPU cores this process may run on: its affinity where the OS keeps one (Linux), else all of them."""
    if hasattr(os, "sched_getaffinity"):  # not on macOS or Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads(processes: int) -> dict[str, str]:
    """An equal share of this machine's cores for each process's OpenMP pool (as torchrun sets), unless set."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cores() // processes))}


def start(backend: str, processes: int, command: list[str], port: int | None = None) -> Iterator[subprocess.Popen]:
    """Start `command` once per process (the workers), then the framework's helpers, each in its own session."""
    ports = free_ports(PORTS[backend](processes), port)
    share = threads(processes)
    for rank in range(processes):
        yield subprocess.Popen(command, env={**os.environ, **share, **ENVIRONMENTS[backend](rank, processes, ports)},
                               start_new_session=True)  # a terminal's Ctrl-C reaches them through us, once
    for env in HELPERS.get(backend, lambda *a: [])(processes, ports):
        yield subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)


class Forward:
    """Ctrl-C, SIGTERM and SIGHUP, passed on to every worker once each (the helpers stop after them)."""

    def __init__(self, workers: int):
        self.workers, self.procs = workers, []
        self.asked: list[int] = []  # the signals passed on: the workers then stop on their own, with status 130
        self.told: Counter[int] = Counter()  # how many of them each worker (by pid) has been sent

    def __call__(self, signum: int | None = None, frame: object = None) -> None:
        """Pass a signal on, and any earlier one to a worker started after it came."""
        if signum is not None:
            silence_if_hung_up(signum)  # the terminal is gone: say nothing from now on, and tell the workers so
            self.asked.append(signum if signum == getattr(signal, "SIGHUP", None) else signal.SIGINT)
        for p in self.procs[:self.workers]:
            while self.told[p.pid] < len(self.asked) and p.poll() is None:
                p.send_signal(self.asked[self.told[p.pid]])
                self.told[p.pid] += 1


def run(backend: str, processes: int, command: list[str], port: int | None = None) -> int:
    """Start the processes and wait for them all, passing Ctrl-C on from before the first one starts."""
    forward = Forward(processes)
    old = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        for p in start(backend, processes, command, port):
            forward.procs.append(p)
            forward()  # a Ctrl-C that came while this one was starting
        return watch(forward)
    except BaseException:  # none is left running on its own
        stop(forward.procs)
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def watch(forward: Forward) -> int:
    """Wait for every process; when one fails unasked, stop the others (SIGTERM, then SIGKILL).

    Returns the first failure's exit status, or 0."""
    procs = forward.procs
    while True:
        codes = [p.poll() for p in procs]
        failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
        if failed and not forward.asked:
            rank, code = failed[0]
            if any(c is None for c in codes):
                print(f"error: process {rank} of {len(procs)} stopped (exit status {code}): stopping the others",
                      file=sys.stderr)
            stop(procs)
            return code
        if all(c is not None for c in codes):
            return next((c for c in codes if c), 0)
        time.sleep(0.1)


def stop(procs: list[subprocess.Popen]) -> None:
    """Ask the processes still running to stop (SIGTERM: they checkpoint), and kill those that do not in time."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: list[str] | None = None) -> None:
    """Start a command in several processes on this machine and wait for them all."""
    p = Parser(prog="python -m common.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=sorted(ENVIRONMENTS), required=True, help="whose variables to set")
    p.add_argument("--processes", type=positive_int, default=2, help="how many processes to start (default: 2)")
    p.add_argument("--port", type=port_number, default=None, help="the first port to use (default: free ones)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command each process runs")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError("no command to start: add -- python -m alexnet_<backend>.train --devices N ...")
    if os.name == "nt":
        raise UserError("common.launch passes Ctrl-C on with POSIX signals, which Windows lacks: on Windows start each "
                        "process by hand with its framework's variables (README: Several devices)")
    sys.exit(run(args.backend, args.processes, command, args.port))


if __name__ == "__main__":
    run_cli(main)
