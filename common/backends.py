"""The one list of backends and what each can do; everything outside the backends reads it.

Adding a backend is a folder `alexnet_<name>/` mirroring the others plus one entry here: the tests,
the noxfile's sessions, the side-by-side page and the parity and docs checks all take the list from here.
"""

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
    bf16: bool  # whether --fast computes in bfloat16 (else the fast path keeps float32)
    profile_table: bool  # whether bench --profile prints a table of ops (else only a trace)
    launcher: str  # how --devices N starts: "torchrun" (a process per replica) or "in-process"

    @property
    def package(self) -> str:
        """The backend's Python package."""
        return f"alexnet_{self.name}"


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("torch", "PyTorch", ("torch",), "torch", ("torch==2.13.0",), "NCHW",
            bf16=True, profile_table=True, launcher="torchrun"),
    Backend("tf", "TensorFlow (Keras 3)", ("tensorflow", "keras"), "tf", ("tensorflow-cpu>=2.16",), "NHWC",
            bf16=True, profile_table=False, launcher="in-process"),
    Backend("mxnet", "MXNet (Gluon)", ("mxnet",), "mxnet", (), "NCHW",
            bf16=False, profile_table=True, launcher="in-process"),
)}
NAMES = tuple(BACKENDS)
FRAMEWORKS = frozenset(m for b in BACKENDS.values() for m in b.imports)  # common/ imports none of them
