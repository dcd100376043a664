"""Shared fixtures: the quick-profile execution of every notebook and the built book.

Executing the notebooks and building the book are the slow parts of the suite, so
they happen once per session, in a temporary folder, and every test that needs
them shares the result.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Tests run on the CPU with the machine's cores, whatever the host has.
os.environ.setdefault("TASKNB_DEVICE", "cpu")
torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory):
    """Run every notebook with papermill (quick profile) once; map id -> (path or None, error or None)."""
    from tasknb.book.runner import execute, list_notebooks

    out = tmp_path_factory.mktemp("executed")
    # Part N's pre-trained source model is cached on disk; this run trains its own (once, shared by
    # the N notebooks), so a model cached by older code can never stand in for the current code's.
    os.environ["TASKNB_CACHE"] = str(tmp_path_factory.mktemp("model_cache"))
    results = {}
    for nb_id in list_notebooks():
        try:
            path = execute([nb_id], profile="quick", out_dir=out, root=REPO)[0]
            results[nb_id] = (path, None)
        except Exception as exc:  # recorded, reported by the test of that notebook
            results[nb_id] = (None, exc)
    return out, results


@pytest.fixture(scope="session")
def built_book(executed_notebooks, tmp_path_factory):
    """The HTML book rendered from the executed notebooks; the folder holding index.html."""
    from tasknb.book.html import build

    executed_dir, results = executed_notebooks
    failed = [k for k, (_, err) in results.items() if err is not None]
    if failed:
        pytest.fail(f"cannot build the book: notebooks {failed} failed to execute")
    html = tmp_path_factory.mktemp("html")
    index = build(executed_dir=executed_dir, html_dir=html, repo_root=REPO)
    return Path(index).parent
