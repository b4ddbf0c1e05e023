"""Tests of the SVI loop: guides, checkpoints and resume, evaluation, and the razor itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoNormal,
)
from sho_data import sho_transitions

from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.inference import (
    TrainConfig,
    evaluate,
    kl_divergence_estimate,
    load_checkpoint,
    posterior_second_moments,
    train,
)
from pyro_razor.models import ClosedFormVariancePrior, NoetherRazorModel

DT = torch.float64


def learned_model(**kw):
    base = dict(hidden=(8,), tau_samples=4, integrator_steps=2)
    base.update(kw)
    return NoetherRazorModel.learned(
        2, 0.2, 1, init_std=0.1, generator=torch.Generator().manual_seed(0), **base
    ).to(dtype=DT)


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


GUIDES = {
    "matrix_normal": lambda m: MatrixNormalGuide(m, init_scale=1e-2),
    "auto_normal": lambda m: AutoNormal(m, init_loc_fn=m.init_loc_fn, init_scale=1e-2),
    "auto_lowrank": lambda m: AutoLowRankMultivariateNormal(
        m, init_loc_fn=m.init_loc_fn, init_scale=1e-2
    ),
    "auto_delta": lambda m: AutoDelta(m, init_loc_fn=m.init_loc_fn),
    "auto_diagonal": lambda m: AutoDiagonalNormal(m, init_loc_fn=m.init_loc_fn, init_scale=1e-2),
}


@pytest.mark.parametrize("name", sorted(GUIDES))
def test_same_model_trains_with_every_guide(name):
    """The unchanged model trains with our guide and Pyro's AutoGuides: the ELBO improves and
    eta moves."""
    states, nxt = sho_transitions()
    model = learned_model()
    guide = GUIDES[name](model)
    eta0 = None
    result = train(
        model,
        guide,
        states,
        nxt,
        TrainConfig(epochs=40, num_particles=2, lr=1e-2, lr_eta=1e-2),
        progress=False,
    )
    eta1 = pyro.param("quantities.W").detach().clone()
    first = sum(r["neg_elbo_per_n"] for r in result.history[:5]) / 5
    last = sum(r["neg_elbo_per_n"] for r in result.history[-5:]) / 5
    assert all(math.isfinite(r["neg_elbo_per_n"]) for r in result.history)
    assert last < first, (first, last)
    assert eta0 is None and not torch.allclose(eta1, torch.zeros_like(eta1))
    moments = posterior_second_moments(guide, model.weight_sites, states, nxt)
    assert all(float(m) > 0 for m in moments)


def test_minibatches_closed_form_prior_and_history():
    states, nxt = sho_transitions(T=6)
    model = learned_model(prior=ClosedFormVariancePrior(1.0))
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    result = train(model, guide, states, nxt, TrainConfig(epochs=3, batch_size=4), progress=False)
    assert result.steps == 6  # ceil(6 / 4) = 2 steps per epoch
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    rec = result.history[-1]
    assert set(rec) >= {"neg_elbo_per_n", "nll_per_n", "kl_per_n", "train_mse", "lr", "seconds"}
    assert rec["neg_elbo_per_n"] == pytest.approx(rec["nll_per_n"] + rec["kl_per_n"])
    # the closed-form prior variances moved to E_q|theta|^2 / D after the last step
    v = model.hamiltonian_net.prior.variances()
    m2 = torch.stack([guide.second_moment(s) for s in model.weight_sites])
    sizes = torch.tensor([o * i for o, i in model.hamiltonian_net.layer_shapes], dtype=DT)
    torch.testing.assert_close(v, m2 / sizes, rtol=1e-2, atol=0)  # one step of drift after update


def test_evaluate_and_kl():
    states, nxt = sho_transitions()
    model = learned_model()
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    train(model, guide, states, nxt, TrainConfig(epochs=2), progress=False)
    metrics = evaluate(model, guide, states, nxt, num_samples=3, tau_samples=16, chunk_size=2)
    assert set(metrics) == {"nll_per_n", "mse", "nll_per_n_se", "mse_se"}
    assert all(math.isfinite(v) for v in metrics.values())
    one = evaluate(model, guide, states, nxt, num_samples=1, tau_samples=16)
    assert math.isnan(one["nll_per_n_se"]) and math.isnan(one["mse_se"])
    kl = kl_divergence_estimate(model, guide, states)
    # the closed form for the matrix-normal guide against the Gaussian prior
    tr = poutine.trace(guide).get_trace(states)
    mt = poutine.trace(poutine.replay(model, trace=tr)).get_trace(states)
    exact = sum(
        float(torch.distributions.kl_divergence(tr.nodes[s]["fn"], mt.nodes[s]["fn"]).detach())
        for s in model.weight_sites
    )
    assert kl == pytest.approx(exact, rel=1e-10)


def test_evaluation_standard_errors_predict_the_spread_over_seeds():
    """The reported Monte-Carlo standard errors (over P = 4 weight draws of a broad
    posterior) match the standard deviation of the metrics over 24 repeats with other seeds:
    their ratio lies within [0.6, 1.6] (the sd of 24 values is itself uncertain by ~15 %, the
    jackknife's by more)."""
    states, nxt = sho_transitions()
    model = learned_model()
    guide = MatrixNormalGuide(model, init_scale=0.3)
    with torch.no_grad(), poutine.block():
        guide(states, nxt)
    runs = []
    for seed in range(24):
        pyro.set_rng_seed(seed)
        runs.append(evaluate(model, guide, states, nxt, num_samples=4, tau_samples=8))
    for key in ("nll_per_n", "mse"):
        values = torch.tensor([r[key] for r in runs], dtype=torch.float64)
        reported = torch.tensor([r[f"{key}_se"] for r in runs], dtype=torch.float64)
        ratio = float(reported.pow(2).mean().sqrt() / values.std())
        print(key, "reported se / sd over seeds:", ratio)
        assert 0.6 < ratio < 1.6, (key, ratio)


def test_bad_training_input():
    states, nxt = sho_transitions()
    model = learned_model()
    guide = MatrixNormalGuide(model)
    bad = nxt.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="next_states contains NaN or inf"):
        train(model, guide, states, bad, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="elbo must be 'trace' or 'meanfield'"):
        TrainConfig(elbo="renyi")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(
            model,
            guide,
            states,
            nxt,
            TrainConfig(epochs=1),
            checkpoint="/nonexistent/x.pt",
            resume=True,
            progress=False,
        )


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, pyro
    sys.path.insert(0, {tests!r})
    from test_inference import learned_model, sho_transitions
    from pyro_razor.guides import MatrixNormalGuide
    from pyro_razor.inference import TrainConfig, train
    from pyro_razor.models import ClosedFormVariancePrior
    epochs, resume, ckpt, stop = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
    pyro.clear_param_store()
    torch.manual_seed(123)
    states, nxt = sho_transitions(T=6)
    model = learned_model(prior=ClosedFormVariancePrior(1.0))
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    config = TrainConfig(epochs=epochs, batch_size=4, num_particles=2, checkpoint_every=1, seed=7)
    stopper = None
    if stop:
        class Stop(Exception):
            pass
        def stopper(epoch, record):
            if epoch == stop:
                raise Stop
    try:
        train(model, guide, states, nxt, config, checkpoint=ckpt, resume=resume, progress=False,
              callback=stopper)
    except Exception as exc:
        if type(exc).__name__ != "Stop":
            raise
    store = pyro.get_param_store()
    out = {{k: store[k].detach().flatten().tolist() for k in sorted(store.keys())}}
    out["prior"] = model.hamiltonian_net.prior.variances().tolist()
    print(json.dumps(out))
    """
)


def _run(script, *args):
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_resume_in_a_new_process_reproduces_the_uninterrupted_run(tmp_path):
    """N epochs straight == N/2 epochs, checkpoint, then resume in a new process for N/2."""
    import pathlib

    script = RESUME_SCRIPT.format(tests=str(pathlib.Path(__file__).parent))
    full = _run(script, 6, 0, tmp_path / "full.pt", 0)
    _run(script, 6, 0, tmp_path / "half.pt", 3)  # interrupted after epoch 3
    assert load_checkpoint(tmp_path / "half.pt")["epoch"] == 3
    resumed = _run(script, 6, 1, tmp_path / "half.pt", 0)
    assert full.keys() == resumed.keys()
    for key in full:
        assert full[key] == resumed[key], key  # bit-identical on the CPU


def test_resume_rejects_a_different_config(tmp_path):
    states, nxt = sho_transitions()
    model = learned_model()
    guide = MatrixNormalGuide(model)
    train(
        model,
        guide,
        states,
        nxt,
        TrainConfig(epochs=1),
        checkpoint=tmp_path / "c.pt",
        progress=False,
    )
    with pytest.raises(ValueError, match=r"its training config differs in \['lr'\]"):
        train(
            model,
            guide,
            states,
            nxt,
            TrainConfig(epochs=1, lr=0.5),
            checkpoint=tmp_path / "c.pt",
            resume=True,
            progress=False,
        )
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(tmp_path / "junk.pt")


def test_the_razor_learns_so2_on_the_harmonic_oscillator():
    """Quick CPU scale (~1-2 min on 2 cores): the learned generator becomes parallel to SO(2)
    (> 0.99) and the learned model's -ELBO/N beats the vanilla HNN's under the same budget."""
    from pyro_razor.analysis import analyse_generators
    from pyro_razor.symmetry import SymmetryMeasure, generator_matrix
    from pyro_razor.systems import DatasetSpec, make_dataset, transitions

    data = make_dataset(
        DatasetSpec("sho", n_train=7, train_points=5, n_test=20, test_points=21, dt=0.2, seed=0),
        use_cache=False,
    )
    states, nxt = (t.float() for t in transitions(data.train))
    common = dict(
        hidden=(64, 64),
        elu_alpha=2.0,
        tau_samples=8,
        integrator_steps=5,
        measure=SymmetryMeasure("cube", math.pi),
    )
    config = TrainConfig(epochs=1500, num_particles=4, lr=1e-2, lr_eta=1e-2, seed=0)
    scores = {}
    for variant in ("vanilla", "learned"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        if variant == "vanilla":
            model = NoetherRazorModel.vanilla(2, 0.2, **common)
        else:
            model = NoetherRazorModel.learned(
                2, 0.2, 1, init_std=0.1, generator=torch.Generator().manual_seed(0), **common
            )
        guide = MatrixNormalGuide(model, init_scale=1e-3)
        train(model, guide, states, nxt, config, progress=False)
        N = states.shape[0] * states.shape[1]
        nll = evaluate(model, guide, states, nxt, num_samples=16, tau_samples=256)["nll_per_n"]
        scores[variant] = nll + kl_divergence_estimate(model, guide, states) / N
        if variant == "learned":
            true = generator_matrix(torch.eye(2), torch.zeros(2))[None]
            analysis = analyse_generators(model.generators().detach(), true, ["H"])
    print("-ELBO/N", scores, "parallelness", analysis.parallelness[0])
    assert analysis.parallelness[0] > 0.99
    assert scores["learned"] < scores["vanilla"]


# ----------------------------------------------------------------------------- budget diagnostic


def _vanilla_run(init_scale, epochs, lr, cosine=True):
    states, nxt = sho_transitions(T=4, points=5)
    model = NoetherRazorModel.vanilla(2, 0.2, hidden=(16,), integrator_steps=2).to(dtype=DT)
    guide = MatrixNormalGuide(model, init_scale=init_scale)
    config = TrainConfig(epochs=epochs, lr=lr, num_particles=2, cosine_annealing=cosine)
    return train(model, guide, states, nxt, config, progress=False)


def test_capped_scale_diagnostic_flags_a_pinned_run_and_not_a_converged_one():
    """From a tiny start (std 1e-4, prior N(0, 1)) the scales of the unconstrained weights grow
    at Adam's maximum rate for the whole run: flagged. Restarted at the scales that run reaches
    after many more epochs, nothing moves at the cap: not flagged."""
    import warnings

    from pyro_razor.inference.diagnostics import capped_scale_layers

    with pytest.warns(RuntimeWarning, match="maximum rate"):
        pinned = _vanilla_run(1e-4, epochs=40, lr=1e-2, cosine=False)
    assert pinned.scale_warning is not None
    flagged = capped_scale_layers(pinned.history, steps_per_epoch=1)
    assert flagged and all(f["change"] > 0.5 * f["cap"] for f in flagged)
    long = _vanilla_run(1e-4, epochs=1500, lr=1e-2)  # long enough to reach its scales
    final = [math.exp(long.history[-1][f"log_std{l}"]) for l in range(2)]
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the diagnostic must stay silent
        settled = _vanilla_run(final, epochs=200, lr=1e-2)
    assert settled.scale_warning is None
    assert capped_scale_layers(settled.history, steps_per_epoch=1) == []


def test_capped_scale_layers_on_synthetic_histories():
    from pyro_razor.inference.diagnostics import capped_scale_layers

    lr = 0.01
    at_cap = [{"lr": lr, "log_std0": -5.0 + 2 * lr * e} for e in range(100)]
    assert [f["layer"] for f in capped_scale_layers(at_cap, steps_per_epoch=1)] == [0]
    settled = [{"lr": lr, "log_std0": -5.0 + min(2 * lr * e, 0.5)} for e in range(100)]
    assert capped_scale_layers(settled, steps_per_epoch=1) == []  # moved fast, then stopped
    assert capped_scale_layers([{"lr": lr}] * 10, steps_per_epoch=1) == []  # no scales recorded


def test_learning_rate_schedule_and_eta_warmup():
    from pyro_razor.inference.optim import learning_rate_factor

    assert learning_rate_factor(0, 100, cosine=True) == 1.0
    assert learning_rate_factor(50, 100, cosine=True) == pytest.approx(0.5)
    assert learning_rate_factor(100, 100, cosine=True) == pytest.approx(0.0)
    assert learning_rate_factor(9, 100, cosine=True, warmup_steps=10) == 0.0
    assert learning_rate_factor(10, 100, cosine=True, warmup_steps=10) == 1.0
    assert learning_rate_factor(55, 100, cosine=True, warmup_steps=10) == pytest.approx(0.5)
    assert learning_rate_factor(70, 100, cosine=False, warmup_steps=10) == 1.0
    # eta stays where it started for the warm-up epochs, theta moves from the first step
    states, nxt = sho_transitions(T=3, points=4)
    model = learned_model()
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    W0 = model.quantities.W.detach().clone()
    config = TrainConfig(epochs=6, lr=1e-2, lr_eta=1e-2, eta_warmup_epochs=3)
    seen = []
    train(model, guide, states, nxt, config, progress=False,
          callback=lambda e, r: seen.append(pyro.param("quantities.W").detach().clone()))
    assert all(torch.equal(W, W0) for W in seen[:3]) and not torch.equal(seen[3], W0)
    with pytest.raises(ValueError, match="eta_warmup_epochs must be in"):
        TrainConfig(epochs=5, eta_warmup_epochs=5)


# ------------------------------------------------------------------- finite blow-ups
def test_blow_up_check_flags_predictions_a_thousand_times_the_data_size():
    from pyro_razor.inference.step import BLOW_UP_RATIO, _check_blow_up

    states = torch.full((3, 4, 2), 2.0, dtype=DT)  # mean square 4
    _check_blow_up(0.5 * BLOW_UP_RATIO * 4.0, states)  # large but below the ratio: kept
    with pytest.raises(FloatingPointError, match=r"the predictions blew up: mean squared "
                       r"residual 8e\+06 is more than 1e\+06x the data's mean square 4"):
        _check_blow_up(2 * BLOW_UP_RATIO * 4.0, states)


def test_a_training_step_whose_predictions_blow_up_raises(monkeypatch):
    """Wiring: the step's own residuals go through the check (a ratio of 1e-30 flags any
    step, the default none of a normal one)."""
    import pyro_razor.inference.step as step_module

    states, nxt = sho_transitions(T=4, points=3)
    model = learned_model()
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    step = step_module.TrainingStep(model, guide, TrainConfig(epochs=2), total_steps=2)
    record = step(states, nxt)
    assert record.mse < step_module.BLOW_UP_RATIO * float(states.square().mean())
    monkeypatch.setattr(step_module, "BLOW_UP_RATIO", 1e-30)
    with pytest.raises(FloatingPointError, match="the predictions blew up"):
        step(states, nxt)


def test_is_scale_parameter_names_the_guides_scales_and_nothing_else():
    """Every scale parameter of our guide and of AutoNormal is recognised; locs, eta and
    hyper-parameters are not."""
    from pyro_razor.inference.optim import is_scale_parameter

    states, nxt = sho_transitions(T=3, points=3)
    for make in (lambda m: MatrixNormalGuide(m, init_scale=1e-2), AutoNormal):
        pyro.clear_param_store()
        model = learned_model()
        guide = make(model)
        guide(states, nxt)
        model(states, nxt)
        names = list(pyro.get_param_store().keys())
        scales = [n for n in names if is_scale_parameter(n)]
        assert scales and all("scale" in n for n in scales), names
        assert not any(is_scale_parameter(n) for n in names if "loc" in n or "quantities" in n)


def test_lr_scale_moves_the_scales_by_their_own_rate():
    """Adam's first step moves every parameter with a non-zero gradient by its learning rate
    (m_hat / sqrt(v_hat) = sign(g)): with lr = 1e-3 and lr_scale = 5e-2 the largest change of
    the guide's unconstrained scale parameters is 5e-2 and of its locs 1e-3 (to 1e-3
    relative), and the history records both rates."""
    from pyro_razor.inference.optim import is_scale_parameter
    from pyro_razor.inference.step import TrainingStep

    states, nxt = sho_transitions(T=4, points=3)
    config = TrainConfig(epochs=3, lr=1e-3, lr_scale=5e-2, cosine_annealing=False)
    pyro.clear_param_store()
    model = learned_model()
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    step = TrainingStep(model, guide, config, total_steps=3)
    with pyro.poutine.block():
        guide(states, nxt)
    store = pyro.get_param_store()
    names = [n for n in store.keys() if "quantities" not in n and "prior" not in n]
    before = {n: store._params[n].detach().clone() for n in names}
    step(states, nxt)
    change = {n: float((store._params[n].detach() - before[n]).abs().max()) for n in names}
    scale = max(v for n, v in change.items() if is_scale_parameter(n))
    loc = max(v for n, v in change.items() if not is_scale_parameter(n))
    assert scale == pytest.approx(5e-2, rel=1e-3) and loc == pytest.approx(1e-3, rel=1e-3)
    result = train(model, guide, states, nxt, TrainConfig(epochs=2, lr=1e-3, lr_scale=5e-2),
                   progress=False)
    assert result.history[0]["lr_scale"] == pytest.approx(50 * result.history[0]["lr"])
    with pytest.raises(ValueError, match="lr_scale must be positive"):
        TrainConfig(lr_scale=0.0)
