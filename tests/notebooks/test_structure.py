"""Structure of the book and of every lab notebook.

- `_toc.yml` lists every `book/*.md` and `notebooks/*.ipynb` exactly once, and every
  entry exists; a lab sits in the toc under the page of the same slug (the one-slug rule).
- Every lab follows the skeleton of COURSE.md ("A lab notebook"): one H1 first, an
  overview, a setup cell importing only `labsupport` and the standard library, sections,
  exercises with folded solutions (sphinx-exercise), a quiz, a "Kernel twin" section and a
  "Summary" last; its stored outputs are complete (execution counts 1..n, no errors, no stderr).

nbval (the same `make test` run) then proves the stored outputs are reproduced.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
ALLOWED_IMPORT_ROOTS = set(sys.stdlib_module_names) | {"labsupport", "__future__"}


# --------------------------------------------------------------------------- the toc


def toc_entries() -> list[tuple[str, str | None]]:
    """Every `file:` of _toc.yml in reading order, as (entry, parent entry or None)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    assert toc.get("format") == "jb-book", "_toc.yml must use format: jb-book"
    found: list[tuple[str, str | None]] = [(toc["root"], None)]

    def walk(items: list[dict], parent: str | None) -> None:
        for item in items or []:
            if "file" in item:
                found.append((item["file"], parent))
            if "sections" in item:
                walk(item["sections"], item.get("file", parent))
            if "chapters" in item:
                walk(item["chapters"], item.get("file", parent))

    walk(toc.get("parts", []), None)
    walk(toc.get("chapters", []), None)
    return found


def strip_suffix(entry: str) -> str:
    for suffix in (".md", ".ipynb"):
        if entry.endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def test_every_toc_entry_exists_once() -> None:
    entries = [strip_suffix(e) for e, _ in toc_entries()]
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert not duplicates, f"listed more than once in _toc.yml: {duplicates}"
    for entry in entries:
        files = [ROOT / f"{entry}{s}" for s in (".md", ".ipynb") if (ROOT / f"{entry}{s}").is_file()]
        assert files, f"_toc.yml lists {entry!r}, but neither {entry}.md nor {entry}.ipynb exists"
        assert len(files) == 1, f"both {entry}.md and {entry}.ipynb exist: the .md would hide the notebook"


@pytest.mark.parametrize("path", PAGES + NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_page_is_in_the_toc_once(path: Path) -> None:
    entry = str(path.relative_to(ROOT).with_suffix("")).replace("\\", "/")
    count = [strip_suffix(e) for e, _ in toc_entries()].count(entry)
    assert count == 1, f"{path.relative_to(ROOT)} appears {count} times in _toc.yml (it must appear once)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_slug_rule(nb: Path) -> None:
    slug = nb.stem
    module = slug.replace("-", "_")
    parents = {strip_suffix(e): p for e, p in toc_entries()}
    assert parents.get(f"notebooks/{slug}") == f"book/{slug}", (
        f"notebooks/{slug} must be listed in _toc.yml under `sections:` of book/{slug}"
    )
    for required in (f"book/{slug}.md", f"labsupport/{module}.py", f"tests/unit/test_{module}.py"):
        assert (ROOT / required).is_file(), f"one-slug rule: {required} is missing for notebooks/{slug}.ipynb"


# --------------------------------------------------------------------------- lab skeleton


@dataclass
class Heading:
    level: int
    text: str
    cell: int


@dataclass
class Directive:
    name: str
    argument: str
    options: dict[str, str]
    cell: int


@dataclass
class Scan:
    headings: list[Heading] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)


FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*(\{([\w:-]+)\})?\s*(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
OPTION = re.compile(r"^\s*:([\w-]+):\s*(.*)$")


def scan_markdown(source: str, cell: int, into: Scan) -> None:
    """Headings (outside code fences) and MyST directives of one markdown cell."""
    lines = source.splitlines()
    stack: list[tuple[str, bool]] = []  # open fences: (marker, is_directive)
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            marker, name = m.group(1), m.group(3)
            top = stack[-1] if stack else None
            closes = (
                top and marker[0] == top[0][0] and len(marker) >= len(top[0]) and not name and not m.group(4)
            )
            if closes:
                stack.pop()
            elif not (top and not top[1]):  # fences inside a code block are text
                if name:
                    options: dict[str, str] = {}
                    j = i + 1
                    while j < len(lines) and (om := OPTION.match(lines[j])):
                        options[om.group(1)] = om.group(2).strip()
                        j += 1
                    into.directives.append(Directive(name, m.group(4).strip(), options, cell))
                stack.append((marker, bool(name)))
            i += 1
            continue
        in_code = any(not is_directive for _, is_directive in stack)
        if not in_code and (h := HEADING.match(line)):
            into.headings.append(Heading(len(h.group(1)), h.group(2), cell))
        i += 1


def load(nb: Path) -> dict:
    return json.loads(nb.read_text(encoding="utf8"))


def cells_of(nb: Path) -> list[dict]:
    return load(nb)["cells"]


def source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def scan(nb: Path) -> Scan:
    result = Scan()
    for index, cell in enumerate(cells_of(nb)):
        if cell["cell_type"] == "markdown":
            scan_markdown(source(cell), index, result)
    return result


def first_heading(headings: list[Heading], pattern: str, level: int | None = None) -> Heading | None:
    for h in headings:
        if re.search(pattern, h.text, re.IGNORECASE) and (level is None or h.level == level):
            return h
    return None


def code_cells(nb: Path) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(cells_of(nb)) if c["cell_type"] == "code"]


