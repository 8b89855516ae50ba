"""A backend run where its framework is missing or too old says so in one line, naming the extra."""

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from common import backends
from common.backends import BACKENDS, NAMES, unused_gpu


@pytest.mark.parametrize("name", NAMES)
def test_a_missing_framework_is_one_line_naming_the_extra(name):
    if importlib.util.find_spec(BACKENDS[name].imports[0]) is not None:
        pytest.skip(f"this environment has {BACKENDS[name].imports[0]} (the common session's has none)")
    proc = subprocess.run([sys.executable, "-m", f"alexnet_{name}.train", "--epochs", "1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    fix = backends.unsupported(name) or f"pip install '.[{BACKENDS[name].extra}]'"  # no build here: which machines
    assert proc.stderr.count("\n") == 1 and fix in proc.stderr, proc.stderr


def test_a_framework_too_old_is_named(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: object())  # as if installed
    assert "needs torch 2.4 or newer" in backends.problem("torch", version="2.1.2+cpu")
    assert "has 1.9.0" in backends.problem("mxnet", version="1.9.0", python=(3, 11))  # any Python running the tests
    assert backends.problem("torch", version="2.13.0+cpu") is None
    assert backends.problem("tf", version="2.21.0") is None


def test_a_python_too_new_for_mxnet_is_named_before_its_missing_framework(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)  # as on 3.12: the extra gave nothing
    found = backends.problem("mxnet", python=(3, 13))
    assert "runs on Python 3.11 or older" in found and "is Python 3.13" in found, found
    assert "make a venv with python3.11 and pip install '.[mxnet]' there" in found, found
    assert "does not have" in backends.problem("mxnet", python=(3, 11))  # 3.11: the framework is what is missing
    assert "does not have" in backends.problem("torch", python=(3, 13))  # the other backends run on 3.13


MACHINES = [("Linux", "x86_64"), ("Linux", "aarch64"), ("Darwin", "x86_64"), ("Darwin", "arm64"),
            ("Windows", "AMD64")]  # platform.system() and platform.machine() as each reports itself


def test_pyproject_extras_install_what_backends_py_says_runs():
    """The minimum release, and pip installs a framework on exactly the Pythons and machines it has builds for."""
    tomllib = pytest.importorskip("tomllib")
    with open(Path(__file__).resolve().parents[2] / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for backend in BACKENDS.values():
        requirements = [Requirement(req) for req in extras[backend.extra]]
        assert any(backend.minimum in str(req.specifier) for req in requirements), (backend.name, requirements)
        for (system, machine), python in itertools.product(MACHINES, ((3, 10), (3, 11), (3, 12), (3, 13))):
            env = {"platform_system": system, "platform_machine": machine, "python_version": f"{python[0]}.{python[1]}"}
            installs = [req.marker is None or req.marker.evaluate(env) for req in requirements]
            runs = backends.unsupported(backend.name, python, system, machine) is None
            assert installs == [runs] * len(requirements), (backend.name, system, machine, python)


def test_a_machine_without_a_build_is_named_before_its_python(monkeypatch):
    found = backends.unsupported("mxnet", (3, 13), "Windows", "AMD64")
    assert "has no mxnet build for Windows on AMD64" in found and "Linux x86_64, Linux aarch64, Darwin x86_64" in found
    assert "runs on Python 3.11 or older" in backends.unsupported("mxnet", (3, 13), "Linux", "x86_64")
    assert backends.unsupported("mxnet", (3, 11), "Darwin", "x86_64") is None
    assert all(backends.unsupported(name, (3, 13), "Windows", "AMD64") is None for name in ("torch", "tf", "jax"))
    monkeypatch.setattr(backends.platform, "system", lambda: "Darwin")  # an Apple silicon Mac, as the run sees it
    monkeypatch.setattr(backends.platform, "machine", lambda: "arm64")
    assert "has no mxnet build for Darwin on arm64" in backends.problem("mxnet", python=(3, 11))


@pytest.mark.parametrize("name", NAMES)
def test_a_gpu_the_framework_cannot_use_is_named_with_the_build_that_can(name, tmp_path, monkeypatch, nvidia_driver):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert unused_gpu(name) is None  # no NVIDIA driver: nothing to say
    monkeypatch.setenv("PATH", str(nvidia_driver))
    note = unused_gpu(name)
    backend = BACKENDS[name]
    assert note.startswith(f"this machine has an NVIDIA GPU, and {backend.title} here cannot use it")
    assert backend.gpu_build and backend.gpu_build in note and "--device cpu" in note
