"""The experiment runner: files and their contracts, resume, reloading, analysis and tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyro
import pytest
import torch

from pyro_razor import inference
from pyro_razor.analysis import analyse_generators, long_horizon_rollout, longterm_record
from pyro_razor.inference import hamiltonian_energy, posterior_hamiltonian
from pyro_razor.integrators import integrate
from pyro_razor.runs import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    ModelConfig,
    RunError,
    analyse_run,
    build_guide,
    build_model,
    format_table,
    load_variant,
    read_history,
    resolve_config,
    resolve_device,
    run_experiment,
)
from pyro_razor.systems import make_dataset, make_system, transitions

VARIANTS = ("vanilla", "learned", "oracle")
SUMMARY_KEYS = {
    "train_mse",
    "nll_per_n",
    "kl_per_n",
    "neg_elbo_per_n",
    "test_mse",
    "wall_time_s",
    "seconds_per_step",
}


def tiny_config(variants=VARIANTS, **train) -> ExperimentConfig:
    """A seconds-long SHO experiment (3 trajectories x 3 transitions, one hidden layer of 8)."""
    return ExperimentConfig(
        name="tiny",
        variants=tuple(variants),
        data=DataConfig(system="sho", n_train=3, train_points=4, n_test=3, test_points=6, dt=0.2),
        model=ModelConfig(
            hidden=(8,),
            elu_alpha=2.0,
            integrator_steps=2,
            tau_samples=4,
            measure="cube",
            num_quantities=1,
            eta_init_std=0.1,
        ),
        train=inference.TrainConfig(
            **{"epochs": 3, "num_particles": 2, "lr": 1e-2, "checkpoint_every": 1, **train}
        ),
        evaluation=EvaluationConfig(
            num_samples=2, tau_samples=16, rollout_points=15, rollout_trajectories=2, grid=9
        ),
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("PYRO_RAZOR_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("run") / "tiny"
    summary = run_experiment(tiny_config(), out, progress=False)
    return out, summary


def finite_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------------------- files


def test_run_writes_every_file(run):
    out, _ = run
    for name in ("config.toml", "summary.json"):
        assert (out / name).is_file()
    for variant in VARIANTS:
        for name in ("checkpoint.pt", "history.csv", "metrics.json", "longterm.json"):
            assert (out / variant / name).is_file(), (variant, name)
    for name in ("symmetry.json", "generators.pt"):
        assert (out / "learned" / name).is_file()
        assert not (out / "vanilla" / name).exists()
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {
        "training_curves.png",
        "singular_values.png",
        "generators_learned.png",
        "rollouts.png",
        "conservation_drift.png",
        "phase_portraits.png",
    } <= figures


def test_summary_contract(run):
    out, summary = run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["experiment"] == "tiny" and on_disk["system"] == "sho"
    assert on_disk["device"] == "cpu" and on_disk["n_train_transitions"] == 9
    assert list(on_disk["variants"]) == list(VARIANTS)
    for variant, m in on_disk["variants"].items():
        assert SUMMARY_KEYS <= set(m), variant
        for key in SUMMARY_KEYS | {"test_nll_per_n", "rollout_mse_final", "energy_drift_final"}:
            assert finite_number(m[key]), (variant, key, m[key])
        # -ELBO/N = NLL/N + KL/N, per transition
        assert m["neg_elbo_per_n"] == pytest.approx(m["nll_per_n"] + m["kl_per_n"], rel=1e-12)
        assert m["kl_per_n"] > 0 and m["train_mse"] > 0 and m["wall_time_s"] > 0
        assert (m["epochs"], m["steps"]) == (3, 3)  # full batch: one step per epoch
        assert m["seconds_per_step"] == pytest.approx(m["wall_time_s"] / 3, rel=1e-12)
        assert not any(k.startswith("test_mse_") for k in m)  # SHO has no extra test sets
        assert json.loads((out / variant / "metrics.json").read_text()) == m
    assert [on_disk["variants"][v]["num_quantities"] for v in VARIANTS] == [0, 1, 1]
    assert on_disk["variants"]["learned"]["true_dim"] == 1


def test_kl_in_summary_matches_a_fresh_estimate(run):
    out, summary = run
    _, data, model, guide = load_variant(out, "oracle")
    states, _ = transitions(data.train.float())
    kl = inference.kl_divergence_estimate(model, guide, states) / 9
    # closed-form KL of the matrix-normal guide: deterministic
    assert kl == pytest.approx(summary["variants"]["oracle"]["kl_per_n"], rel=1e-6)


def test_history_csv_matches_checkpoint(run):
    out, _ = run
    history = read_history(out / "learned" / "history.csv")
    ckpt = inference.load_checkpoint(out / "learned" / "checkpoint.pt")
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for row, record in zip(history, ckpt["history"], strict=True):
        for key, value in record.items():
            assert row[key] == pytest.approx(value, rel=1e-12, abs=1e-300)


def test_symmetry_json_contract(run):
    out, _ = run
    sym = json.loads((out / "learned" / "symmetry.json").read_text())
    for key in (
        "singular_values",
        "n_significant",
        "threshold",
        "parallelness",
        "true_dim",
        "min_norm",
        "recovered",
        "report",
        "displacements",
        "conservation",
        "chance_parallelness",
    ):
        assert key in sym
    assert sym["threshold"] == 0.05 and sym["min_norm"] == 0.0 and sym["true_dim"] == 1
    assert sym["min_displacement"] == 0.1 and len(sym["displacements"]) == 1
    assert sym["chance_parallelness"] == pytest.approx((1 / 5) ** 0.5)  # 1 of 5 directions
    G = torch.load(out / "learned" / "generators.pt")
    assert G.shape == (1, 3, 3)
    # K = 1: the only singular value is the generator's Frobenius norm, normalised to 1
    assert sym["absolute_singular_values"][0] == pytest.approx(float(G.norm()), rel=1e-5)
    assert sym["singular_values"] == [pytest.approx(1.0)]
    system = make_system("sho")
    again = analyse_generators(G, system.generators(), ["H"], 0.05, 0.1, 0.99)
    assert again.parallelness[0] == pytest.approx(sym["parallelness"][0], abs=1e-6)


def test_longterm_json_contract(run):
    out, _ = run
    for variant in VARIANTS:
        lt = json.loads((out / variant / "longterm.json").read_text())
        assert lt["rollout_points"] == 15 and len(lt["mse"]) == 15 and len(lt["times"]) == 15
        assert lt["times"][-1] == pytest.approx(14 * 0.2)
        assert lt["horizon"] == pytest.approx(14 * 0.2)
        assert lt["mse"][0] < 1e-12  # both start at the same (float32-rounded) state
        assert lt["finite_points"] == 15
        assert set(lt["drift"]) == {"H"}  # the SHO's conserved quantity is named H too
        assert lt["drift"]["H"][0] == 0.0
        assert lt["truth_drift_final"]["H"] < 1e-8  # the exact solution conserves H
        assert lt["mse_final"] == pytest.approx(lt["mse"][-1])
        assert lt["mse_at_train_horizon"] == pytest.approx(lt["mse"][3])


# ----------------------------------------------------------------------------- reloading


def test_load_variant_restores_the_trained_state(run):
    out, summary = run
    config, data, model, guide = load_variant(out, "learned")
    assert config.name == "tiny" and data.train.shape == (3, 4, 2)
    saved = torch.load(out / "learned" / "generators.pt")
    assert torch.equal(model.generators().detach(), saved)
    prior = model.hamiltonian_net.prior.variances()
    expected = torch.tensor(summary["variants"]["learned"]["prior_variances"])
    assert torch.allclose(prior, expected, rtol=1e-6)
    ckpt = inference.load_checkpoint(out / "learned" / "checkpoint.pt")
    site = model.weight_sites[0]
    loc = ckpt["param_store"]["params"][f"MatrixNormalGuide.locs.{site}"]
    assert torch.equal(guide.median()[site], loc)


def test_load_variant_errors(run, tmp_path):
    out, _ = run
    with pytest.raises(RunError, match="variant 'bogus' is not part of the run"):
        load_variant(out, "bogus")
    with pytest.raises(FileNotFoundError, match="config.toml is missing"):
        load_variant(tmp_path, "learned")
    (tmp_path / "config.toml").write_text((out / "config.toml").read_text())
    with pytest.raises(FileNotFoundError, match="no checkpoint for variant 'learned'"):
        load_variant(tmp_path, "learned")


def test_first_rollout_step_is_one_rk4_integration_of_the_learned_field(run):
    out, _ = run
    config, data, model, guide = load_variant(out, "learned")
    states, _ = transitions(data.train.float())
    torch.manual_seed(0)
    H = posterior_hamiltonian(model, guide, states, tau_samples=32, num_samples=3)
    assert H.transforms.shape == (3, 32, 3, 3)  # one set of 32 per weight draw
    x0 = data.test[:2, 0]
    result = long_horizon_rollout(model, H, make_system("sho"), x0, 4, 0.2)
    # each draw's learned field integrated with RK4 (not the training integrator), same
    # sub-steps; the prediction is the mean over the 3 weight draws
    one_step = integrate(
        H.vector_field, x0.float()[None].expand(3, -1, -1), 0.2, steps=model.integrator_steps,
        method="rk4",
    ).mean(0)
    assert torch.allclose(result["prediction"][:, 1].float(), one_step, atol=1e-6)
    # truth from the exact solver: the SHO rotates phase space
    angle = torch.tensor(0.2 * 3, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    q, p = x0[:, 0], x0[:, 1]
    exact = torch.stack([c * q + s * p, -s * q + c * p], dim=-1)
    assert torch.allclose(result["truth"][:, 3], exact, atol=1e-9)


def test_rollout_sub_steps_and_its_measured_integration_error(run):
    out, _ = run
    _, data, model, guide = load_variant(out, "learned")
    states, _ = transitions(data.train.float())
    torch.manual_seed(0)
    H = posterior_hamiltonian(model, guide, states, tau_samples=16, num_samples=2)
    x0 = data.test[:3, 0]
    coarse = long_horizon_rollout(model, H, make_system("sho"), x0, 6, 0.2, steps_per_point=1)
    fine = long_horizon_rollout(model, H, make_system("sho"), x0, 6, 0.2, steps_per_point=2)
    assert coarse["steps_per_point"] == 1 and fine["steps_per_point"] == 2
    # the measured error is the first draw's coarse rollout against twice the sub-steps
    first = integrate(H.first_draws(1).vector_field, x0.float()[None], 0.2, steps=1,
                      method="rk4")[0]
    again = integrate(H.first_draws(1).vector_field, x0.float()[None], 0.2, steps=2,
                      method="rk4")[0]
    assert torch.allclose(coarse["integration_mse"][1].float(), ((first - again) ** 2).mean(),
                          rtol=1e-4, atol=1e-12)
    assert float(coarse["integration_mse"][0]) == 0.0
    # RK4's error falls ~16-fold per halving: the finer rollout's own estimate is smaller
    assert float(fine["integration_mse"].max()) < float(coarse["integration_mse"].max())
    record = longterm_record(coarse, "learned", dt=0.2, train_points=5, test_points=6,
                             integrator_steps=1, tau_samples=16)
    assert record["integrator_steps"] == 1
    assert record["integration_mse_final"] == pytest.approx(
        float(coarse["integration_mse"][-1]))


def test_hamiltonian_energy_chunks_agree(run):
    out, _ = run
    _, data, model, guide = load_variant(out, "oracle")
    states, _ = transitions(data.train.float())
    H = posterior_hamiltonian(model, guide, states, tau_samples=8, num_samples=3)
    x = torch.randn(50, 2)
    whole = H.energy(x).mean(0)  # the posterior mean over the 3 draws
    chunked = hamiltonian_energy(H, x, max_points=8 * 3 * 7)  # chunks of 7 points
    assert torch.allclose(whole, chunked, atol=1e-6)


# ----------------------------------------------------------------------------- resume


def test_resume_of_finished_run_does_no_training(run, monkeypatch):
    out, summary = run

    def fail(*args, **kwargs):
        raise AssertionError("train() called for a finished variant")

    monkeypatch.setattr(inference, "train", fail)
    again = run_experiment(tiny_config(), out, resume=True, progress=False, figures=False)
    for variant in VARIANTS:
        for key in SUMMARY_KEYS:
            assert again["variants"][variant][key] == summary["variants"][variant][key]
        # the rollouts are recomputed with the same seed: same numbers
        assert again["variants"][variant]["rollout_mse_final"] == pytest.approx(
            summary["variants"][variant]["rollout_mse_final"], rel=1e-6
        )


def test_interrupted_run_resumes_to_the_uninterrupted_result(run, tmp_path, monkeypatch, cache):
    out, _ = run
    real_train = inference.train

    def interrupted(*args, **kwargs):
        def stop(epoch, record):
            if epoch == 2:
                raise KeyboardInterrupt

        return real_train(*args, **{**kwargs, "callback": stop})

    config = tiny_config(variants=("learned",))
    monkeypatch.setattr(inference, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, tmp_path / "r", progress=False, figures=False)
    # the callback runs after each epoch's checkpoint (checkpoint_every = 1)
    assert inference.load_checkpoint(tmp_path / "r" / "learned" / "checkpoint.pt")["epoch"] == 2
    monkeypatch.setattr(inference, "train", real_train)
    with pytest.raises(RunError, match="already holds a run.*--resume"):
        run_experiment(config, tmp_path / "r", progress=False)
    resumed = run_experiment(config, tmp_path / "r", resume=True, progress=False, figures=False)
    assert not (tmp_path / "r" / "figures").exists()
    full = read_history(out / "learned" / "history.csv")
    part = read_history(tmp_path / "r" / "learned" / "history.csv")
    assert len(part) == 3
    for a, b in zip(full, part, strict=True):
        assert b["neg_elbo_per_n"] == pytest.approx(a["neg_elbo_per_n"], rel=1e-5)
    assert torch.allclose(
        torch.load(tmp_path / "r" / "learned" / "generators.pt"),
        torch.load(out / "learned" / "generators.pt"),
        atol=1e-6,
    )
    assert resumed["variants"]["learned"]["epochs"] == 3


def test_resume_with_another_config_is_refused(run):
    out, _ = run
    with pytest.raises(RunError, match=r"config differs in train\.epochs"):
        run_experiment(tiny_config(), out, epochs=5, resume=True, progress=False)


# ----------------------------------------------------------------------------- pieces


def test_build_model_variants_and_guides(cache):
    config = tiny_config()
    system = make_system("sho")
    data = make_dataset(config.data.spec())
    states, next_states = transitions(data.train.float())
    pyro.clear_param_store()
    vanilla = build_model(config, "vanilla", system)
    assert vanilla.num_quantities == 0 and vanilla.generators() is None
    oracle = build_model(config, "oracle", system)
    assert torch.allclose(oracle.generators(), system.generators(dtype=torch.float32))
    learned = build_model(config, "learned", system)
    assert learned.generators().shape == (1, 3, 3)
    assert learned.dtype == torch.float32 and not learned.tau_antithetic
    from pyro_razor.configio import replace_path

    paired = build_model(replace_path(config, "model.tau_antithetic", True), "oracle", system)
    T = paired.transforms(4, num_draws=2)
    assert torch.allclose(T[:, :2] @ T[:, 2:], torch.eye(3).expand(2, 2, 3, 3), atol=1e-5)
    for kind in ("matrix_normal", "auto_normal", "auto_lowrank", "auto_delta", "auto_diagonal"):
        pyro.clear_param_store()
        cfg = resolve_config(config)
        from pyro_razor.configio import replace_path

        cfg = replace_path(cfg, "guide.kind", kind)
        model = build_model(cfg, "vanilla", system)
        guide = build_guide(cfg, model)
        guide(states[:1], next_states[:1])
        median = guide.median(states[:1])
        assert [tuple(median[s].shape) for s in model.weight_sites] == [(8, 3), (1, 9)], kind


def test_resolve_config_overrides():
    config = resolve_config(tiny_config(), device="cpu", seed=7, epochs=11)
    assert (config.train.seed, config.model.eta_seed, config.train.epochs) == (7, 7, 11)
    assert config.data.seed == 0  # the data stay the same


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RunError, match="not a torch device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RunError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(RunError, match="CUDA is not available"):
            run_experiment(tiny_config(), "/nonexistent/never-created", device="cuda")
        assert not Path("/nonexistent/never-created").exists()


def test_nbody_summary_has_moved_and_wider_test_mse(tmp_path, cache):
    config = ExperimentConfig(
        name="nb",
        variants=("vanilla",),
        data=DataConfig(
            system="nbody",
            system_params={"n": 2, "dim": 1},
            n_train=2,
            train_points=3,
            n_test=2,
            test_points=3,
            dt=0.3,
            extra_test_sets=("moved", "wider"),
        ),
        model=ModelConfig(hidden=(8,), integrator_steps=1, tau_samples=2, num_quantities=0),
        train=inference.TrainConfig(epochs=1),
        evaluation=EvaluationConfig(
            num_samples=1, tau_samples=2, rollout_points=4, rollout_trajectories=1
        ),
    )
    summary = run_experiment(config, tmp_path / "nb", progress=False, figures=False)
    m = summary["variants"]["vanilla"]
    for key in ("test_mse_moved", "test_mse_wider", "test_nll_per_n_moved"):
        assert finite_number(m[key]) and m[key] > 0
    lt = json.loads((tmp_path / "nb" / "vanilla" / "longterm.json").read_text())
    # 2 bodies in 1-d: energy plus T_1 and P_1 (= T_1^2) are tracked
    assert set(lt["drift"]) == {
        "H",
        *[c.name for c in make_system("nbody", n=2, dim=1).conserved_quantities],
    }
    lines = format_table([tmp_path / "nb"]).splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[-2:] == ["Test moved", "Test wider"]
    row = [c.strip() for c in lines[4].strip("|").split("|")]
    assert row[0] == "HNN"
    assert float(row[-2]) == pytest.approx(m["test_mse_moved"], rel=5e-4)
    assert float(row[-1]) == pytest.approx(m["test_mse_wider"], rel=5e-4)


# ----------------------------------------------------------------------------- finished runs


def test_format_table_rows_and_numbers(run):
    out, summary = run
    table = format_table([out])
    lines = table.strip().splitlines()
    assert lines[0].startswith("tiny (sho, N = 9")
    assert "| Model | Train MSE | NLL/N | KL/N | -ELBO/N | Test MSE |" in lines
    rows = [line for line in lines if line.startswith("| HNN")]
    assert len(rows) == 3 and rows[1].startswith("| HNN + learned symmetry |")
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    oracle = summary["variants"]["oracle"]
    for cell, key in zip(
        cells[1:], ["train_mse", "nll_per_n", "kl_per_n", "neg_elbo_per_n", "test_mse"], strict=True
    ):
        value, *error = cell.split(" ± ")  # KL/N is exact: no standard error
        assert float(value) == pytest.approx(oracle[key], rel=5e-4)
        if key != "kl_per_n":
            assert float(error[0]) == pytest.approx(oracle["standard_errors"][key], rel=5e-4)
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        format_table([out / "learned"])
    assert "not finished" not in table


def test_format_table_names_the_variants_a_run_has_not_finished(run, tmp_path):
    import shutil

    out, _ = run
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    summary = json.loads((partial / "summary.json").read_text())
    del summary["variants"]["oracle"]  # as if interrupted before the oracle
    (partial / "summary.json").write_text(json.dumps(summary))
    table = format_table([partial])
    assert "| HNN + fixed" not in table
    assert "not finished: oracle (continue with `pyro-razor run" in table and "--resume`)" in table


def test_analyse_run_recomputes_analysis_and_figures(run):
    out, summary = run
    before = json.loads((out / "learned" / "symmetry.json").read_text())
    for png in (out / "figures").glob("*.png"):
        png.unlink()
    (out / "learned" / "symmetry.json").unlink()
    again = analyse_run(out)
    after = json.loads((out / "learned" / "symmetry.json").read_text())
    assert after["singular_values"] == pytest.approx(before["singular_values"])
    assert after["parallelness"] == pytest.approx(before["parallelness"], abs=1e-9)
    assert (out / "figures" / "phase_portraits.png").is_file()
    for variant in VARIANTS:
        assert again["variants"][variant]["train_mse"] == summary["variants"][variant]["train_mse"]


def test_analyse_run_without_summary(tmp_path):
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        analyse_run(tmp_path)


def test_format_table_adds_the_ppc_comparison_when_present(run, tmp_path):
    """After `pyro-razor ppc`, the table carries each variant's held-out mlpd and LOO verdict."""
    import shutil

    out, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    comparison = {
        "test": {
            "vanilla": {"mlpd": 2.5, "mlpd_se": 0.03},
            "learned": {"mlpd": 3.25, "mlpd_se": 0.01},
        },
        "loo": {
            "vanilla": {"reliable": False, "share_k_gt_0.7": 0.5, "elpd_loo_per_point": -1.0},
            "learned": {"reliable": True, "share_k_gt_0.7": 0.0, "elpd_loo_per_point": 1.5},
        },
    }
    (copy / "ppc_comparison.json").write_text(json.dumps(comparison))
    lines = format_table([copy]).strip().splitlines()
    assert lines[2].endswith("| Test mlpd/N (PPC) | PSIS-LOO |")
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in lines
        if line.startswith("| HNN")
    }
    assert rows["HNN"][-2:] == ["2.5 ± 0.03", "unreliable (50% k > 0.7)"]
    assert rows["HNN + learned symmetry"][-2:] == ["3.25 ± 0.01", "1.5/N"]
    assert rows["HNN + fixed symmetry (oracle)"][-2:] == ["", ""]
