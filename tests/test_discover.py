"""Discovery on a user's data: trajectory files in `run`, `pyro-razor discover` end to end, the
discovery.json contract."""

from __future__ import annotations

import json

import pytest
import torch

from pyro_razor.cli import main
from pyro_razor.configio import dump_toml
from pyro_razor.runs import RunError
from pyro_razor.systems import make_system, simulate
from pyro_razor.systems.files import write_trajectories

F64 = torch.float64


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path / "cache"))


def oscillator_file(path, B=6, n=6, dt=0.3, scale=(1.0, 1.0, 1.0, 1.0)):
    """Two uncoupled oscillators in (possibly) badly scaled units, written to ``path``."""
    system = make_system("oscillators", n=2)
    x0 = torch.randn(B, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    trajectories = simulate(system, x0, n, dt) * torch.tensor(scale, dtype=F64)
    write_trajectories(path, trajectories, dt, names=["x", "y", "px", "py"])
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-razor: error: "), err
    return err[0]


def test_run_accepts_a_trajectory_file_and_refuses_an_oracle(tmp_path, capsys):
    data = oscillator_file(tmp_path / "osc.npz", scale=(1e3, 10.0, 1e-3, 0.1))
    config = {
        "name": "filerun", "variants": ["vanilla", "learned"],
        "data": {"file": "osc.npz", "test_fraction": 0.34},  # relative to the config file
        "model": {"hidden": [8], "tau_samples": 2, "integrator_steps": 2, "num_quantities": 2},
        "train": {"epochs": 2, "num_particles": 2},
        "evaluation": {"num_samples": 2, "tau_samples": 4, "rollout_points": 10,
                       "rollout_trajectories": 1, "grid": 5},
    }
    (tmp_path / "c.toml").write_text(dump_toml(config))
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["system"] == str(data) and summary["n_train_transitions"] == 4 * 5
    resolved = (tmp_path / "run" / "config.toml").read_text()
    assert str(data) in resolved and "standardise = true" in resolved and "dt = 0.3" in resolved
    sym = json.loads((tmp_path / "run" / "learned" / "symmetry.json").read_text())
    assert sym["true_dim"] == 0 and len(sym["displacements"]) == 2
    config["variants"] = ["vanilla", "oracle"]
    (tmp_path / "c.toml").write_text(dump_toml(config))
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "other")]) == 2
    assert "has no ground-truth generators" in one_line_error(capsys)


