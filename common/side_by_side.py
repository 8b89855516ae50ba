"""The backends side by side, aligned by their shared section comments, as one HTML page.

    python -m common.side_by_side --out docs/side_by_side.html

Each backend file is cut at its `# ---- Title ----` comments; sections with the same title
stand in one row. The alignment is computed from the code, so it cannot drift; `check()`
lists any section that one backend has and another lacks (a test runs it).
"""

import argparse
import html
import re
from pathlib import Path

from common.backends import BACKENDS, NAMES

ROOT = Path(__file__).resolve().parent.parent
# Mirrored in every backend. alexnet_torch/bench_book.py is PyTorch's alone on purpose: it is the
# book's own torchvision-style loader, the reference the other data paths are measured against.
FILES = ("model.py", "data.py", "step.py", "parallel.py", "train.py", "bench.py")
SECTION = re.compile(r"^# ---- (.+?) ----$")
PREAMBLE = "(imports)"


def sections(path: Path) -> dict[str, str]:
    """A file's code by section title, in order; what precedes the first section is the preamble."""
    parts: dict[str, list[str]] = {PREAMBLE: []}
    current = PREAMBLE
    for line in path.read_text().splitlines():
        match = SECTION.match(line)
        if match:
            current = match.group(1)
            parts[current] = []
        else:
            parts[current].append(line)
    return {title: "\n".join(lines).strip("\n") for title, lines in parts.items()}


def check(root: Path = ROOT) -> list[str]:
    """Every file or section present in one backend and missing, or out of order, in another."""
    problems = []
    for name in FILES:
        paths = {b: root / f"alexnet_{b}" / name for b in NAMES}
        missing = [b for b, p in paths.items() if not p.exists()]
        if missing:
            problems += [f"alexnet_{b}/{name} is missing" for b in missing if len(missing) < len(paths)]
            continue
        titles = {b: list(sections(p)) for b, p in paths.items()}
        reference = titles[NAMES[0]]
        for b, own in titles.items():
            for title in set(reference) - set(own):
                problems.append(f"alexnet_{b}/{name} lacks the section '{title}'")
            for title in set(own) - set(reference):
                problems.append(f"alexnet_{b}/{name} has the section '{title}' that alexnet_{NAMES[0]} lacks")
            if [t for t in own if t in reference] != [t for t in reference if t in own]:
                problems.append(f"alexnet_{b}/{name} orders its sections differently from alexnet_{NAMES[0]}")
    return problems


# ---- The page ----

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; }
table { border-collapse: collapse; table-layout: fixed; width: 100%; }
th, td { border: 1px solid #ccc; vertical-align: top; padding: 0.3em; }
th { background: #f3f3f3; } td.title { background: #fafafa; font-weight: bold; }
pre { margin: 0; font-size: 12px; white-space: pre-wrap; }
"""


def render(root: Path = ROOT) -> str:
    """The HTML page: per file, a row per section, a column per backend."""
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>AlexNet in {len(NAMES)} frameworks</title><style>{STYLE}</style></head><body>",
           f"<h1>AlexNet (d2l.ai 8.1) in {len(NAMES)} frameworks, section by section</h1>"]
    for name in FILES:
        parts = {b: sections(root / f"alexnet_{b}" / name) for b in NAMES
                 if (root / f"alexnet_{b}" / name).exists()}
        if not parts:
            continue
        out.append(f"<h2>{name}</h2><table><tr>" + "".join(f"<th>{BACKENDS[b].title}</th>" for b in parts) + "</tr>")
        titles = list(dict.fromkeys(t for p in parts.values() for t in p))
        for title in titles:
            out.append(f"<tr><td class='title' colspan='{len(parts)}'>{html.escape(title)}</td></tr><tr>")
            out += [f"<td><pre>{html.escape(p.get(title, '(missing)'))}</pre></td>" for p in parts.values()]
            out.append("</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Write the page, and report any section that is not mirrored."""
    from common.atomic import atomic_write_text

    p = argparse.ArgumentParser(prog="python -m common.side_by_side", description=main.__doc__)
    p.add_argument("--out", type=Path, default=Path("docs/side_by_side.html"), help="the HTML file to write")
    args = p.parse_args(argv)
    atomic_write_text(args.out, render())
    print(f"wrote {args.out}")
    for problem in check():
        print(f"not mirrored: {problem}")


if __name__ == "__main__":
    main()
