"""The shared start and end of a run: the command that continues it, on any replicas; a stop before the loop."""

import numpy as np
import pytest

from common.errors import UserError
from common.replicas import Replicas, broadcast_json
from common.run import Interrupted
from common.training import Hooks, main, resume_command
from tests.synthetic import write_dataset


def test_the_resume_command_relaunches_the_same_replicas():
    one = Replicas("cpu", "cpu", on_cpu=True)
    assert resume_command("tf", one) == "python -m alexnet_tf.train"
    ddp = Replicas("cpu", "cpu x2 (DDP)", on_cpu=True, count=2, rank=0, processes=2)
    assert resume_command("torch", ddp) == \
        "torchrun --standalone --nproc-per-node 2 -m alexnet_torch.train --devices 2"
    mirrored = Replicas("/CPU:0", "/CPU:0+/CPU:1", on_cpu=True, count=2)
    assert resume_command("tf", mirrored) == "python -m alexnet_tf.train --devices 2"
    workers = Replicas("/CPU:0", "/CPU:0+/CPU:1", on_cpu=True, count=2, rank=0, processes=2)
    assert resume_command("tf", workers) == \
        "python -m common.launch --backend tf --processes 2 -- python -m alexnet_tf.train --devices 2"


def hooks_that_build(build, on_cpu: bool = True) -> Hooks:
    """A backend whose network is built by `build`, and which is never asked for anything else."""
    unused = dict.fromkeys(("load_data", "make_step", "train", "load_checkpoint", "probe_speed", "get_weights",
                            "set_weights", "preprocess", "predict", "describe"))
    return Hooks("torch", "pt", lambda devices, device: Replicas("cpu", "cpu", on_cpu=on_cpu), build, **unused)


def test_a_stop_before_the_loop_says_what_was_kept(tmp_path):
    def stopped(*args):
        raise KeyboardInterrupt  # Ctrl-C while the network is built, resumed or timed (seconds at 224 on a CPU)

    out = tmp_path / "run"
    with pytest.raises(Interrupted, match=f"interrupted before the first checkpoint, so nothing was saved in {out}; "
                                          f"run the same command again"):
        main(hooks_that_build(stopped), ["--data-dir", str(write_dataset(tmp_path / "data")), "--out", str(out),
                                         "--resize", "67"])


def test_a_bad_connect_timeout_is_refused_before_the_run_not_at_its_end(tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("the run started")

    monkeypatch.setenv("ALEXNET_CONNECT_TIMEOUT", "2 minutes")  # read when the processes leave together
    with pytest.raises(UserError, match="ALEXNET_CONNECT_TIMEOUT='2 minutes'"):
        main(hooks_that_build(never), ["--data-dir", str(write_dataset(tmp_path / "data")), "--out",
                                       str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_a_run_too_large_for_memory_is_refused_before_it_starts_or_said_in_one_line(tmp_path, monkeypatch):
    def cuda_ran_out(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB")

    argv = ["--data-dir", str(write_dataset(tmp_path / "data")), "--out", str(tmp_path / "run"), "--resize", "67"]
    monkeypatch.setattr("common.memory.machine_bytes", lambda: 100_000_000)  # 0.1 GB: the weights alone are 0.17
    with pytest.raises(UserError, match="a minibatch of 256 images at 67x67 needs at least 0.2 GB .* this machine "
                                        "has 0.1 GB: use a smaller --batch-size or --resize"):
        main(hooks_that_build(cuda_ran_out), [*argv, "--batch-size", "1000"])  # the data holds 256 training images
    assert not (tmp_path / "run").exists()  # refused before anything was made
    with pytest.raises(UserError, match=r"^too large for memory \(RuntimeError: CUDA out of memory. Tried to allocate "
                                        r"2.00 GiB.*\): use a smaller --batch-size or --resize; nothing was saved in "):
        main(hooks_that_build(cuda_ran_out, on_cpu=False), argv)  # a GPU's memory: the framework says when it runs out


@pytest.mark.parametrize("block", [1, 1024])
@pytest.mark.parametrize("own", [None, {"note": "a much longer value than the main process holds, here"}])
def test_broadcast_json_gives_every_process_the_main_ones_value(block, own):
    main_value = {"lr": 0.01, "data_dir": "/données", "epochs": [1, 2]}
    sent = []  # what the main process's collective calls carry: its length, then its bytes

    def on_main(x: np.ndarray) -> np.ndarray:
        sent.append(x.copy())
        return x

    assert broadcast_json(main_value, on_main, block) == main_value
    calls = iter(sent)

    def on_another(x: np.ndarray) -> np.ndarray:  # the collective: the main process's array, the same shape
        main = next(calls)
        assert x.shape == main.shape
        return main

    assert broadcast_json(own, on_another, block) == main_value
    assert len(sent[1]) % block == 0