def test_discover_end_to_end_writes_the_answer_and_its_contract(tmp_path, capsys):
    data = oscillator_file(tmp_path / "osc.csv")
    out = tmp_path / "found"
    args = ["discover", str(data), "--epochs", "3", "--out", str(out), "--no-progress",
            "--confirm-epochs", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "chosen settings: K = 6, MLP 4-64-64-1" in printed and "verdict:" in printed
    assert "learned: evaluating (8 weight draws x 256 symmetry samples" in printed
    # an overall estimate before training, from timed steps of both models
    estimate = next(line for line in printed.splitlines() if line.startswith("expected time"))
    seconds = [float(w.strip("~")) for w in estimate.replace(",", " ").split()
               if w.startswith("~")]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)
    assert "then up to" in estimate and "per-quantity refits" in estimate
    assert "\nvanilla: -ELBO/N " in printed and "\nlearned: -ELBO/N " in printed
    record = json.loads((out / "discovery.json").read_text())
    assert isinstance(record["n_found"], int) and record["n_found"] == len(record["quantities"])
    assert set(record["algebra"]) >= {"dimension", "name", "closure_error",
                                      "structure_constants"}
    assert set(record["evidence"]["elbo"]) >= {"vanilla_neg_elbo_per_n", "learned_neg_elbo_per_n",
                                               "learned_minus_vanilla_nats", "n_transitions"}
    assert isinstance(record["verdict"], str) and record["names"] == ["x", "y", "px", "py"]
    assert record["settings"]["phase_dim"] == 4 and record["settings"]["num_quantities"] == 6
    # training averages over S = 4 symmetry samples with P = 4 weight samples, and so do the
    # refits of the per-quantity evidence
    assert record["settings"]["tau_samples"] == 4 and record["settings"]["particles"] == 4
    for q in record["quantities"]:
        assert q["formula"].startswith(q["label"] + " = ")
        assert len(q["A"]) == 4 and len(q["b"]) == 4
    text = (out / "discovery.txt").read_text()
    assert text.startswith("direct estimate: ") and "\nrazor: -ELBO/N: vanilla " in text
    if record["n_found"]:  # the header says how a small coefficient is written (4e-3)
        assert "below 0.01 in scientific notation" in text
    assert record["direct"]["summary"] == text.splitlines()[0].rsplit(" [", 1)[0]
    assert (out / "figures" / "discovery.png").is_file()
    # the learned quantities started at the 4 direct candidates of u(2), plus 2 spare ones
    evidence = record["evidence"]["per_quantity"]
    assert [q["start"] for q in evidence["quantities"]][:4] == ["conserved"] * 4
    assert all(q["in_span"] > 0.9 for q in evidence["quantities"][:4])  # after 3 epochs
    assert evidence["refit_epochs"] == 2 and evidence["refit_particles"] == 4
    assert evidence["refit_lr"] == 3e-3  # below training's 1e-2 (discover's module docstring)
    assert ("razor evidence per quantity (switched off, weights refitted 2 epochs at P = 4, "
            "lr 0.003; run-to-run noise") in text
    # the razor's span against the direct estimate's: one angle per shared dimension
    agreement = record["evidence"]["agreement"]
    assert agreement["direct"] == 4 and agreement["razor"] == record["n_found"]
    assert len(agreement["angles_deg"]) == min(4, record["n_found"])
    # the razor's count is the span test's verdict (the direct estimate's tests, level 0.05)
    test = record["evidence"]["span_test"]
    assert test["alpha"] == 0.05 and "razor span test (the direct estimate's tests" in text
    assert all(q["kind"] in ("conserved", "approximate") for q in record["quantities"])
    if record["n_found"]:
        assert all(0.0 <= a <= 90.0 for a in agreement["angles_deg"])
        assert "razor vs direct estimate: the razor's" in text
    # the answer: the direct test's count (u(2): 4), what the razor confirms, as the last line
    answer = record["evidence"]["answer"]
    assert answer["status"] == record["direct"]["evidence"]["direct"]["status"]
    assert answer["count"] == record["direct"]["evidence"]["direct"]["count"] == 4
    supported = sum(sum(span >= 0.95 for span in q["members_in_span"])
                    for q in evidence["quantities"]
                    if q["start"] in ("conserved", "undecided") and q["decision"] == "supports")
    gain = -record["evidence"]["elbo"]["learned_minus_vanilla_nats"]
    assert answer["confirmed"] == (min(supported, 4) if gain > 0 else 0)
    assert f"\nanswer: {answer['statement']}" in text
    # the decision is reproduced from the run directory alone (no training), and follows alpha
    from pyro_razor.runs.discover import razor_decision

    again = razor_decision(out)[0]
    assert again.verdict == record["verdict"] and again.n_found == record["n_found"]
    assert razor_decision(out, alpha=0.01)[0].evidence["span_test"]["alpha"] == 0.01
    # every warning is in the JSON and the printed answer, in discover's options
    for w in record["warnings"]:
        assert f"warning: {w}" in text and "[guide]" not in w and "[train]" not in w
    # a second call names --resume, and --resume exists and reuses the trained models
    assert main(args) == 2 and "--resume" in one_line_error(capsys)
    assert main(args + ["--resume"]) == 0
    resumed = capsys.readouterr().out
    assert "learned: finished earlier; its training and evaluation are reused" in resumed
    assert "expected time" not in resumed  # nothing left to train
    again = json.loads((out / "discovery.json").read_text())
    assert again["evidence"]["elbo"] == record["evidence"]["elbo"]


