"""The backends side by side, aligned by their shared section comments, as one HTML page.

    python -m common.side_by_side                         # writes docs/side_by_side.html
    python -m common.side_by_side --only step-one-training-step   # docs/side_by_side-step-one-training-step.html

Each backend file is cut at its `# ---- Title ----` comments; sections with the same title
stand in one row, a column per backend (the backends and their order come from
common/backends.py, nothing here lists them). The alignment is computed from the code, so it
cannot drift; `check()` lists any section that one backend has and another lacks (a test runs it).

The page is one self-contained file (CSS and a small script inline, nothing fetched), highlighted
with Pygments; code never wraps (a column scrolls sideways), so indentation stays intact.

Anchors. A file is `#<stem>` (`#train`); a section is `#<stem>-<slug of its title>`, the slug being
the title lowercased with every run of other characters than a-z and 0-9 turned into one `-`:
`# ---- The training loop ----` in train.py is `#train-the-training-loop`, the code before the
first section comment is `#train-imports`.

Compact mode: `#only=<anchor>` (or `?only=<anchor>`) shows that one file or that one section across
the backends and hides the rest; each heading has an "only this" link, and "show all" goes back.
There the header links to the previous and the next section (or file), and the left and right arrow
keys (which many presenter remotes send) follow those links, keeping the other settings.
`--only <anchor>` writes a page that holds only that file or section (beside the whole one unless
`--out` says where; its links to the code and the docs lead from wherever it is written).
`#only=...&font=large` (or the "Large font" button, remembered by the browser) sets the projector size.

Comparing fewer backends: the header's boxes (remembered by the browser), or `backends=torch,jax` in
the URL, show only those columns, wider; the lines then muted are those every column shown shares.

Within a section, a line whose code (its indentation and a trailing comment aside: `line_key`)
every backend has is shared (class `s`) and drawn muted; the lines that differ (class `d`), the
framework idioms, keep full colour and a bar on the left; blank lines are `b`. The page's script
marks `s` and `d` again for the columns shown.
Each section lists the rows of docs/frameworks.md's API table and the README's "what differs, and
why" items that it illustrates (`STEPS` and `WHY` below), with relative links to both.
"""

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from common.backends import BACKENDS, NAMES
from common.errors import Parser, path_arg

ROOT = Path(__file__).resolve().parent.parent
# Mirrored in every backend. alexnet_torch/bench_book.py is PyTorch's alone on purpose: it is the
# book's own torchvision-style loader, the reference the other data paths are measured against.
FILES = ("model.py", "data.py", "step.py", "parallel.py", "train.py", "predict.py", "bench.py")
SECTION = re.compile(r"^# ---- (.+?) ----$")
PREAMBLE = "(imports)"

# Which rows of docs/frameworks.md's API table (by their first cell) each section shows in code.
STEPS: dict[str, tuple[str, ...]] = {
    "model-the-network": ("container", "layers", "activation", "layout"),
    "model-initialisation": ("init",),
    "model-neutral-weights": ("neutral weights",),
    "data-resizing-on-the-device": ("resize on the device",),
    "step-device": ("device placement", "float32 on a GPU (TF32 off)", "peak memory"),
    "step-fast-path-opt-in": ("fast path: precision (`--fast`)", "fast path: layout and compiler"),
    "step-evaluation": ("dropout off",),
    "step-one-training-step": ("loss", "gradient step", "compile"),
    "parallel-replicas": ("data parallel (`--devices N`)",),
    "parallel-data-parallel-step": ("data parallel (`--devices N`)",),
    "train-the-network-and-its-trainer": ("seeds", "optimizer"),
    "train-the-training-loop": ("seeds",),
    "train-checkpoints": ("save and load",),
    "bench-timing": ("wait for the device",),
    "bench-profile": ("profile (`bench --profile DIR`)",),
}
# Which bold items of the README's "what differs, and why" list each section is the code of.
WHY: dict[str, tuple[str, ...]] = {
    "model-the-network": ("conv1 padding", "Layout", "Flax NNX, not Linen"),
    "model-initialisation": ("Initialisation", "Explicit random keys"),
    "model-neutral-weights": ("Layout",),
    "data-resizing-on-the-device": ("Resize",),
    "step-device": ("Float32 on a GPU",),
    "step-fast-path-opt-in": ("Precision on the fast path",),
    "step-evaluation": ("Dropout", "Float32 rounding"),
    "step-one-training-step": ("Loss scaling", "Execution", "jit", "Dropout"),
    "train-the-network-and-its-trainer": ("Initialisation",),
    "train-the-training-loop": ("Dropout", "Explicit random keys"),
    "train-checkpoints": ("Dropout", "Explicit random keys"),
}
FRAMEWORKS_DOC = "docs/frameworks.md"
README = "README.md"
WHY_HEADING = re.compile(r"^## (.*what differs.*)$", re.MULTILINE)


