"""The project's shape: no import cycles, backends importing in one direction, mirrored public names."""

import ast
from pathlib import Path

import pytest

from common.backends import BACKENDS, NAMES
from common.side_by_side import FILES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["common", "tests", *(f"alexnet_{name}" for name in NAMES)]
# Within a backend a module imports only the ones before it (the lesson reads in this order).
ORDER = ["model", "data", "step", "parallel", "train", "predict", "bench", "bench_book",
         "export"]  # alexnet_torch/export.py is PyTorch's alone: the ONNX export goes through torch.onnx
# Public names one backend has and the first lacks, each with its reason; everything else is mirrored.
EXTRA = {
    ("torch", "step.py"): {"Mixed": "autocast and channels-last wrap the network in a module",
                           "unwrap": "torch.compile and Mixed wrap the network; checkpoints hold the plain one"},
    ("mxnet", "step.py"): {"without_dropout": "MXNet's predict mode breaks oneDNN max-pool gradients"},
    ("mxnet", "parallel.py"): {"replicate": "Gluon copies each parameter to the contexts before the Trainer"},
    ("jax", "step.py"): {"commit": "XLA compiles a step again when its arguments' placement changes (uncommitted "
                                   "arrays at the start, committed after a step)"},
}


def modules() -> dict[str, Path]:
    """Every module of the project by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules that a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= submodules or {node.module}
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (packages' own __init__ left out)."""
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search, as the chain of modules."""
    found, state = [], {}

    def visit(node: str, chain: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*chain[chain.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*chain, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_each_backend_imports_in_one_direction():
    edges = graph()
    wrong = []
    for name in NAMES:
        for i, module in enumerate(ORDER):
            later = {f"alexnet_{name}.{m}" for m in ORDER[i + 1:]}
            found = edges.get(f"alexnet_{name}.{module}", set()) & later
            wrong += [f"alexnet_{name}.{module} imports {m}" for m in sorted(found)]
    assert wrong == []


def public_names(path: Path) -> list[str]:
    """The top-level public functions and classes of a file, in order."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)
            and not node.name.startswith("_")]


def test_every_backend_defines_the_same_public_names_in_the_same_order():
    problems = []
    for file in FILES:
        reference = public_names(ROOT / f"alexnet_{NAMES[0]}" / file)
        for name in NAMES:
            own = public_names(ROOT / f"alexnet_{name}" / file)
            extra = EXTRA.get((name, file), {})
            mine = [n for n in own if n not in extra]
            theirs = [n for n in reference if n not in EXTRA.get((NAMES[0], file), {})]
            if mine != theirs:
                problems.append(f"alexnet_{name}/{file}: {mine} != {theirs}")
            problems += [f"alexnet_{name}/{file}: listed {n} is not there" for n in extra if n not in own]
    assert problems == []


def test_every_listed_backend_has_its_package_and_its_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    for backend in BACKENDS.values():
        assert (ROOT / backend.package / "__init__.py").is_file(), backend.package
        assert backend.extra in extras, f"pyproject.toml has no extra {backend.extra!r} for {backend.name}"
    found = sorted(p.parent.name for p in ROOT.glob("alexnet_*/__init__.py"))
    assert found == sorted(b.package for b in BACKENDS.values()), "a backend folder is missing from the list"