labs = pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)


@labs
def test_one_h1_first(nb: Path) -> None:
    cells = cells_of(nb)
    assert cells and cells[0]["cell_type"] == "markdown", "the first cell must be markdown with the H1 title"
    assert HEADING.match(source(cells[0]).lstrip().splitlines()[0] or ""), (
        "the first line must be the H1 title"
    )
    h1s = [h for h in scan(nb).headings if h.level == 1]
    assert len(h1s) == 1, f"exactly one H1 expected, found {[h.text for h in h1s]}"
    assert h1s[0].cell == 0 and source(cells[0]).lstrip().startswith("# "), "the H1 must come first"


@labs
def test_overview_before_setup(nb: Path) -> None:
    prose = []
    for cell in cells_of(nb):
        if cell["cell_type"] == "code":
            break
        prose += [ln for ln in source(cell).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    words = len(" ".join(prose).split())
    assert words >= 20, (
        f"an overview (what the learner builds and sees) must precede the setup cell; {words} words"
    )


@labs
def test_setup_cell_imports_only_labsupport_and_stdlib(nb: Path) -> None:
    cells = code_cells(nb)
    assert cells, "a lab has code cells"
    tree = ast.parse(source(cells[0][1]))
    assert tree.body, "the setup cell is empty"
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom)), (
            f"the setup cell holds only imports; line {node.lineno} is a {type(node).__name__}"
        )
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail("relative import in the setup cell")
        for name in names:
            assert name.split(".")[0] in ALLOWED_IMPORT_ROOTS, (
                f"the setup cell imports {name!r}: only labsupport and the standard library are allowed"
            )


@labs
def test_sections_in_order(nb: Path) -> None:
    headings = scan(nb).headings
    h2 = [h for h in headings if h.level == 2]
    exercises = first_heading(h2, r"exercise")
    twin = first_heading(h2, r"kernel twin")
    summary = first_heading(h2, r"^summary")
    assert exercises, "an H2 'Exercises' section is required"
    assert twin, "an H2 'Kernel twin' section is required"
    assert summary, "an H2 'Summary' section is required"
    assert h2.index(exercises) < h2.index(twin) < h2.index(summary), (
        "order must be: sections, Exercises, Kernel twin, Summary"
    )
    assert h2[-1] is summary, f"'Summary' must be the last H2, found {h2[-1].text!r} after it"
    assert h2.index(exercises) >= 1, "at least one content section must come before the exercises"
    quiz = first_heading(headings, r"quiz|self-check")
    assert quiz, "a self-check quiz heading is required (e.g. '### Quiz')"
    assert exercises.cell <= quiz.cell <= twin.cell, (
        "the quiz belongs with the exercises, before the kernel twin"
    )


@labs
def test_exercises_have_folded_solutions(nb: Path) -> None:
    directives = scan(nb).directives
    exercises = [d for d in directives if d.name in ("exercise", "exercise-start")]
    solutions = [d for d in directives if d.name in ("solution", "solution-start")]
    assert exercises, "at least one {exercise} directive (sphinx-exercise) is required"
    labels = []
    for ex in exercises:
        assert ex.options.get("label"), (
            f"exercise in cell {ex.cell} needs a :label: so its solution can name it"
        )
        labels.append(ex.options["label"])
    targets = []
    for sol in solutions:
        assert "dropdown" in sol.options.get("class", "").split(), (
            f"solution in cell {sol.cell} must be folded (`:class: dropdown`)"
        )
        assert sol.argument in labels, (
            f"solution in cell {sol.cell} names {sol.argument!r}, not an exercise label"
        )
        targets.append(sol.argument)
    missing = [label for label in labels if label not in targets]
    assert not missing, f"exercises without a solution: {missing}"
    ends = sum(d.name == "solution-end" for d in directives)
    starts = sum(d.name == "solution-start" for d in directives)
    assert ends == starts, f"{starts} {{solution-start}} but {ends} {{solution-end}}"


@labs
def test_stored_outputs_complete(nb: Path) -> None:
    cells = code_cells(nb)
    counts = [c.get("execution_count") for _, c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"execution counts must be 1..{len(cells)} in order (run `make outputs`); found {counts}"
    )
    for n, (index, cell) in enumerate(cells):
        outputs = cell.get("outputs", [])
        for out in outputs:
            assert out["output_type"] != "error", f"cell {index} stores an error: {out.get('ename')}"
            assert not (out["output_type"] == "stream" and out.get("name") == "stderr"), (
                f"cell {index} stores stderr output: {''.join(out.get('text', ''))[:200]!r}"
            )
        if n > 0:
            assert outputs, f"code cell {index} has no stored output (every cell after setup shows something)"