def sections(path: Path) -> dict[str, str]:
    """A file's code by section title, in order; what precedes the first section is the preamble."""
    return {title: text for title, (_, text) in numbered_sections(path).items()}


def numbered_sections(path: Path) -> dict[str, tuple[int, str]]:
    """A file's sections as (the line number of their first line of code, the code), by title."""
    parts: dict[str, list[str]] = {PREAMBLE: []}
    starts = {PREAMBLE: 1}
    current = PREAMBLE
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = SECTION.match(line)
        if match:
            current = match.group(1)
            parts[current], starts[current] = [], number + 1
        else:
            parts[current].append(line)
    out = {}
    for title, lines in parts.items():
        lead = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        out[title] = (starts[title] + lead, "\n".join(lines).strip("\n"))
    return out


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


# ---- Anchors and the documents it links to ----


def slug(text: str) -> str:
    """'Fast path (opt-in)' -> 'fast-path-opt-in': lowercase, other characters run together as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def anchor(file: str, title: str) -> str:
    """A section's anchor: the file's stem and the title's slug, `train-the-training-loop`."""
    return f"{Path(file).stem}-{slug(title)}"


def given_anchor(text: str) -> str:
    """An anchor as given to --only, also pasted from a link: `#only=train&font=large`, `#train`, `train.py`."""
    return re.split(r"[#?]", text)[-1].split("&")[0].removeprefix("only=").removesuffix(".py")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercase, punctuation dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def text_fragment(text: str) -> str:
    """A `:~:text=` directive that scrolls a browser to `text` as rendered (Markdown's backticks dropped)."""
    return ":~:text=" + quote(text.replace("`", ""), safe="")


@dataclass(frozen=True)
class Docs:
    """What the page quotes from the docs: the API table's rows and the README's why-items."""

    steps: dict[str, dict[str, str]]  # the table's first cell -> backend -> that backend's cell
    steps_anchor: str  # the table's heading, as GitHub anchors it
    why: dict[str, str]  # a bold item's title (without its full stop) -> its text
    why_anchor: str


def read_docs(root: Path = ROOT) -> Docs:
    """The API table of docs/frameworks.md and the why-items of the README (empty where absent)."""
    steps: dict[str, dict[str, str]] = {}
    steps_anchor = why_anchor = ""
    doc = root / FRAMEWORKS_DOC
    if doc.exists():
        text = doc.read_text(encoding="utf-8")
        heading = re.search(r"^# (.+)$", text, re.MULTILINE)
        steps_anchor = github_anchor(heading.group(1)) if heading else ""
        rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
                if line.startswith("| ") and not line.startswith("| ---")]
        if rows:
            columns = [re.search(r"`alexnet_(\w+)`", cell) for cell in rows[0][1:]]
            for cells in rows[1:]:
                steps[cells[0]] = {m.group(1): cell for m, cell in zip(columns, cells[1:]) if m}
    why: dict[str, str] = {}
    readme = root / README
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        heading = WHY_HEADING.search(text)
        if heading:
            why_anchor = github_anchor(heading.group(1))
            body = re.split(r"^## ", text[heading.end():], maxsplit=1, flags=re.MULTILINE)[0]
            for item in re.split(r"^- ", body, flags=re.MULTILINE)[1:]:
                match = re.match(r"\*\*(.+?)\.?\*\*\s*(.*)", item, re.DOTALL)
                if match:
                    why[match.group(1)] = " ".join(match.group(2).split())
    return Docs(steps, steps_anchor, why, why_anchor)


