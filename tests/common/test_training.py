"""The shared start and end of a run: the command that continues it, on any replicas; a stop before the loop."""

import numpy as np
import pytest

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
