#!/usr/bin/env python3
"""Re-execute notebooks in place and store their outputs, reproducibly (`make outputs`).

For each notebook given: run it top to bottom on a fresh kernel (cwd = the
notebook's folder, as the book build and nbval do), keep the widget state
(`store_widget_state`, so widgets show in JupyterLab and on the static page),
then remove what changes from run to run and is not content:

- per-cell `metadata.execution` (kernel timestamps);
- widget model ids, which ipywidgets draws at random: they are renumbered in a
  fixed order (the widget views in the order of the outputs, each followed by the
  models it references, then the remaining models in the order the kernel created
  them), so the file does not change when nothing changed.

Run it with the course's venv (`make outputs`), which sets PYTHONHASHSEED=0 and
unsets MPLBACKEND so that every run sees the same environment. Exits non-zero if
a cell raises; the notebook on disk is then left untouched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
REF = re.compile(r"IPY_MODEL_([0-9a-f]{32})")


def _ordered_model_ids(nb: dict) -> list[str]:
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    order: list[str] = []
    seen: set[str] = set()

    def visit(model_id: str) -> None:
        # Depth-first over references, in the textual order of the sorted JSON.
        stack = [model_id]
        while stack:
            mid = stack.pop()
            if mid in seen:
                continue
            seen.add(mid)
            order.append(mid)
            refs = REF.findall(json.dumps(state.get(mid, {}), sort_keys=True))
            stack.extend(reversed(refs))

    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view and "model_id" in view:
                visit(view["model_id"])
    # Then models no view reaches (links, ...), in the order the kernel created them:
    # nbclient records state in the order of the kernel's comm messages.
    for mid in state:
        visit(mid)
    return order


def normalise(nb: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """Drop timestamps and give widget models ids that depend only on the notebook."""
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    order = _ordered_model_ids(nb)
    if not order:
        return nb
    new_ids = {old: hashlib.sha256(f"{stem}:{i}".encode()).hexdigest()[:32] for i, old in enumerate(order)}
    text = json.dumps(nb)
    text = re.sub(r"[0-9a-f]{32}", lambda m: new_ids.get(m.group(0), m.group(0)), text)
    out = nbformat.from_dict(json.loads(text))
    widgets = out.metadata.get("widgets", {}).get(WIDGET_STATE)
    if widgets and "state" in widgets:
        rank = {new: i for i, new in enumerate(new_ids.values())}
        widgets["state"] = dict(sorted(widgets["state"].items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return out


def store(path: Path, timeout: int) -> bool:
    """Execute one notebook; write it back if anything changed. Returns True if it changed."""
    before = path.read_text(encoding="utf8")
    nb = nbformat.reads(before, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        allow_errors=False,
        record_timing=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    nb = normalise(nb, path.stem)
    nbformat.validate(nb)
    after = nbformat.writes(nb)
    if not after.endswith("\n"):
        after += "\n"
    if after == before:
        return False
    path.write_text(after, encoding="utf8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=int, default=120, help="seconds per cell (as the book build)")
    args = ap.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if not path.is_file():
            print(f"store_outputs: {path}: no such notebook", file=sys.stderr)
            status = 1
            continue
        try:
            changed = store(path, args.timeout)
        except Exception as exc:  # noqa: BLE001 - a raising cell: report it, keep the file as it was
            print(f"store_outputs: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: {'outputs updated' if changed else 'unchanged'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