def inline_markdown(text: str) -> str:
    """Backticks as <code>, everything else escaped: enough for one table cell or list item."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


# ---- Highlighting ----


def highlight(code: str) -> list[str]:
    """The code as HTML lines, highlighted by Pygments (each line's spans closed on that line)."""
    from pygments import highlight as pygmentize
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    if not code:
        return []
    out = pygmentize(code, PythonLexer(stripnl=False, ensurenl=True), HtmlFormatter(nowrap=True))
    return out.rstrip("\n").split("\n")


def line_key(lit: str) -> str:
    """What makes a highlighted line the same as another: its code, indentation and trailing comment aside."""
    def text(part: str) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", part)).strip()

    return text(re.sub(r'<span class="c1">[^<]*</span>', "", lit)) or text(lit)  # a comment alone: the comment


def shared_lines(columns: list[list[str]]) -> set[str]:
    """The keys (`line_key`) of the non-blank lines that every one of these columns has: the same code."""
    sets = [set(keys) - {""} for keys in columns]
    return set.intersection(*sets) if sets else set()


def pygments_css() -> str:
    """Pygments' colours for the code blocks (`.code`)."""
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".code")


def pygments_version() -> str:
    """The installed Pygments release, recorded in the page."""
    import pygments

    return pygments.__version__


# ---- The page ----

STYLE = """
:root { --code: 13px; --bar: 3.2em; }
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0; background: #fff; color: #1a1a1a; line-height: 1.4; }
body.big { --code: 20px; font-size: 125%; }
header.bar { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #ccc;
  display: flex; gap: 1em; align-items: center; padding: 0.5em 1.2em; height: var(--bar); }
header.bar h1 { font-size: 1.1em; margin: 0; flex: 1; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
header.bar button { font: inherit; padding: 0.2em 0.8em; cursor: pointer; }
main { padding: 0 1.2em 3em; }
a { color: #0550ae; }
.legend { margin: 0.8em 0; color: #444; }
.legend .s, .legend .d { padding: 0 0.4em; border-left: 3px solid transparent; }
.legend .s { background: #f1f1f1; color: #777; } .legend .d { border-left-color: #e08a00; }
nav#contents { columns: 3 18em; margin: 0.5em 0 1.5em; }
nav#contents div { break-inside: avoid; margin-bottom: 0.6em; }
nav#contents ul { margin: 0.2em 0; padding-left: 1.2em; }
section.file > h2 { margin: 1.5em 0 0.3em; font-family: ui-monospace, monospace; scroll-margin-top: var(--bar); }
section.sec { margin: 0.8em 0 1.2em; scroll-margin-top: var(--bar); }
section.sec > h3 { font-size: 1.05em; margin: 0 0 0.3em; }
.only { font-size: 0.8em; font-weight: normal; margin-left: 0.6em; }
.refs { font-size: 0.9em; color: #333; margin: 0 0 0.4em; }
.refs summary { cursor: pointer; }
.refs table { border-collapse: collapse; margin: 0.3em 0; }
.refs th, .refs td { border: 1px solid #ddd; padding: 0.15em 0.5em; text-align: left; vertical-align: top; }
.refs p { margin: 0.3em 0; max-width: 60em; }
.cols { display: grid; grid-auto-flow: column; grid-auto-columns: minmax(0, 1fr); gap: 0.6em; }
.col { min-width: 0; border: 1px solid #ccc; border-radius: 4px; overflow: hidden; }
.colhead { background: #f3f3f3; padding: 0.2em 0.5em; font-size: 0.85em; border-bottom: 1px solid #ddd;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.colhead .where { color: #666; font-family: ui-monospace, monospace; margin-left: 0.5em; }
pre.code { margin: 0; padding: 0.3em 0; overflow-x: auto; white-space: pre; background: #fff;
  font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: var(--code); line-height: 1.4; }
pre.code > code { display: inline-block; min-width: 100%; font: inherit; }
pre.code .l { display: block; min-height: 1.4em; padding: 0 0.6em; border-left: 3px solid transparent; }
pre.code .l.s { background: #f1f1f1; opacity: 0.6; }
pre.code .l.d { border-left-color: #e08a00; }
[data-backend].off { display: none; }
#pick { white-space: nowrap; font-size: 0.9em; } #pick label { margin-left: 0.6em; cursor: pointer; }
.missing { padding: 0.5em; color: #a00; font-style: italic; }
body.compact nav#contents, body.compact .legend { display: none; }
body.compact section.file:not(.shown), body.compact section.sec:not(.shown) { display: none; }
#show-all, .step { display: none; } body.compact #show-all, body.compact .step[href] { display: inline; }
header.bar > * { white-space: nowrap; flex-shrink: 0; }
header.bar > h1, header.bar > .step { flex-shrink: 1; min-width: 2em; }
.step { max-width: 14em; overflow: hidden; text-overflow: ellipsis; }
"""

