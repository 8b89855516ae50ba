"""The shared start and end of a run: the command that continues it, on any replicas; a stop before the loop."""

import pytest

from common.replicas import Replicas
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


def test_a_stop_before_the_loop_says_what_was_kept(tmp_path):
    def stopped(*args):
        raise KeyboardInterrupt  # Ctrl-C while the network is built, resumed or timed (seconds at 224 on a CPU)

    unused = dict.fromkeys(("load_data", "make_step", "train", "load_checkpoint", "probe_speed", "get_weights",
                            "set_weights", "preprocess", "predict", "describe"))
    hooks = Hooks("torch", "pt", lambda devices, device: Replicas("cpu", "cpu", on_cpu=True), stopped, **unused)
    out = tmp_path / "run"
    with pytest.raises(Interrupted, match=f"interrupted before the first checkpoint, so nothing was saved in {out}; "
                                          f"run the same command again"):
        main(hooks, ["--data-dir", str(write_dataset(tmp_path / "data")), "--out", str(out), "--resize", "67"])
