"""The shared start and end of a run: the command that continues a stopped run, on any replicas."""

from common.replicas import Replicas
from common.training import resume_command


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
