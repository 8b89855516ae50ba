"""Sessions, one virtual environment per backend (MXNet needs numpy<1.24, so they cannot share one).

Default (what CI runs): lint, common, side_by_side (the teaching page, checked in headless
Chromium), backend (one per backend: `nox -s "backend(torch)"` runs one), compare_shapes, parity, export.
Heavy, on demand: converge and bench (see their docstrings for what they need).
The backends and what each installs come from one list, common/backends.py.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the project's own framework-free list
from common.backends import BACKENDS, NAMES, unsupported

nox.options.sessions = ["lint", "common", "side_by_side", "backend", "compare_shapes", "parity", "export"]
nox.options.error_on_missing_interpreters = True
EXCHANGE = Path(".nox") / "_exchange"  # framework-free files passed between the venvs
JAX_CACHE = Path(".nox") / "_jax_cache"  # XLA executables that the JAX suite's processes share


def installs(backend: str) -> list[list[str]]:
    """The pip installs that make a backend's venv: a CPU build of its framework, then the project.

    NOX_TORCH names another PyTorch requirement; NOX_TORCH_INDEX (NOX_<NAME>_INDEX) the index it comes
    from, for example PyTorch's CPU wheel index on a CPU-only Linux machine (the README's first commands), where
    PyPI's torch is a CUDA build of several GB. A user installs the extra instead: pip install ".[torch]".
    """
    ci = [os.environ.get("NOX_TORCH", req) if req.startswith("torch==") else req
          for req in BACKENDS[backend].ci_install]
    index = os.environ.get(f"NOX_{backend.upper()}_INDEX")
    framework = [[*ci, *(["--index-url", index] if index else [])]] if ci else []
    tests = "test,export" if backend == "torch" else "test"  # the ONNX export is PyTorch's (alexnet_torch.export)
    project = "-e", f".[{tests}]" if ci else f".[{BACKENDS[backend].extra},{tests}]"  # the extra brings the framework
    return [*framework, list(project)]


def here(session: nox.Session) -> list[str]:
    """The backends whose frameworks install with this Python on this machine; says which are left out and why."""
    reasons = {name: unsupported(name) for name in NAMES}
    for name, why in reasons.items():
        if why:
            session.warn(f"{name} left out: {why}")
    return [name for name, why in reasons.items() if not why]


def backend_python(session: nox.Session, backend: str) -> str:
    """The Python of a backend's venv (the backend session's), made like it when missing."""
    venv = Path(".nox") / f"backend-{backend}"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        for args in installs(backend):
            session.run(str(python), "-m", "pip", "install", "-q", *args, external=True)
    return str(python.absolute())  # not resolve(): the venv python is a symlink to the base one


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def common(session: nox.Session) -> None:
    """The framework-free tests (common/, data files, CLI, runs, weights, comparisons)."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/common", *session.posargs)


