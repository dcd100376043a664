"""Execute the book's notebooks headlessly with papermill, under a profile.

Profiles
--------
``quick`` (default)  the defaults of each notebook's ``parameters`` cell: small
                     sizes that run on a 2-core CPU in about a minute each.
``full``             paper-faithful sizes for one GPU, read from
                     ``notebooks/<part>/full/<id>.yml`` (one YAML mapping per notebook).

Usage::

    python -m tasknb.book.runner                          # every notebook, quick
    python -m tasknb.book.runner --profile full --notebooks c2
    python -m tasknb.book.runner --notebooks c1 -p eta 0.5 -p D 400

Notebooks are authored as Jupytext MyST-markdown files (``notebooks/part_x/<id>_<slug>.md``);
each is converted in memory and executed by papermill; the executed ``.ipynb``
lands under ``--out`` with the repository layout (``notebooks/part_c/...``), ready
for :mod:`tasknb.book` to render.  A failing cell stops that notebook and makes
the run exit non-zero.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import yaml

from ..validation import check_choice

__all__ = ["PROFILES", "repo_root", "list_notebooks", "profile_parameters", "execute", "main"]

PROFILES = ("quick", "full")
_NB_NAME = re.compile(r"^([a-z]\d+)_[a-z0-9_]+\.md$")


def repo_root() -> Path:
    """The repository holding ``notebooks/`` (the parent of the tasknb package)."""
    return Path(__file__).resolve().parents[2]


def list_notebooks(root: Path | None = None) -> dict[str, Path]:
    """Map notebook id (e.g. ``"c1"``) -> its text source, in book order."""
    root = Path(root) if root else repo_root()
    found = {}
    for p in sorted((root / "notebooks").glob("part_*/*.md")):
        m = _NB_NAME.match(p.name)
        if m:
            found[m.group(1)] = p
    return dict(sorted(found.items(), key=lambda kv: (kv[0][0], int(kv[0][1:]))))


def profile_parameters(source: Path, profile: str) -> dict:
    """Parameters a profile injects into one notebook ({} for ``quick``)."""
    check_choice("profile", profile, PROFILES)
    if profile == "quick":
        return {}
    nb_id = _NB_NAME.match(source.name).group(1)
    path = source.parent / "full" / f"{nb_id}.yml"
    if not path.exists():
        raise FileNotFoundError(f"profile 'full' needs {path} (a YAML mapping of parameter values)")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values")
    return params


def _parse_overrides(pairs) -> dict:
    return {name: yaml.safe_load(value) for name, value in (pairs or [])}


def execute(notebooks=None, profile: str = "quick", out_dir="_build/executed", parameters: dict | None = None,
            root: Path | None = None, kernel: str = "python3", timeout: int = 3600, log=print) -> list[Path]:
    """Execute notebooks with papermill; return the executed ``.ipynb`` paths.

    Parameters
    ----------
    notebooks : ids such as ``["c1", "c2"]``; None runs them all.
    profile : "quick" or "full".
    out_dir : folder for executed notebooks (mirrors ``notebooks/part_x/``), relative to
        the current directory.
    parameters : extra values injected into every notebook (override the profile's).
    timeout : seconds allowed per cell.
    """
    import jupytext
    import nbformat
    import papermill as pm

    check_choice("profile", profile, PROFILES)
    root = Path(root) if root else repo_root()
    available = list_notebooks(root)
    ids = list(available) if notebooks is None else list(notebooks)
    for nb_id in ids:
        check_choice("notebooks", nb_id, available)
    out_dir = Path(out_dir).resolve()
    done, summary = [], {}
    for nb_id in ids:
        src = available[nb_id]
        params = {**profile_parameters(src, profile), **(parameters or {})}
        rel = src.relative_to(root).with_suffix(".ipynb")
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = jupytext.read(src)
        staged = target.with_name(target.stem + ".input.ipynb")
        nbformat.write(nb, staged)
        log(f"[runner] {nb_id} ({profile}) {src.relative_to(root)} params={params}")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(staged), str(target), parameters=params, kernel_name=kernel,
                                cwd=str(src.parent), progress_bar=False, execution_timeout=timeout)
        finally:
            staged.unlink(missing_ok=True)
        dt = time.perf_counter() - t0
        summary[nb_id] = {"seconds": round(dt, 1), "profile": profile, "parameters": params}
        log(f"[runner] {nb_id} done in {dt:.1f} s -> {target}")
        done.append(target)
    summary_path = out_dir / f"run_summary_{profile}.json"
    old = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    old.update(summary)
    summary_path.write_text(json.dumps(old, indent=2))
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tasknb.runner", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=PROFILES)
    ap.add_argument("--notebooks", nargs="*", default=None, help="ids such as c1 c2 (default: all)")
    ap.add_argument("--out", default="_build/executed", help="folder for executed notebooks")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="inject NAME=VALUE (YAML-parsed) into every selected notebook")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = ap.parse_args(argv)
    if args.list:
        for nb_id, p in list_notebooks().items():
            print(f"{nb_id:5s} {p.relative_to(repo_root())}")
        return 0
    try:
        execute(args.notebooks, args.profile, args.out, _parse_overrides(args.parameter), timeout=args.timeout)
    except Exception as exc:  # papermill's PapermillExecutionError carries the failing cell
        print(f"[runner] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
