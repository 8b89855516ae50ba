"""Too large for memory: refused in one line before a run starts, and each framework's own error said in one line."""

import os
import subprocess
import sys

import pytest

from common.errors import UserError, memory_ran_out, out_of_memory, run_cli
from common.memory import GB, check_memory, machine_bytes
from common.spec import evaluation_bytes, training_bytes

# Each framework's words when an allocation fails, as raised here (CPU) or as their GPUs say it.
SAID = [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 70368744177664 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
                 "1.06 GiB is free."),  # torch.OutOfMemoryError
    RuntimeError("{{function_node __wrapped__RandomUniform_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
                 "OOM when allocating tensor with shape[4194304,4194304] and type float on /job:localhost/replica:0/"
                 "task:0/device:CPU:0 by allocator mklcpu [Op:RandomUniform] name: "),  # tf ResourceExhaustedError
    RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 70368744177664 bytes."),  # JAX
    RuntimeError("Traceback (most recent call last):\n  File \"../src/storage/./pooled_storage_manager.h\", line 161"
                 "\nMXNetError: cudaMalloc retry failed: out of memory"),
    RuntimeError("Check failed: param_shape.Size() < (int64_t{1} << 31) - 1 (17592186044416 vs. 2147483647) : "
                 "[InitShape-input] Size of tensor you are trying to allocate is larger than 2^31 elements."),  # MXNet
    MemoryError("Unable to allocate 64.0 TiB for an array with shape (4194304, 4194304) and data type float32"),
]


def test_a_minibatch_needs_its_weights_gradients_and_every_layers_output():
    weights = 2 * 46_764_746 * 4
    assert training_bytes(224, 0) == weights
    per_image = training_bytes(224, 1) - weights
    assert training_bytes(224, 128) == weights + 128 * per_image
    assert 3.0e6 < per_image < 3.3e6  # the input (0.2 MB) and the 2.93 MB of activations python -m common.spec lists
    assert training_bytes(224, 1, "bfloat16") - weights == pytest.approx(0.2e6 + 2.93e6 / 2, rel=0.02)
    # A lower bound: every backend's peak RSS at 224 and batch 128 was 1,532 MiB or more (docs/results.md).
    assert training_bytes(224, 128) < 1532 * 2**20


def test_a_minibatch_that_cannot_fit_is_refused_in_one_line_before_anything_starts():
    check_memory(224, 128, "float32", on_cpu=True, available=int(8 * GB))
    with pytest.raises(UserError) as e:
        check_memory(224, 60_000, "float32", on_cpu=True, available=int(8 * GB))
    said = str(e.value)
    assert "a minibatch of 60,000 images at 224x224 needs at least 188.0 GB" in said and "\n" not in said
    assert "this machine has 8.0 GB: use a smaller --batch-size or --resize" in said
    assert "python -m common.spec --resize 224 --batch-size 60000" in said
    check_memory(224, 60_000, "float32", on_cpu=False, available=int(8 * GB))  # a GPU's framework says it itself
    need_fast = training_bytes(224, 4000, "bfloat16")
    check_memory(224, 4000, "bfloat16", on_cpu=True, available=need_fast)  # bf16 activations: half the bytes
    with pytest.raises(UserError):
        check_memory(224, 4000, "float32", on_cpu=True, available=need_fast)


def test_a_forward_pass_needs_its_weights_and_the_largest_layers_input_and_output():
    weights = 46_764_746 * 4  # no gradients
    assert evaluation_bytes(224, 0) == weights
    # The input on the host (0.2 MB), and the largest pair: conv1's output (96 x 54 x 54 float32) and pool1's.
    assert evaluation_bytes(224, 1) - weights == 224 * 224 * 4 + 96 * 54 * 54 * 4 + 96 * 26 * 26 * 4
    assert evaluation_bytes(224, 128) < training_bytes(224, 128)  # no gradients, and no layer kept for a backward pass


def test_a_forward_pass_that_cannot_fit_is_refused_in_one_line():
    check_memory(224, 128, "float32", on_cpu=True, available=int(1 * GB), training=False)
    with pytest.raises(UserError) as e:
        check_memory(224, 10_000, "float32", on_cpu=True, available=int(8 * GB), training=False)
    said = str(e.value)
    assert "a minibatch of 10,000 images at 224x224 needs at least 16.0 GB of memory for its forward pass" in said
    assert said.endswith("this machine has 8.0 GB: use a smaller --batch-size") and "\n" not in said


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="Windows has no sysconf: the check is left out there")
def test_this_machine_says_its_memory_or_its_containers_limit(tmp_path, monkeypatch):
    assert machine_bytes() > 1 * GB  # Linux and macOS
    limits = [tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"]
    monkeypatch.setattr("common.memory.CGROUP_LIMITS", limits)
    limits[0].write_text("max\n")  # cgroup v2 without a limit
    limits[1].write_text("9223372036854771712\n")  # v1's "none"
    assert machine_bytes() == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limits[0].write_text(f"{2 * 2**30}\n")  # a container of 2 GiB
    assert machine_bytes() == 2 * 2**30


@pytest.mark.parametrize("error", SAID, ids=["torch-cpu", "torch-cuda", "tf", "jax", "mxnet-cuda", "mxnet-2^31",
                                             "numpy"])
def test_each_frameworks_out_of_memory_error_is_said_in_one_line(error):
    assert out_of_memory(error)
    said = str(memory_ran_out(error, "; nothing was saved in runs/torch"))
    assert said.startswith(f"too large for memory ({type(error).__name__}: ") and "\n" not in said
    assert said.endswith("): use a smaller --batch-size or --resize; nothing was saved in runs/torch")
    assert len(said) < 260 and "{{" not in said and "enforce fail" not in said, said  # its words, not its noise


def test_other_errors_are_not_taken_for_memory():
    assert not out_of_memory(RuntimeError("Expected all tensors to be on the same device"))
    assert not out_of_memory(ValueError("shape mismatch"))


def test_a_command_whose_framework_runs_out_of_memory_says_so_in_one_line(capsys):
    def main():
        raise SAID[1]

    with pytest.raises(SystemExit) as e:
        run_cli(main)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: too large for memory (RuntimeError: CUDA out of memory. ")
    assert err.count("\n") == 1
    with pytest.raises(RuntimeError, match="same device"):  # any other error keeps its traceback: a bug to report
        run_cli(lambda: (_ for _ in ()).throw(RuntimeError("Expected all tensors to be on the same device")))


def test_the_spec_says_what_a_minibatch_keeps_in_training_and_in_its_forward_pass():
    out = subprocess.run([sys.executable, "-m", "common.spec", "--batch-size", "256"], capture_output=True,
                         text=True, check=True).stdout
    assert "training a minibatch of 256 keeps at least 1.17GB: 374.12MB of weights and gradients" in out
    assert "its forward pass alone (predict) at least 591.55MB: the weights, and each image's input" in out
