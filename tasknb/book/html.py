"""Render already-executed notebooks into the HTML book (Jupyter Book 1.x).

The book never executes code (``execute_notebooks: off`` in ``_config.yml``):
``tasknb.book.runner`` executes the notebooks with papermill into a folder that
mirrors the repository (``<executed>/notebooks/part_c/c1_chmm_generator.ipynb``),
and :func:`build` renders those files together with the prose pages.

It stages a source tree beside the output (``_build/html_src/`` for ``_build/html``) (``_config.yml``, ``_toc.yml``,
``book/`` and the executed ``notebooks/**.ipynb``), runs ``jupyter-book build``
on it with warnings treated as errors, so a broken reference, a missing page or
a bad notebook fails the build, and copies the HTML to ``html_dir``.

Usage::

    python -m tasknb.book [--executed _build/executed] [--html _build/html]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["build", "main"]

LOG_TAIL_LINES = 60


def _default_repo_root() -> Path:
    package_parent = Path(__file__).resolve().parents[2]
    if (package_parent / "_config.yml").is_file():
        return package_parent
    return Path.cwd()


def _jupyter_book_command() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


def _notebook_errors(path: Path) -> list[str]:
    """Names of the error outputs stored in an executed notebook."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [
        f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
        for cell in notebook.get("cells", [])
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def _stage(repo_root: Path, executed_dir: Path, source_dir: Path) -> int:
    """Copy config, prose pages and executed notebooks into ``source_dir``."""
    if source_dir.exists():
        shutil.rmtree(source_dir)
    source_dir.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(repo_root / name, source_dir / name)
    shutil.copytree(repo_root / "book", source_dir / "book",
                    ignore=shutil.ignore_patterns("*.sh", ".ipynb_checkpoints"))
    notebooks = sorted(p for p in executed_dir.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for notebook in notebooks:
        errors = _notebook_errors(notebook)
        if errors:
            raise RuntimeError(f"executed notebook {notebook} holds errors: {'; '.join(errors)}")
        target = source_dir / notebook.relative_to(executed_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(notebook, target)
    return len(notebooks)


def build(executed_dir: str | Path = "_build/executed", html_dir: str | Path = "_build/html",
          repo_root: str | Path | None = None) -> Path:
    """Build the HTML book from executed notebooks; return the path of ``index.html``.

    Parameters
    ----------
    executed_dir : path, default "_build/executed"
        Folder of executed notebooks laid out like the repository
        (``notebooks/<part>/<id>_<name>.ipynb``). Relative paths are taken from ``repo_root``.
    html_dir : path, default "_build/html"
        Where the HTML goes (replaced). Relative paths are taken from ``repo_root``.
    repo_root : path, optional
        Folder holding ``_config.yml``, ``_toc.yml`` and ``book/``; default: the
        repository this package lives in, else the current directory.

    Raises
    ------
    FileNotFoundError
        If the configuration, the executed notebooks or ``book/_widget_js`` are missing.
    RuntimeError
        If a notebook holds an error output, or Jupyter Book fails or warns
        (the message ends with the tail of its log).
    """
    root = Path(repo_root).resolve() if repo_root is not None else _default_repo_root()
    executed = (root / executed_dir).resolve()
    html = (root / html_dir).resolve()
    for name in ("_config.yml", "_toc.yml", "book"):
        if not (root / name).exists():
            raise FileNotFoundError(f"repo_root {root} has no {name}; pass the repository folder as repo_root")
    widget_js = root / "book" / "_widget_js"
    if not (widget_js / "embed-amd.js").is_file() or not (widget_js / "require.js").is_file():
        raise FileNotFoundError(
            f"{widget_js} lacks the widget JavaScript (require.js, embed-amd.js); "
            f"run `bash book/fetch_widget_js.sh` once (it needs npm)"
        )
    if not executed.is_dir():
        raise FileNotFoundError(f"executed_dir {executed} does not exist; run `python -m tasknb.book.runner` first")

    source = html.parent / f"{html.name}_src"   # staging beside the output, so builds to other folders never clash
    count = _stage(root, executed, source)
    if count == 0:
        raise FileNotFoundError(f"executed_dir {executed} holds no .ipynb; run `python -m tasknb.book.runner` first")

    command = [*_jupyter_book_command(), "build", str(source), "--builder", "html",
               "--all", "-W", "--keep-going"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=source, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + "\n" + result.stderr).strip().splitlines()
    built = source / "_build" / "html"
    if result.returncode != 0 or not (built / "index.html").is_file():
        tail = "\n".join(log[-LOG_TAIL_LINES:])
        raise RuntimeError(
            f"jupyter-book build failed (exit code {result.returncode}) after {seconds:.1f} s; "
            f"last lines of its log:\n{tail}"
        )
    if html.exists():
        shutil.rmtree(html)
    html.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, html)
    print(f"tasknb.book: built {count} notebooks in {seconds:.1f} s -> {html / 'index.html'}")
    return html / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasknb.book", description=__doc__.splitlines()[0])
    parser.add_argument("--executed", default="_build/executed", help="folder of executed notebooks")
    parser.add_argument("--html", default="_build/html", help="output folder for the HTML")
    parser.add_argument("--repo-root", default=None, help="folder with _config.yml, _toc.yml and book/")
    args = parser.parse_args(argv)
    try:
        index = build(args.executed, args.html, args.repo_root)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"tasknb.book: error: {error}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
