"""Compare what two runs of the book printed, notebook by notebook.

A refactor of ``tasknb`` should leave every number the notebooks print unchanged. This tool reads
two folders of executed notebooks (as written by ``python -m tasknb.runner --out DIR``), extracts
from each code cell its printed text (``stdout`` streams, ``text/plain`` results, errors) and reports
the lines that differ. Wall-clock times (``done in 20.2 s``), thread counts and widget model ids are
masked first, as are speed ratios on the lines that report times (``14x faster``), since they
change from run to run; everything else, every digit included, must match.

Usage::

    python -m tasknb.book.output_diff BEFORE_DIR AFTER_DIR [--notebooks c4 c5]

exits 0 when every notebook printed the same text, 1 otherwise (the differing lines are printed).
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

__all__ = ["MASKS", "printed_text", "executed_notebooks", "compare_runs", "main"]

#: (pattern, replacement) applied to every printed line before comparing
MASKS = (
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b"), "<time>"),        # "done in 20.2 s", "1.3 min"
    (re.compile(r"\(\d+ threads?\)"), "(<threads>)"),
    (re.compile(r"model_id='[0-9a-f]+'"), "model_id=<id>"),
    (re.compile(r"\bat 0x[0-9a-f]+\b"), "at <address>"),
)


#: on a line that reports a wall-clock time, ratios such as ``14x`` are speed-ups and masked too
_RATIO = re.compile(r"\b\d+(?:\.\d+)?x\b")


def _mask(line: str) -> str:
    for pattern, replacement in MASKS:
        line = pattern.sub(replacement, line)
    if "<time>" in line or "faster" in line or "slower" in line:
        line = _RATIO.sub("<ratio>", line)
    return line


def printed_text(path: str | Path) -> list[str]:
    """The printed lines of one executed notebook, masked, each prefixed with its code-cell number.

    Reads stdout streams, ``text/plain`` display data / execute results and error tracebacks; stderr
    (progress bars, warnings with timings) and images are left out.
    """
    nb = json.loads(Path(path).read_text())
    lines: list[str] = []
    code_cells = (c for c in nb.get("cells", []) if c.get("cell_type") == "code")
    for index, cell in enumerate(code_cells):
        texts: list[str] = []            # consecutive stdout chunks are one text (a line may span chunks)
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream" and out.get("name") == "stdout":
                chunk = "".join(out.get("text", ""))
                if texts and texts[-1] is not None and not texts[-1].endswith("\n"):
                    texts[-1] += chunk
                else:
                    texts.append(chunk)
                continue
            if kind in ("execute_result", "display_data"):
                texts.append("".join(out.get("data", {}).get("text/plain", "")))
            elif kind == "error":
                texts.append(f"{out.get('ename')}: {out.get('evalue')}")
            else:
                continue
            texts.append(None)           # a rich output ends a run of stdout chunks
        for text in texts:
            if text is not None:
                lines.extend(f"[{index}] {_mask(line)}" for line in text.splitlines())
    return lines


def executed_notebooks(folder: str | Path) -> dict[str, Path]:
    """Map a notebook's id (``c4``) to its executed ``.ipynb`` under ``folder`` (searched recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"executed-notebook folder {folder} does not exist")
    found = {}
    for p in sorted(folder.rglob("*.ipynb")):
        nb_id = p.name.split("_", 1)[0]
        found[nb_id] = p
    return found


def compare_runs(before: str | Path, after: str | Path, notebooks=None) -> dict[str, list[str]]:
    """Differences of printed text, ``{notebook id: unified-diff lines}``; empty lists where equal.

    A notebook present in one run only is reported as a difference.
    """
    a, b = executed_notebooks(before), executed_notebooks(after)
    ids = sorted(set(a) | set(b)) if notebooks is None else list(notebooks)
    result = {}
    for nb_id in ids:
        if nb_id not in a or nb_id not in b:
            result[nb_id] = [f"only in {'after' if nb_id in b else 'before'} run"]
            continue
        diff = difflib.unified_diff(printed_text(a[nb_id]), printed_text(b[nb_id]), "before", "after",
                                    lineterm="", n=0)
        result[nb_id] = [line for line in diff]
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasknb.book.output_diff", description=__doc__.splitlines()[0])
    ap.add_argument("before", help="folder of executed notebooks (the reference run)")
    ap.add_argument("after", help="folder of executed notebooks (the run to check)")
    ap.add_argument("--notebooks", nargs="*", default=None, help="ids such as c4 s3 (default: all)")
    args = ap.parse_args(argv)
    diffs = compare_runs(args.before, args.after, args.notebooks)
    after = executed_notebooks(args.after)
    changed = 0
    for nb_id, lines in diffs.items():
        if lines:
            changed += 1
            print(f"== {nb_id}: printed text differs")
            print("\n".join(lines))
        else:
            print(f"== {nb_id}: identical ({len(printed_text(after[nb_id]))} printed lines)")
    print(f"{len(diffs) - changed} of {len(diffs)} notebooks printed identical text")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
