"""Shape checking: a backend's per-layer report (canonical NCHW JSON) beside the spec.

A report is `{"backend": str, "resize": int, "layers": [{"name", "kind", "shape", "params"}]}`,
one entry per layer of the spec (activations are folded into their conv or dense layer).
"""

import json
from pathlib import Path

from common.errors import Parser, UserError, path_arg, run_cli
from common.spec import layer_stats


def canonical_names(kinds: list[str]) -> list[str]:
    """Name layers by kind and position: conv1, pool1, conv2, ..., dense3."""
    counts: dict[str, int] = {}
    names = []
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
        names.append(kind if kind == "flatten" else f"{kind}{counts[kind]}")
    return names


def make_report(backend: str, resize: int, layers: list[tuple[str, tuple[int, ...], int]]) -> dict:
    """A report from (kind, NCHW shape without the batch, params) per layer."""
    names = canonical_names([kind for kind, _, _ in layers])
    return {"backend": backend, "resize": resize,
            "layers": [{"name": n, "kind": k, "shape": list(s), "params": p}
                       for n, (k, s, p) in zip(names, layers)]}


def compare(report: dict) -> list[str]:
    """Every difference between a report and the spec at the report's input size."""
    spec = layer_stats(report["resize"])
    got = report["layers"]
    problems = []
    for i in range(max(len(spec), len(got))):
        want = spec[i] if i < len(spec) else None
        have = got[i] if i < len(got) else None
        name = want.name if want else have["name"]
        if want is None or have is None:
            problems.append(f"{name}: {'missing in ' + report['backend'] if have is None else 'not in the spec'}")
            continue
        for field, expected, actual in (("kind", want.kind, have["kind"]),
                                        ("shape", list(want.shape), list(have["shape"])),
                                        ("params", want.params, have["params"])):
            if expected != actual:
                problems.append(f"{name}: {field} {actual} in {report['backend']}, spec says {expected}")
    return problems


def read_report(path: Path) -> dict:
    """Read a report JSON file, with a clear error for a missing or malformed one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        report["backend"], report["resize"], report["layers"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a layer-shape report ({e}): regenerate it with "
                        f"python -m alexnet_<fw>.model --json") from None
    return report


# ---- The side-by-side table ----


def table(reports: list[dict]) -> str:
    """Reports of one input size beside the spec: layer | spec | each backend (shape, params)."""
    resize = reports[0]["resize"]
    spec = layer_stats(resize)
    backends = [r["backend"] for r in reports]
    cell = "{:<24}"
    rows = [f"input {resize}x{resize}", (cell * (2 + len(backends))).format("layer", "spec", *backends)]
    for i, s in enumerate(spec):
        cells = [s.name, _cell(list(s.shape), s.params)]
        for r in reports:
            layer = r["layers"][i] if i < len(r["layers"]) else None
            text = _cell(layer["shape"], layer["params"]) if layer else "(missing)"
            cells.append(text if text == cells[1] else f"{text} <- differs")
        rows.append((cell * len(cells)).format(*cells))
    totals = [f"{sum(s.params for s in spec):,}"] + [f"{sum(x['params'] for x in r['layers']):,}" for r in reports]
    rows.append((cell * len(cells)).format("total params", *totals))
    return "\n".join(rows)


def _cell(shape: list[int], params: int) -> str:
    """One table cell: the shape, and the parameters when there are any."""
    text = "x".join(map(str, shape))
    return f"{text} ({params:,})" if params else text


def main(argv: list[str] | None = None) -> int:
    """Compare reports with the spec: print a table per input size, exit 1 on any difference."""
    import sys

    p = Parser(prog="python -m common.shapes", description=main.__doc__)
    p.add_argument("reports", nargs="+", type=path_arg, help="JSON reports from python -m alexnet_<fw>.model --json")
    args = p.parse_args(argv)
    reports = [read_report(path) for path in args.reports]
    problems = []
    for resize in sorted({r["resize"] for r in reports}):
        group = [r for r in reports if r["resize"] == resize]
        print(table(group), end="\n\n")
        problems += [f"input {resize}: {problem}" for r in group for problem in compare(r)]
    for problem in problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    print("all backends match the spec" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    import sys

    run_cli(lambda: sys.exit(main()))
