"""common/ never imports a framework: it must run in every backend's venv."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import common
from common.backends import FRAMEWORKS


def test_no_framework_in_common_sources():
    for path in Path(common.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & FRAMEWORKS, f"{path.name} imports {names}"


def test_importing_common_loads_no_framework():
    modules = [f"common.{m.name}" for m in pkgutil.iter_modules(common.__path__)]
    code = (f"import sys, importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(set(sys.modules) & {set(FRAMEWORKS)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