SCRIPT = """
(function () {
  var body = document.body;
  function params() {
    var text = location.hash.slice(1), out = new URLSearchParams(location.search);
    if (text.indexOf("=") >= 0) new URLSearchParams(text).forEach(function (v, k) { out.set(k, v); });
    return out;
  }
  function apply() {
    var p = params(), only = p.get("only"), el = only && document.getElementById(only);
    document.querySelectorAll(".shown").forEach(function (e) { e.classList.remove("shown"); });
    body.classList.toggle("compact", !!el);
    if (el) {
      var file = el.classList.contains("file") ? el : el.closest("section.file");
      file.classList.add("shown");
      var secs = el === file ? file.querySelectorAll("section.sec") : [el];
      secs.forEach(function (s) { s.classList.add("shown"); });
      window.scrollTo(0, 0);
    }
    steps(el);
    if (p.get("font")) body.classList.toggle("big", p.get("font") === "large");
    show(chosen(p));
  }
  var boxes = Array.from(document.querySelectorAll("#pick input"));
  function picked() { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }); }
  function parse(names) {  // "torch,jax": the backends it names, or all of them where it names none
    var all = boxes.map(function (b) { return b.value; });
    var got = names.split(",").filter(function (b) { return all.indexOf(b) >= 0; });
    return got.length ? got : all;
  }
  function chosen(p) {  // the URL's backends=torch,jax, else those shown now
    var names = p.get("backends");
    return names === null ? picked() : parse(names);
  }
  function text(line) {  // as line_key: the code, a trailing comment aside; a comment alone: the comment
    var code = Array.from(line.childNodes).filter(function (n) {
      return !(n.classList && n.classList.contains("c1")); });
    return code.map(function (n) { return n.textContent; }).join("").trim() || line.textContent.trim();
  }
  function show(names) {  // hide the other columns (and table cells); mute the lines every column shown has
    boxes.forEach(function (b) { b.checked = names.indexOf(b.value) >= 0; });
    document.querySelectorAll("[data-backend]").forEach(function (el) {
      el.classList.toggle("off", names.indexOf(el.dataset.backend) < 0);
    });
    document.querySelectorAll("section.sec").forEach(function (sec) {
      var sets = [], whole = true, lines = [];
      sec.querySelectorAll(".col").forEach(function (col) {
        var code = col.querySelector("pre.code");
        if (col.classList.contains("off")) return;
        if (!code) { whole = false; return; }
        var own = Array.from(code.querySelectorAll(".l:not(.b)"));
        sets.push(new Set(own.map(text)));
        lines = lines.concat(own);
      });
      var shared = whole && sets.length > 1 ? sets.reduce(function (a, b) {
        return new Set(Array.from(a).filter(function (t) { return b.has(t); })); }) : new Set();
      lines.forEach(function (l) {
        var s = shared.has(text(l));
        l.classList.toggle("s", s);
        l.classList.toggle("d", !s);
      });
    });
  }
  boxes.forEach(function (box) {
    box.addEventListener("change", function () {
      var names = picked();
      if (!names.length) names = [box.value];  // at least one column
      try { localStorage.setItem("side-by-side-backends", names.join(",")); } catch (e) {}
      show(names);
    });
  });
  function neighbours(el) {  // the sections (or files) before and after this one, in page order
    var all = Array.from(document.querySelectorAll(el.classList.contains("file") ? "section.file" : "section.sec"));
    var i = all.indexOf(el);
    return {prev: all[i - 1], next: all[i + 1]};
  }
  function heading(sec) { return sec.querySelector("h2, h3").firstChild.textContent.trim(); }
  function steps(el) {  // compact mode's previous and next links (and the arrow keys), the other settings kept
    var near = el ? neighbours(el) : {};
    ["prev", "next"].forEach(function (way) {
      var link = document.getElementById(way), to = near[way];
      if (!to) { link.removeAttribute("href"); return; }
      var h = new URLSearchParams(location.hash.slice(1));
      h.set("only", to.id);
      link.href = "#" + h.toString().replace(/%2C/g, ",");
      var file = to.closest("section.file"), title = heading(to);
      if (file !== to && file !== el.closest("section.file")) title = heading(file) + ": " + title;  // another file
      link.textContent = (way === "prev" ? "\u2190 " : "\u2192 ") + title;
      link.title = title;
    });
  }
  document.addEventListener("keydown", function (e) {  // the arrow keys, as many presenter remotes send
    var way = {ArrowLeft: "prev", ArrowRight: "next"}[e.key], link = way && document.getElementById(way);
    if (!link || !link.hasAttribute("href") || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
    if (e.target.closest && e.target.closest("input, pre")) return;  // a box, or code scrolled sideways
    e.preventDefault();
    location.hash = link.getAttribute("href");
  });
  try {  // the last choice of backends here, as the boxes show it before the first apply()
    var saved = localStorage.getItem("side-by-side-backends");
    if (saved !== null) boxes.forEach(function (b) { b.checked = parse(saved).indexOf(b.value) >= 0; });
  } catch (e) {}
  var toggle = document.getElementById("font-toggle");
  try { if (localStorage.getItem("side-by-side-font") === "large") body.classList.add("big"); } catch (e) {}
  toggle.addEventListener("click", function () {
    var big = body.classList.toggle("big");
    try { localStorage.setItem("side-by-side-font", big ? "large" : "normal"); } catch (e) {}
  });
  window.addEventListener("hashchange", apply);
  apply();
})();
"""


