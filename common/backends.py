"""The one list of backends and what each can do; everything outside the backends reads it.

Adding a backend is a folder `alexnet_<name>/` mirroring the others plus one entry here: the tests,
the noxfile's sessions, the side-by-side page and the parity and docs checks all take the list from here.
"""

import importlib.metadata
import importlib.util
import platform
import re
import shutil
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """One framework tab of the book, and the capabilities the shared tests and tools ask about."""

    name: str  # the short name: alexnet_<name>, runs/<name>, --backend <name>
    title: str  # as a page or table heads its column
    imports: tuple[str, ...]  # the top-level modules of its framework (common/ imports none of them)
    extra: str  # the pyproject.toml extra that installs it
    ci_install: tuple[str, ...]  # what nox installs for it besides the project (CPU builds)
    layout: str  # the network's own activation layout: "NCHW" or "NHWC"
    bf16: bool  # whether --fast computes in bfloat16 on a CPU with bf16 instructions (else it keeps float32 there)
    profile_table: bool  # whether bench --profile prints a table of ops (else only a trace)
    launcher: str  # what starts several processes: its framework's launcher, or common.launch (the variables it reads)
    in_process: bool  # whether one process can drive several replicas (else one process per replica)
    minimum: str = "0"  # the oldest release of its framework the code runs on (pyproject's extra says the same)
    gpu_bf16: bool = True  # whether --fast computes in bfloat16 on a GPU (common/precision.py decides per device)
    newest_python: str = ""  # the newest Python its framework installs on, "" for any (pyproject's extra says the same)
    gpu_build: str = ""  # how to get a build of its framework that uses an NVIDIA GPU, for a run that found none
    platforms: tuple[tuple[str, str], ...] = ()  # (system, machine) its framework has builds for, () for any

    @property
    def package(self) -> str:
        """The backend's Python package."""
        return f"alexnet_{self.name}"


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch", ("torch",), "torch", ("torch==2.13.0",), "NCHW",
            bf16=True, profile_table=True, launcher="torchrun", in_process=False, minimum="2.4",
            gpu_build="install PyTorch's CUDA build, as pytorch.org's install selector gives it"),
    Backend("tf", "TensorFlow (Keras 3)", ("tensorflow", "keras"), "tf", ("tensorflow-cpu>=2.16",), "NHWC",
            bf16=True, profile_table=False, launcher="common.launch", in_process=True, minimum="2.16",
            gpu_build="pip install 'tensorflow[and-cuda]' on Linux (on Windows, in WSL2)"),
    Backend("mxnet", "MXNet (Gluon)", ("mxnet",), "mxnet", (), "NCHW",
            bf16=False, profile_table=True, launcher="common.launch", in_process=True, minimum="1.9.1",
            gpu_bf16=False, newest_python="3.11",  # its numpy<1.24 has no wheels for 3.12 and cannot be built there
            gpu_build="pip install mxnet-cu112==1.9.1 in place of mxnet (Linux, with CUDA 11.2)",
            platforms=(("Linux", "x86_64"), ("Linux", "aarch64"), ("Darwin", "x86_64"))),  # none for Windows
    Backend("jax", "JAX (Flax NNX)", ("jax", "flax", "optax"), "jax", ("jax>=0.10", "flax>=0.12", "optax>=0.2.5"),
            "NHWC", bf16=False, profile_table=False, launcher="common.launch", in_process=True, minimum="0.10",
            gpu_build="pip install -U 'jax[cuda12]' on Linux (on Windows, in WSL2)"),
)}
NAMES = tuple(BACKENDS)
FRAMEWORKS = frozenset(m for b in BACKENDS.values() for m in b.imports)  # common/ imports none of them


def _release(version: str) -> tuple[int, ...]:
    """A version's release numbers: '2.13.0+cpu' -> (2, 13, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_version(module: str) -> str | None:
    """The installed version of the distribution that provides `module` (torch, tensorflow-cpu, ...)."""
    for dist in importlib.metadata.packages_distributions().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def unsupported(name: str, python: tuple[int, int] | None = None, system: str | None = None,
                machine: str | None = None) -> str | None:
    """Why a backend's framework has no build for this machine or this Python (so pip installs none), or None."""
    backend = BACKENDS[name]
    python = python or sys.version_info[:2]
    here = (system or platform.system(), machine or platform.machine())
    if backend.platforms and here not in backend.platforms:
        builds = ", ".join(f"{s} {m}" for s, m in backend.platforms)
        return (f"the {backend.title} backend has no {backend.imports[0]} build for {here[0]} on {here[1]}: there "
                f"are builds for {builds} only, so use one of those (Windows: WSL2 runs Linux; README: The backends)")
    if backend.newest_python and python > _release(backend.newest_python):
        return (f"the {backend.title} backend runs on Python {backend.newest_python} or older, and {sys.executable} "
                f"is Python {python[0]}.{python[1]}: make a venv with python{backend.newest_python} and "
                f"pip install '.[{backend.extra}]' there (README: The backends)")
    return None


def problem(name: str, version: str | None = None, python: tuple[int, int] | None = None) -> str | None:
    """Why this Python cannot run a backend (no build for it here, its framework missing or too old), or None."""
    backend = BACKENDS[name]
    found = unsupported(name, python)
    if found:
        return found
    fix = f"pip install '.[{backend.extra}]' in this environment (README: The backends), or use the one that has it"
    missing = [m for m in backend.imports if importlib.util.find_spec(m) is None]
    if missing:
        return f"the {backend.title} backend needs {missing[0]}, which {sys.executable} does not have: {fix}"
    version = version or installed_version(backend.imports[0])
    if version and _release(version) < _release(backend.minimum):
        return (f"the {backend.title} backend needs {backend.imports[0]} {backend.minimum} or newer, and "
                f"{sys.executable} has {version}: {fix}")
    return None


def unused_gpu(name: str) -> str | None:
    """Why a run that looked for a GPU is on the CPU where this machine has an NVIDIA one (its driver's nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    backend = BACKENDS[name]
    return (f"this machine has an NVIDIA GPU, and {backend.title} here cannot use it (a CPU build, or a driver it "
            f"does not match), so this run is on the CPU: {backend.gpu_build} (--device cpu trains on the CPU "
            f"without this note)")


def require(name: str) -> None:
    """Stop with one line naming the extra to install when this Python cannot run the backend."""
    found = problem(name)
    if found:
        print(f"error: {found}", file=sys.stderr)
        raise SystemExit(2)