@nox.session
def side_by_side(session: nox.Session) -> None:
    """Regenerate docs/side_by_side.html and check it in headless Chromium (Debian: apt-get install
    chromium; without it the browser tests are skipped, saying so). The screenshots land in
    .nox/_exchange/side_by_side/. CI's `common` session has already failed if the committed page was stale."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "common.side_by_side", "--out", "docs/side_by_side.html")
    session.run("pytest", "tests/page", *session.posargs,
                env={"SIDE_BY_SIDE_SHOTS": str((EXCHANGE / "side_by_side").absolute())})


@nox.session
@nox.parametrize("name", NAMES, ids=NAMES)
def backend(session: nox.Session, name: str) -> None:
    """The shared backend tests against one backend, in its own venv (CPU builds), in two pytest workers.

    Most tests start processes and wait on their imports, so two workers took TensorFlow's suite from
    356 to 228 s on 2 cores (docs/results.md: CI); each worker's frameworks get half the cores (tests/conftest.py).
    `nox -s "backend(torch)" -- -n 0` runs them in one.
    """
    if why := unsupported(name):
        session.skip(why)
    for args in installs(name):
        session.install(*args)
    session.run("pytest", "tests/backend", "--backend", name, "-n", "2", *session.posargs, env=suite_env(name))


def suite_env(backend: str) -> dict[str, str]:
    """Environment for a backend's tests: JAX's processes share one compile cache, emptied each run.

    Its tests start dozens of processes that compile the same steps: sharing them took the four
    files that start most (cli, faults, parallel, processes) from 480 to 359 s on 2 cores
    (docs/results.md). A hit is the executable the same program compiles to, so no result changes.
    """
    if backend != "jax":
        return {}
    shutil.rmtree(JAX_CACHE, ignore_errors=True)
    return {"JAX_COMPILATION_CACHE_DIR": str(JAX_CACHE.absolute()), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@nox.session
def compare_shapes(session: nox.Session) -> None:
    """Each backend reports its layer shapes in its own venv; one table beside the spec, exit 1 on a difference."""
    session.install("-e", ".")
    out = EXCHANGE / "shapes"
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for backend in here(session):
        python = backend_python(session, backend)
        for resize in (224, 100, 67):
            proc = subprocess.run([python, "-m", f"alexnet_{backend}.model", "--json", "--resize", str(resize)],
                                  capture_output=True, text=True)
            if proc.returncode:
                session.error(f"{backend} could not report its shapes at {resize}: {proc.stderr.strip()}")
            path = out / f"{backend}-{resize}.json"
            path.write_text(json.dumps(json.loads(proc.stdout)))
            reports.append(str(path))
    session.run("python", "-m", "common.shapes", *reports)


@nox.session
def parity(session: nox.Session) -> None:
    """Same weights, same batch: resized pixels, logits, loss and one SGD step agree across backends,
    and weights trained briefly in each backend give the same test accuracy in all of them."""
    session.install("-e", ".[test]")
    work = EXCHANGE / "parity"
    session.run("python", "-c", f"import shutil; shutil.rmtree({str(work)!r}, ignore_errors=True)")
    session.run("python", "-m", "tests.parity_check", "make", "--dir", str(work))
    pythons = {backend: backend_python(session, backend) for backend in here(session)}
    for backend, python in pythons.items():
        for resize in (224, 67):
            session.run(python, "-m", "tests.parity_worker", "step", "--backend", backend, "--resize",
                        str(resize), "--case", str(work / f"case-{resize}.safetensors"),
                        "--out", str(work / f"{backend}-{resize}.safetensors"), external=True)
        session.run(python, "-m", f"alexnet_{backend}.train", "--data-dir", str(work / "data"),
                    "--resize", "67", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
                    "--out", str(work / f"train-{backend}"), "--no-progress", external=True)
    weights = [str(work / f"train-{trainer}" / "weights.safetensors") for trainer in pythons]
    for backend, python in pythons.items():  # every backend's weights, one process per evaluating backend
        session.run(python, "-m", "tests.parity_worker", "evaluate", "--backend", backend, "--resize", "67",
                    "--weights", *weights, "--data", str(work / "data"), "--out", str(work / f"eval-{backend}.json"),
                    external=True, silent=True)
    session.run("python", "-m", "tests.parity_check", "compare", "--dir", str(work),
                "--backends", *pythons)
    session.run("python", "-c", f"import shutil; shutil.rmtree({str(work)!r})")  # kept only when a check fails


@nox.session(python=False)
def export(session: nox.Session) -> None:
    """The ONNX model exported from neutral weights (alexnet_torch.export), run with onnxruntime, gives every
    backend's logits on the same weights and images to the parity tolerance, at 224 and 67. Uses the backend
    venvs (PyTorch's gets the export extra) and no venv of its own."""
    work = EXCHANGE / "export"
    shutil.rmtree(work, ignore_errors=True)
    pythons = {backend: backend_python(session, backend) for backend in here(session)}
    torch = pythons["torch"]
    session.run(torch, "-m", "pip", "install", "-q", "-e", ".[export]", external=True)
    for resize, batch in ((224, 4), (67, 8)):
        case, weights = work / f"case-{resize}.safetensors", work / f"weights-{resize}.safetensors"
        model = work / f"model-{resize}.onnx"
        session.run(torch, "-m", "tests.parity_worker", "case", "--resize", str(resize), "--batch", str(batch),
                    "--case", str(case), "--weights", str(weights), external=True)
        results = [str(work / f"{backend}-{resize}.safetensors") for backend in pythons]
        for (backend, python), result in zip(pythons.items(), results):
            session.run(python, "-m", "tests.parity_worker", "logits", "--backend", backend, "--resize", str(resize),
                        "--weights", str(weights), "--case", str(case), "--out", result, external=True)
        session.run(torch, "-m", "alexnet_torch.export", str(weights), str(model), external=True)
        session.run(torch, "-m", "tests.parity_worker", "onnx", "--backend", "torch", "--resize", str(resize),
                    "--model", str(model), "--case", str(case), "--against", *results, external=True)
    shutil.rmtree(work)  # kept only when a check fails


def _has_gpu(python: str) -> bool:
    """Whether PyTorch in this venv sees a CUDA GPU."""
    probe = subprocess.run([python, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


MODES = {"faithful": [], "fast": ["--fast"]}  # the book's float32, and the opt-in fast path


def _cpu_or_gpu(session: nox.Session) -> bool:
    """Whether PyTorch's venv sees a CUDA GPU; says so when it does not."""
    gpu = _has_gpu(backend_python(session, "torch"))
    if not gpu:
        session.log("no CUDA GPU: running the reduced CPU version in every backend")
    return gpu


@nox.session
def converge(session: nox.Session) -> None:
    """Training converges, in the book's float32, on the fast path and as the README's quick try
    (`-- faithful`, `-- fast` or `-- quick`: those modes only). Needs the real Fashion-MNIST (see README).
    With a CUDA GPU: the book's full run (10 epochs, batch 128, lr 0.01, 224) in PyTorch, test acc >= 0.87
    (the venvs hold CPU builds of TensorFlow and MXNet: train those on a GPU by hand, see README). Without
    one: a reduced run in all backends (10,000 training images, 67x67, 4 epochs, batch 64, lr 0.03) that
    must reach test acc >= 0.5 (five times chance), 17 minutes on 2 CPU cores for both modes. Either way
    `--quick` too (every backend on a CPU, 5 to 7 minutes each; PyTorch on a GPU), which must reach 0.75,
    and the loss must fall. The faithful run then goes through the book's own data path (a DataLoader with
    4 workers, PIL per image) and the table ends with the wall-time ratio of the two."""
    session.install("-e", ".")
    out = EXCHANGE / "converge"
    modes = session.posargs or [*MODES, "quick"]
    if not set(modes) <= {*MODES, "quick"}:
        session.error(f"unknown mode in {modes}: pass faithful, fast, quick or nothing (all)")
    gpu = _cpu_or_gpu(session)
    if gpu:
        backends, flags, min_acc = ["torch"], [], "0.87"
    else:
        backends, min_acc = here(session), "0.5"
        flags = ["--resize", "67", "--train-limit", "10000", "--test-limit", "2000", "--epochs", "4",
                 "--batch-size", "64", "--lr", "0.03"]
    runs, quick = [], []
    for backend in backends:
        python = backend_python(session, backend)
        for mode in [m for m in modes if m in MODES]:
            runs.append(str(out / f"{backend}-{mode}"))
            session.run(python, "-m", f"alexnet_{backend}.train", *flags, *MODES[mode],
                        "--out", runs[-1], "--force", "--no-progress", external=True)
        if "quick" in modes:  # the README's quick try, as a student types it (on a GPU too: seconds there)
            quick.append(str(out / f"{backend}-quick"))
            session.run(python, "-m", f"alexnet_{backend}.train", "--quick", "--out", quick[-1], "--force",
                        "--no-progress", external=True)
    book = []
    if "faithful" in modes:  # the same run through the book's own data path, for the wall-time ratio
        path = out / "book.jsonl"
        path.unlink(missing_ok=True)
        # (on the CPU the reduced flags' --epochs 4 comes last and wins over the book's 10)
        session.run(backend_python(session, "torch"), "-m", "alexnet_torch.bench_book", "--epochs", "10", *flags,
                    "--json", str(path), external=True)
        book = ["--book", str(path)]
    if runs:
        session.run("python", "-m", "common.report", "converge", "--min-acc", min_acc, *book, *runs)
    if quick:
        session.run("python", "-m", "common.report", "converge", "--min-acc", "0.75", *quick)


SIDES = ["67", "96", "128", "160"]  # bench: input sides below the book's 224 (.ci/gpu repeats its commands)


@nox.session
def bench(session: nox.Session) -> None:
    """The book's batch-size exercise, the fast path and the input size, per backend; the GPU when there is one.

    Throughput: training and evaluation images/s and peak memory at 224 for batch sizes 32 to 256
    (and the fast path at 128), beside the book's own data path (4 loader workers, PIL resize per
    image) as the reference. Each figure beside the machine's ceiling, a 4096x4096 matrix product
    in the same framework and the mode's precision, as a share of it. How cost grows: training
    images/s at batch 128 for input sides 67, 96, 128, 160 and 224, with the spec's FLOPs per image.
    Accuracy after a fixed budget, per batch size: real Fashion-MNIST (see README), the book's lr;
    with a GPU 2 epochs at 224 (PyTorch), without one 1 epoch of 10,000 images at 67 (lr 0.03, every
    backend). Needs a quiet machine (other work shifts the ratios): on 2 CPU cores it took 18 min 26 s
    on an Intel Xeon and 24 to 26 min on an AMD EPYC (docs/results.md). Pass --steps N after -- to
    change the timed steps."""
    session.install("-e", ".")
    out = EXCHANGE / "bench"
    results = out / "bench.jsonl"
    results.unlink(missing_ok=True)
    steps = session.posargs or ["--steps", "3"]
    gpu = _cpu_or_gpu(session)
    backends = here(session)
    for backend in backends:
        python = backend_python(session, backend)
        for batch_size, mode in [("32", "faithful"), ("64", "faithful"), ("128", "faithful"), ("128", "fast"),
                                 ("256", "faithful")]:
            session.run(python, "-m", f"alexnet_{backend}.bench", "--batch-size", batch_size, *MODES[mode],
                        *steps, "--json", str(results), external=True)
        for side in SIDES:  # how cost grows with the input (224 is measured above)
            session.run(python, "-m", f"alexnet_{backend}.bench", "--resize", side, *steps,
                        "--json", str(results), external=True)
    session.run(backend_python(session, "torch"), "-m", "alexnet_torch.bench_book", *steps,
                "--json", str(results), external=True)
    budget = ["--epochs", "2"] if gpu else ["--resize", "67", "--train-limit", "10000", "--test-limit", "2000",
                                             "--epochs", "1", "--lr", "0.03"]
    runs = []
    for backend in ["torch"] if gpu else backends:
        for batch_size in ("32", "64", "128", "256"):
            runs.append(str(out / f"budget-{backend}-{batch_size}"))
            session.run(backend_python(session, backend), "-m", f"alexnet_{backend}.train", *budget,
                        "--batch-size", batch_size, "--out", runs[-1], "--force", "--no-progress", external=True)
    session.run("python", "-m", "common.report", "bench", str(results), *runs)
