"""tasknb.book.output_diff: printed text of executed notebooks, masked and compared."""
from __future__ import annotations

import json

import pytest

from tasknb.book.output_diff import compare_runs, main, printed_text


def _notebook(path, outputs_per_cell):
    cells = [{"cell_type": "markdown", "source": "text", "metadata": {}}]
    for outputs in outputs_per_cell:
        cells.append({"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs, "execution_count": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def _stdout(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def test_printed_text_masks_times_and_skips_stderr(tmp_path):
    nb = tmp_path / "c1_demo.ipynb"
    _notebook(nb, [[_stdout("gain 0.125\ndone in 20.2 s\nD alone 14x faster\nlength ratio 3.4x\n"), {"output_type": "stream", "name": "stderr",
                                                             "text": "100%|###| 3/3 [00:02<00:00]"}],
                   [{"output_type": "execute_result", "data": {"text/plain": "0.5"}, "metadata": {}}]])
    assert printed_text(nb) == ["[0] gain 0.125", "[0] done in <time>", "[0] D alone <ratio> faster", "[0] length ratio 3.4x",
                                 "[1] 0.5"]


def test_compare_runs_finds_a_changed_digit(tmp_path, capsys):
    _notebook(tmp_path / "a/notebooks/part_c/c1_demo.ipynb", [[_stdout("err 0.3125 (took 1.5 s)\n")]])
    _notebook(tmp_path / "b/notebooks/part_c/c1_demo.ipynb", [[_stdout("err 0.3125 (took 9.0 s)\n")]])
    _notebook(tmp_path / "c/notebooks/part_c/c1_demo.ipynb", [[_stdout("err 0.3126 (took 1.5 s)\n")]])
    assert compare_runs(tmp_path / "a", tmp_path / "b") == {"c1": []}
    diff = compare_runs(tmp_path / "a", tmp_path / "c")["c1"]
    assert "-[0] err 0.3125 (took <time>)" in diff and "+[0] err 0.3126 (took <time>)" in diff
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "printed text differs" in capsys.readouterr().out


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare_runs(tmp_path / "nope", tmp_path)


def test_a_line_split_across_stream_chunks_reads_as_one(tmp_path):
    a, b = tmp_path / "a/c1_demo.ipynb", tmp_path / "b/c1_demo.ipynb"
    _notebook(a, [[_stdout("all checks passed\n")]])
    _notebook(b, [[_stdout("all checks "), _stdout("passed"), _stdout("\n")]])
    assert printed_text(a) == printed_text(b) == ["[0] all checks passed"]

