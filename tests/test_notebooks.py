"""Every notebook executes headlessly with papermill (quick profile), is paired with its
.ipynb, and rejects bad parameters with a message naming them."""
from pathlib import Path

import jupytext
import pytest

from tasknb.book import runner

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = runner.list_notebooks(REPO)


def test_notebooks_are_found():
    assert {"c1", "c2"} <= set(NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("nb_id", list(NOTEBOOKS))
def test_notebook_executes_in_quick_profile(executed_notebooks, nb_id):
    _, results = executed_notebooks
    path, error = results[nb_id]
    assert error is None, f"{nb_id} failed under papermill: {error}"
    nb = jupytext.read(path)
    text = "".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "all checks passed" in text, f"{nb_id}: its Checks section did not report success"


def _cells(nb):
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


@pytest.mark.parametrize("nb_id", list(NOTEBOOKS))
def test_jupytext_pairing_is_consistent(nb_id):
    md = NOTEBOOKS[nb_id]
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb} is missing: run `make pair`"
    text_nb, paired_nb = jupytext.read(md), jupytext.read(ipynb)
    assert "md:myst" in text_nb.metadata["jupytext"]["formats"] and "ipynb" in text_nb.metadata["jupytext"]["formats"]
    assert _cells(text_nb) == _cells(paired_nb), f"{md.name} and {ipynb.name} differ: run `make pair`"
    assert all(not c.get("outputs") for c in paired_nb.cells if c.cell_type == "code"), "commit .ipynb without outputs"


@pytest.mark.parametrize("nb_id", list(NOTEBOOKS))
def test_notebook_conventions(nb_id):
    nb = jupytext.read(NOTEBOOKS[nb_id])
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged `parameters`"
    assert any(c.cell_type == "markdown" and "## Checks" in c.source.splitlines() for c in nb.cells), \
        "the notebook must end with a `## Checks` section"
    assert "check_parameters(" in code[1].source, "parameters must be validated right after the parameters cell"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("nb_id, name, value, message", [
    ("c1", "rho", 1.5, r"rho must be in \[0, 1\]"),
    ("c2", "q", 2.0, r"q must be in \[-1, 1\]"),
    ("c3", "eta", -0.1, r"eta must be in \[0, 1\]"),
    ("c4", "lam", 0.0, r"lam must be a finite number > 0"),
    ("c5", "D", -5, r"D must be an integer >= 1"),
    ("c6", "rho", 2.0, r"rho must be in \[0, 1\]"),
    ("c7", "q", -1.5, r"q must be in \[-1, 1\]"),
    ("c8", "device", "tpu", r"device must be one of 'auto', 'cpu', 'cuda'"),
    ("c9", "n_classes", 1, r"n_classes must be an integer >= 2"),
    ("s1", "n_seeds", 1, r"n_seeds must be an integer >= 2"),
    ("s2", "n_grid", 0, r"n_grid must be an integer >= 3"),
    ("s3", "n_out", 1, r"n_out must be an integer >= 2"),
    ("s4", "n_seeds", 1, r"n_seeds must be an integer >= 5"),
    ("s5", "ckpt_every", 0, r"ckpt_every must be an integer >= 1"),
    ("s6", "tau", 1.5, r"tau must be in \[0, 1\]"),
    ("s7", "n_seeds", 2, r"n_seeds must be an integer >= 5"),
    ("n1", "block_sizes", [28, 5], r"block_sizes must divide the image side 28"),
    ("n2", "n_cka", 10000, r"n_cka must be at most n_test"),
    ("n3", "n_pairs", 1, r"n_pairs must be an integer >= 2"),
    ("n4", "target", "imagenet", r"target must be one of"),
    ("n5", "n_eval", 1000, r"n_eval must be at most n_train"),
    ("r1", "fractions", [0.2, 0.5, 1.0], r"fractions must start at 0\.0"),
    ("r2", "n_runs", 1, r"n_runs must be an integer >= 2"),
    ("r3", "bump", -1.0, r"bump must be in \[0\.1, 10\]"),
    ("r4", "dt", 0.5, r"dt must be in \[1e-05, 0\.05\]"),
    ("r5", "fractions", [0.0, 1.5], r"fractions must be in \[0, 1\]"),
    ("r6", "budgets", [5000], r"budgets must be <= max_steps"),
])
def test_bad_notebook_parameter_stops_with_its_name(tmp_path, nb_id, name, value, message):
    import re

    with pytest.raises(Exception) as info:
        runner.execute([nb_id], out_dir=tmp_path, parameters={name: value}, root=REPO, log=lambda *_: None)
    assert re.search(message, str(info.value)), str(info.value)[-2000:]


def test_runner_validates_profile_and_ids(tmp_path):
    with pytest.raises(ValueError, match="profile must be one of 'quick', 'full'"):
        runner.execute(["c1"], profile="huge", out_dir=tmp_path, root=REPO)
    with pytest.raises(ValueError, match="notebooks must be one of"):
        runner.execute(["z9"], out_dir=tmp_path, root=REPO)


@pytest.mark.parametrize("nb_id", list(NOTEBOOKS))
def test_full_profile_has_parameters_for_every_notebook(nb_id):
    import yaml

    params = runner.profile_parameters(NOTEBOOKS[nb_id], "full")
    assert params, f"notebooks/.../full/{nb_id}.yml is empty"
    nb = jupytext.read(NOTEBOOKS[nb_id])
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and not line.startswith("#")}
    assert set(params) <= names, f"full/{nb_id}.yml sets unknown parameters {set(params) - names}"
    assert runner.profile_parameters(NOTEBOOKS[nb_id], "quick") == {}


def test_runner_cli_lists_notebooks(capsys):
    assert runner.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "c1" in out and "c2" in out