def test_discover_states_the_razor_warnings_in_its_own_options():
    import warnings

    from pyro_razor.inference.diagnostics import capped_scale_message
    from pyro_razor.runs.discover import discover_warnings

    message = capped_scale_message([{"layer": 0, "change": 1.0, "cap": 0.97}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # said once
            warnings.warn(f"discover_x/learned: {message}", RuntimeWarning, stacklevel=1)
        warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)  # not ours
    stated = discover_warnings(caught)
    assert len(stated) == 1 and "--epochs" in stated[0] and "[guide]" not in stated[0]


def test_discover_refuses_bad_data_in_one_line(tmp_path, capsys):
    assert main(["discover", str(tmp_path / "missing.npz")]) == 2
    assert "no trajectory file" in one_line_error(capsys)
    bad = tmp_path / "odd.npy"
    import numpy as np

    np.save(bad, np.zeros((3, 5, 3)))
    assert main(["discover", str(bad), "--dt", "0.1"]) == 2
    assert "odd" in one_line_error(capsys)
    assert main(["discover", "nosuchpkg.mod:make"]) == 2
    assert "cannot import module 'nosuchpkg.mod'" in one_line_error(capsys)


def test_discover_refuses_more_quantities_than_exist_before_any_work(tmp_path, capsys,
                                                                      monkeypatch):
    """M = 4 has 14 independent quadratic quantities: --quantities 1000 is one line, no run."""
    import pyro_razor.runs.discover as discover

    data = oscillator_file(tmp_path / "osc.csv")
    assert discover.discovery_config(str(data), quantities=14).model.num_quantities == 14

    def no_work(*args, **kwargs):
        raise AssertionError("work started before --quantities was checked")

    monkeypatch.setattr(discover, "_from_training_data", no_work)
    monkeypatch.setattr(discover, "run_experiment", no_work)
    out = tmp_path / "found"
    assert main(["discover", str(data), "--quantities", "1000", "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert line == ("pyro-razor: error: --quantities 1000 is more than the 14 independent "
                    "quadratic quantities of M = 4; give at most 14")
    assert not out.exists()
    with pytest.raises(RunError, match="give at most 14"):
        discover.discovery_config(str(data), quantities=15)


def pendulum_file(path, B=12, n=11, dt=0.3):
    """``H = p²/2 - cos q`` from Gaussian starts (below the separatrix for most)."""
    from pyro_razor.systems import HamiltonianSystem, gaussian_initial

    system = HamiltonianSystem("pendulum", 2, lambda x: 0.5 * x[..., 1] ** 2
                               - torch.cos(x[..., 0]), gaussian_initial(2))
    x0 = 0.8 * torch.randn(B, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    write_trajectories(path, simulate(system, x0, n, dt), dt, names=["q", "p"])
    return path


def test_discover_features_give_the_pendulum_energy_and_skip_the_razor(tmp_path, capsys):
    """`--features trig:0` finds the pendulum's energy (no quadratic law exists) as
    cos q - p²/2 to 1e-3, says that it skips the razor stage instead of training, and records
    the functionally independent count."""
    data = pendulum_file(tmp_path / "pendulum.npz")
    assert main(["discover", str(data), "--out", str(tmp_path / "run"), "--features", "trig:0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "razor stage skipped" in out and "1 functionally independent" in out
    record = json.loads((tmp_path / "run" / "discovery.json").read_text())
    assert record["razor"] is False and not (tmp_path / "run" / "learned").exists()
    direct = record["direct"]
    assert direct["evidence"]["independent"] == 1 and direct["evidence"]["span"] == 1
    (law,) = [q for q in direct["quantities"] if q["kind"] == "conserved"]
    terms = law["terms"]
    assert set(terms) == {"cos(q)", "p²"}, terms
    assert terms["p²"] / terms["cos(q)"] == pytest.approx(-0.5, abs=1e-3)


def test_discover_refuses_a_bad_feature_spec_in_one_line(tmp_path, capsys):
    data = pendulum_file(tmp_path / "pendulum.npz")
    assert main(["discover", str(data), "--out", str(tmp_path / "run"), "--features",
                 "trig:7", "--no-progress"]) == 2
    assert "0..1" in one_line_error(capsys)
    with pytest.raises(SystemExit):
        main(["discover", str(data), "--degree", "5"])
    assert "degree 0 to 4" in capsys.readouterr().err
