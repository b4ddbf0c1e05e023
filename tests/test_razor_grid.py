"""experiments/razor_grid.py: the razor beside the direct estimate over the noise column."""

from __future__ import annotations

import json

import pytest
from experiment_scripts import load_experiment


@pytest.fixture(scope="module")
def grid():
    return load_experiment("razor_grid.py")


def test_direct_outcome_reads_the_estimates_three_states(grid):
    assert grid.direct_outcome({"status": "determined", "count": 2, "range": [2, 2]}) == "2"
    assert grid.direct_outcome({"status": "approximate", "count": 0, "range": [0, 4]}) == "0+4"
    assert grid.direct_outcome({"status": "undetermined", "count": None,
                                "range": [1, 3]}) == "[1,3]"


def test_razor_outcome_reads_the_span_test_and_the_elbo(grid):
    class Found:
        def __init__(self, test, gain):
            self.evidence = {"span_test": test, "elbo": {"learned_minus_vanilla_nats": gain}}

    test = {"status": "undetermined", "count": None, "range": [0, 2]}
    assert grid.razor_outcome(Found(test, -40.0)) == "[0,2]"
    assert grid.razor_outcome(Found(test, 3.0)) == "0"  # the ELBO prefers vanilla
    assert grid.razor_outcome(Found(None, -40.0)) == "0"  # nothing moved the data


def test_table_orders_rows_and_reports_each_column(grid, tmp_path):
    rows = [
        {"system": "pendulum", "truth": 0, "noise": 0.0, "direct": "0", "razor": 0,
         "algebra": "none", "tested": 1, "supported": 0, "angles_deg": [], "warnings": 0,
         "wall_s": 52.3},
        {"system": "sho", "truth": 1, "noise": 0.01, "direct": "1", "razor": 0,
         "razor_outcome": "[0,1]", "algebra": "u(1)", "tested": 1, "supported": 1,
         "angles_deg": [0.4], "warnings": 0, "wall_s": 40.0, "confirmed": 1},
    ]
    path = tmp_path / "grid.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = grid.table(path).splitlines()
    assert lines[2] == "| sho | 1 | 0.01 | 1 | [0,1] (u(1)) | 1 of 1 | 0.4 | 40 | 1 |"
    assert lines[3] == "| pendulum | 0 | 0 | 0 | 0 (none) | 0 of 1 | — | 52 | — |"
    with pytest.raises(SystemExit, match="no results file"):
        grid.table(tmp_path / "missing.jsonl")
    # beside an earlier file: its razor count for the same cell, "—" where it has none
    earlier = tmp_path / "before.jsonl"
    earlier.write_text(json.dumps({**rows[0], "razor": 2}) + "\n")
    lines = grid.table(path, earlier).splitlines()
    assert lines[0].startswith("| system | truth | noise | direct | razor before | razor")
    assert lines[2] == "| sho | 1 | 0.01 | 1 | — | [0,1] (u(1)) | 1 of 1 | 0.4 | 40 | 1 |"
    assert lines[3] == "| pendulum | 0 | 0 | 0 | 2 | 0 (none) | 0 of 1 | — | 52 | — |"


@pytest.mark.slow
def test_one_run_answers_the_oscillator(grid, tmp_path):
    """A short discover run (20 epochs) on the noise-free oscillator: the direct estimate
    finds its one law and the row carries every column."""
    row = grid.one_run("sho", 0.0, tmp_path, epochs=20)
    assert row["truth"] == 1 and row["direct"] == "1"
    assert row["razor_outcome"] in {"0", "1"}
    assert set(row) >= {"razor", "razor_outcome", "algebra", "tested", "supported",
                        "angles_deg", "wall_s", "confirmed"}
    assert 0 <= row["confirmed"] <= 1
    results = tmp_path / "rows.jsonl"
    results.write_text(json.dumps(dict(row, direct="stale", razor_outcome="stale")) + "\n")
    (again,) = grid.redecide(results, tmp_path)
    assert again["direct"] == "1" and again["razor_outcome"] == row["razor_outcome"]
    assert again["wall_s"] == row["wall_s"]
    assert json.loads(results.read_text()) == again