def render(root: Path = ROOT, only: str | None = None, up: str = "../") -> str:
    """The HTML page: per file, a row per section, a column per backend; `only` keeps one file or section.

    `up` leads from the page's folder to the repository root: the code and the docs are linked through it.
    """
    docs = read_docs(root)
    present = [b for b in NAMES if (root / f"alexnet_{b}").is_dir()]  # a column each, even where a file lacks
    files = []  # (file name, {backend: {title: (line, code)}})
    for name in FILES:
        paths = {b: root / f"alexnet_{b}" / name for b in present}
        if any(p.exists() for p in paths.values()):
            files.append((name, {b: numbered_sections(p) if p.exists() else {} for b, p in paths.items()}))
    if only is not None:
        only = given_anchor(only)

        def keep(name: str, title: str) -> bool:
            return only in (Path(name).stem, anchor(name, title))

        files = [(name, {b: {t: s for t, s in p.items() if keep(name, t)} for b, p in parts.items()})
                 for name, parts in files]
        files = [(name, parts) for name, parts in files if any(parts.values())]
        if not files:
            stems = ", ".join(Path(name).stem for name in FILES)
            raise ValueError(f"no file or section has the anchor '{only}': give a file ({stems}) or a section's "
                             f"anchor, the part after # in the page's links (train-the-training-loop)")
    backends = present
    titles = ", ".join(BACKENDS[b].title for b in backends)
    head = (f"AlexNet (d2l.ai 8.1) in {len(backends)} frameworks, section by section"
            if only is None else f"AlexNet: {html.escape(only)} in {len(backends)} frameworks")
    out = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width, initial-scale=1'>",
           f"<meta name='generator' content='common.side_by_side, Pygments {pygments_version()}'>",
           f"<title>{head}</title>",
           f"<style>{STYLE}{pygments_css()}</style></head><body>",
           f"<header class='bar'><h1>{head}</h1><a id='prev' class='step'></a><a id='next' class='step'></a>"
           f"{pick_html(backends)}<a id='show-all' href='#'>show all</a>"
           "<a href='#contents'>contents</a>"
           "<button id='font-toggle' type='button' title='a larger font, for a projector'>Large font</button>"
           "</header><main>",
           f"<p class='legend'>Columns: {html.escape(titles)}. Built by <code>python -m common.side_by_side</code> "
           "from the code; do not edit. Within a section, <span class='s'>muted lines</span> hold the same "
           "code in every backend shown (their comments may differ); <span class='d'>lines with a bar</span> "
           "differ: the framework idioms. "
           "The boxes at the top pick the backends to compare.</p>"]
    toc = ["<nav id='contents'>"]
    body = []
    for name, parts in files:
        stem = Path(name).stem
        sec_titles = list(dict.fromkeys(t for p in parts.values() for t in p))
        toc.append(f"<div><a href='#{stem}'><code>{name}</code></a><ul>")
        body.append(f"<section class='file' id='{stem}'><h2>{name}"
                    f"<a class='only' href='#only={stem}'>only this file</a></h2>")
        for title in sec_titles:
            sid = anchor(name, title)
            toc.append(f"<li><a href='#{sid}'>{html.escape(title)}</a></li>")
            body.append(section_html(name, title, sid, parts, docs, up))
        toc.append("</ul></div>")
        body.append("</section>")
    toc.append("</nav>")
    out += [*toc, *body, "</main>", f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(out) + "\n"


def pick_html(backends: list[str]) -> str:
    """A box per backend in the header: which columns the page shows (the script reads them)."""
    short = {b: BACKENDS[b].title.split(" (")[0] for b in backends}  # "TensorFlow (Keras 3)" -> "TensorFlow"
    boxes = "".join(f"<label><input type='checkbox' value='{b}' checked> {html.escape(short[b])}</label>"
                    for b in backends)
    return f"<span id='pick' title='the backends to compare'>{boxes}</span>"


def section_html(name: str, title: str, sid: str, parts: dict[str, dict[str, tuple[int, str]]],
                 docs: Docs, up: str) -> str:
    """One section: its heading, what it illustrates in the docs, and a column per backend."""
    lits = {b: highlight(secs[title][1]) for b, secs in parts.items() if title in secs}  # Pygments once a column
    keys = {b: [line_key(lit) for lit in lines] for b, lines in lits.items()}
    shared = shared_lines(list(keys.values())) if len(keys) == len(parts) > 1 else set()
    out = [f"<section class='sec' id='{sid}'><h3>{html.escape(title)} <a href='#{sid}'>#</a>"
           f"<a class='only' href='#only={sid}'>only this section</a></h3>", refs_html(sid, list(parts), docs, up),
           "<div class='cols'>"]
    for b, secs in parts.items():
        where = f"alexnet_{b}/{name}"
        out.append(f"<div class='col' data-backend='{b}'><div class='colhead'>{html.escape(BACKENDS[b].title)}")
        if title not in secs:
            out.append(f"<span class='where'>{where}</span></div><div class='missing'>not in {where}</div></div>")
            continue
        line, code = secs[title]
        out.append(f"<a class='where' href='{up}{where}'>{where}:{line}</a></div><pre class='code'><code>")
        for raw, lit, key in zip(code.splitlines(), lits[b], keys[b]):
            kind = "b" if not raw.strip() else "s" if key in shared else "d"
            out.append(f"<span class='l {kind}'>{lit}</span>")
        out.append("</code></pre></div>")
    out.append("</div></section>")
    return "".join(out)


def refs_html(sid: str, backends: list[str], docs: Docs, up: str) -> str:
    """The API table's rows and the README's why-items for one section, linked relatively."""
    steps = [s for s in STEPS.get(sid, ()) if s in docs.steps]
    why = [w for w in WHY.get(sid, ()) if w in docs.why]
    if not steps and not why:
        return ""
    out = ["<div class='refs'>"]
    if steps:
        links = ", ".join(f"<a href='{up}{FRAMEWORKS_DOC}#{docs.steps_anchor}"
                          f"{text_fragment(s)}'>{inline_markdown(s)}</a>" for s in steps)
        out.append(f"<details><summary>API table (docs/frameworks.md): {links}</summary><table><tr><th>step</th>"
                   + "".join(f"<th data-backend='{b}'>{html.escape(BACKENDS[b].title)}</th>" for b in backends)
                   + "</tr>")
        for s in steps:
            out.append(f"<tr><td>{inline_markdown(s)}</td>"
                       + "".join(f"<td data-backend='{b}'>{inline_markdown(docs.steps[s].get(b, ''))}</td>"
                                 for b in backends)
                       + "</tr>")
        out.append("</table></details>")
    if why:
        links = ", ".join(f"<a href='{up}{README}#{docs.why_anchor}{text_fragment(w + '.')}'>{html.escape(w)}</a>"
                          for w in why)
        out.append(f"<details><summary>What differs, and why (README): {links}</summary>"
                   + "".join(f"<p><b>{html.escape(w)}.</b> {inline_markdown(docs.why[w])}</p>" for w in why)
                   + "</details>")
    out.append("</div>")
    return "".join(out)


def stale(page: str, fresh: str) -> bool:
    """Whether a written page differs from `fresh`: byte for byte if the same Pygments made it, else in its text."""
    made_with = re.search(r"Pygments ([^'\"]+)", page)
    if made_with and made_with.group(1) == pygments_version():
        return page != fresh

    def text(html_page: str) -> str:  # another Pygments colours differently: the code itself must agree
        return html.unescape(re.sub(r"<[^>]+>", "", html_page.split("</style>", 1)[-1]))
    return text(page) != text(fresh)


def default_out(only: str | None) -> Path:
    """Where the page goes without --out: docs/side_by_side.html, or beside it for one file or section."""
    name = "side_by_side.html" if only is None else f"side_by_side-{given_anchor(only)}.html"
    docs = ROOT / "docs"
    return (docs.relative_to(Path.cwd()) if docs.is_relative_to(Path.cwd()) else docs) / name  # short when it can be


def way_up(out: Path) -> str:
    """The link from the folder of the page `out` to the repository root: `../` for docs/."""
    try:
        return Path(os.path.relpath(ROOT, out.resolve().parent)).as_posix() + "/"
    except ValueError:  # Windows: another drive, no relative way
        return ROOT.as_uri() + "/"


def main(argv: list[str] | None = None) -> None:
    """Write the page, and report any section that is not mirrored."""
    from common.atomic import atomic_write_text

    p = Parser(prog="python -m common.side_by_side", description=main.__doc__)
    p.add_argument("--out", type=path_arg, help="the HTML file to write (default: docs/side_by_side.html; with --only, "
                                            "docs/side_by_side-ANCHOR.html beside it)")
    p.add_argument("--only", metavar="ANCHOR",
                   help="only this file (train) or section (train-the-training-loop): a smaller page")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when --out differs from what the code gives (a stale page; "
                        "made with another Pygments, in its text only)")
    args = p.parse_args(argv)
    if args.check and args.only:
        p.error("--check compares the whole page with the code: leave out --only")
    out = args.out or default_out(args.only)
    up = way_up(out)
    try:
        page = render(only=args.only, up=up)
    except ValueError as e:
        p.error(str(e))
    if args.check:
        if not out.exists():
            print(f"{out} does not exist: write it with python -m common.side_by_side --out {out}")
            raise SystemExit(1)
        if stale(out.read_text(encoding="utf-8"), page):
            print(f"{out} is stale: regenerate it with python -m common.side_by_side --out {out}")
            raise SystemExit(1)
        print(f"{out} is up to date")
        return
    try:
        atomic_write_text(out, page)
    except OSError as e:
        p.exit(2, f"error: cannot write {out} ({e.strerror}): choose another --out\n")
    print(f"wrote {out}")
    for problem in check():
        print(f"not mirrored: {problem}")


if __name__ == "__main__":
    main()
