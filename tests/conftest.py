"""Shared fixtures: the backend under test (`--backend NAME`, a name from common.backends) and tiny IDX data."""

import importlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from common import launch
from common.backends import BACKENDS, NAMES, Backend
from tests.synthetic import write_dataset


def pytest_configure(config: pytest.Config) -> None:
    """Each pytest-xdist worker's framework gets an equal share of the cores, as each process of a run does.

    Two workers whose OpenMP pools both took every core spun against each other: the test that trains longest
    took 95 s instead of 38 in PyTorch, 58 instead of 47 in MXNet (docs/results.md: CI time).
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")  # set in each worker, before its first framework import
    if workers:
        os.environ.update(launch.threads(int(workers)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=NAMES, default=os.environ.get("ALEXNET_BACKEND"),
                     help="the backend that tests/backend run against")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The backend's short name; tests/backend are skipped without --backend."""
    name = request.config.getoption("--backend")
    if name is None:
        pytest.skip(f"tests/backend need --backend {'|'.join(NAMES)}")
    return name


@pytest.fixture(scope="session")
def can(backend: str) -> Backend:
    """What the backend under test can do (common.backends): tests skip by capability, not by name."""
    return BACKENDS[backend]


@pytest.fixture(scope="session")
def fw(backend: str) -> SimpleNamespace:
    """The backend's modules: model, data, step, train."""
    return SimpleNamespace(**{m: importlib.import_module(f"alexnet_{backend}.{m}")
                              for m in ("model", "data", "step", "train")})


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """A directory with 256 training and 64 test generated images as IDX files."""
    return write_dataset(tmp_path / "data")


@pytest.fixture
def nvidia_driver(tmp_path: Path) -> Path:
    """A directory holding a stand-in `nvidia-smi`, the program an NVIDIA driver installs (put it on the PATH)."""
    smi = tmp_path / "nvidia-driver" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\n", encoding="utf-8")
    smi.chmod(0o755)
    return smi.parent


@pytest.fixture(autouse=True)
def _no_real_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never find or download the real dataset by accident."""
    monkeypatch.delenv("ALEXNET_DATA", raising=False)
    monkeypatch.setenv("ALEXNET_MIRROR", "http://127.0.0.1:9/")  # the discard port: refused at once
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("common.fashion_mnist.SYSTEM_DIR", tmp_path / "no-system-data")
