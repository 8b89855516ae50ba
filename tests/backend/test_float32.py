"""The book's float32 on a GPU: picking one turns TF32 off, checked on a CPU by making the framework see a GPU."""

import os
import subprocess
import sys
import textwrap

import pytest

# Each framework made to report a GPU (it is never used: only the settings that come with picking one are read).
SEE_A_GPU = {
    "torch": "torch.cuda.is_available = lambda: True",
    "tf": "tf.config.list_physical_devices = lambda kind=None: ['a GPU']",
    "mxnet": "mx.context.num_gpus = lambda: 1  # then its first array there fails on a CPU build: the CPU",
    "jax": "jax.devices = lambda *a: [types.SimpleNamespace(platform='gpu', id=0)]",
}

# Whether the framework would compute float32 convolutions and matrix products in TF32 on an Ampere or later GPU.
TF32 = {
    "torch": "torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32",
    "tf": "tf.config.experimental.tensor_float_32_execution_enabled()",
    "mxnet": "os.environ.get('NVIDIA_TF32_OVERRIDE') != '0'",
    # the network's program as XLA gets it: every convolution and matrix product at full precision, or not
    "jax": "lowered(alexnet(67)).count('HIGHEST') < 16",  # 5 convolutions and 3 dense layers, 2 operands each
}

PROGRAM = """
import os, types
import numpy as np
from alexnet_{backend} import step
from alexnet_{backend}.model import alexnet
import {module}
{alias}

def lowered(net):  # JAX: the forward pass as XLA receives it
    from flax import nnx
    graphdef, state = nnx.split(net)
    X = np.zeros((1, 67, 67, 1), np.float32)
    return jax.jit(lambda state, X: nnx.merge(graphdef, state)(X)).lower(state, X).as_text()

print("before", bool({tf32}))
{see_a_gpu}
step.get_device("auto")
print("after", bool({tf32}))
"""

ALIASES = {"torch": ("torch", ""), "tf": ("tensorflow", "tf = tensorflow"), "mxnet": ("mxnet", "mx = mxnet"),
           "jax": ("jax", "")}


def test_picking_a_gpu_turns_tf32_off(backend):
    module, alias = ALIASES[backend]
    code = PROGRAM.format(backend=backend, module=module, alias=alias, tf32=TF32[backend],
                          see_a_gpu=SEE_A_GPU[backend])
    env = {k: v for k, v in os.environ.items() if k != "NVIDIA_TF32_OVERRIDE"}  # NVIDIA's own, as MXNet uses it
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split()
    assert lines[-4:] == ["before", "True", "after", "False"], proc.stdout  # each framework's default is TF32


def test_the_gpu_machine_check_runs(backend):
    if backend == "mxnet":
        pytest.skip("MXNet's TF32 switch is read as NVIDIA's libraries start: the check cannot turn it back on")
    proc = subprocess.run([sys.executable, "-m", "tests.tf32_check", backend], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{backend} on ") and line.endswith("with the framework's default"), line
    if " on cpu" in line.lower() or "/CPU" in line:  # no GPU here: the CPU against itself
        assert "0.0e+00 with TF32 off, 0.0e+00 with the framework's default" in line, line


def test_jax_fast_path_keeps_xlas_default_precision(backend):
    if backend != "jax":
        pytest.skip("JAX's precision setting reaches bf16 products too; the other frameworks' switches are float32's")
    code = PROGRAM.format(backend=backend, module="jax", alias="", tf32=TF32[backend], see_a_gpu=SEE_A_GPU[backend])
    code += "program = lowered(step.fast_path(alexnet(67), jax.devices()[0]))\n"
    code += "print('fast', program.count('HIGHEST'), program.count('DEFAULT'), 'bf16>' in program)\n"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-4:] == ["fast", "0", "16", "True"], proc.stdout  # bf16, at XLA's default
