"""Posterior predictive checks (:mod:`pyro_razor.ppc`): draws, ArviZ objects, calibration maths
against closed-form Gaussian predictives, figures and the run-directory driver.

Tolerances are stated next to each check. "4 s.e." bounds use binomial standard errors of the
empirical coverage: ``sqrt(l (1-l) / N)`` from the ``N`` independent observations plus
``l (1-l) / S`` in variance from estimating the interval with ``S`` draws (the mass of the
interval between two empirical quantiles of ``S`` draws has variance ``~ l (1-l) / S``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyro
import pytest
import torch
from scipy.stats import norm

from pyro_razor import analysis, inference, plotting, runs
from pyro_razor.analysis import arviz_compat
from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.inference import TrainConfig, train
from pyro_razor.models import FixedNoise, FixedVariancePrior, NoetherRazorModel
from pyro_razor.systems import DatasetSpec, make_dataset, transitions

DT = 0.1  # time step of the linear model
PRIOR_VAR = 1.0  # v: prior variance of its weights
NOISE_VAR = 0.01  # sigma^2
PREDICTIVE_VAR = DT**2 * PRIOR_VAR + NOISE_VAR  # closed-form prior predictive variance


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: one thread avoids oversubscription on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("PYRO_RAZOR_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def trained(cache):
    """A tiny learned-symmetry model on SHO data (hidden (16,), 30 epochs, float64)."""
    data = make_dataset(
        DatasetSpec("sho", n_train=5, train_points=5, n_test=5, test_points=11, dt=0.2)
    )
    pyro.clear_param_store()
    model = NoetherRazorModel.learned(
        2, 0.2, 1, hidden=(16,), tau_samples=8, integrator_steps=5, init_std=0.1
    ).double()
    guide = MatrixNormalGuide(model)
    s, ns = transitions(data.train)
    train(model, guide, s, ns, TrainConfig(epochs=30, lr=1e-2), progress=False)
    return model, guide, data


@pytest.fixture(scope="module")
def test_draws(trained):
    model, guide, data = trained
    s, ns = transitions(data.test)
    return inference.posterior_predictive(model, guide, s, ns, num_samples=40, seed=3)


def linear_model(**kwargs) -> NoetherRazorModel:
    """``F_theta(x) = w.x + b`` (``hidden=()``): one Euler step is ``x + dt J w``, so the prior
    predictive is exactly ``N(x, (dt^2 v + sigma^2) I)`` (``J w ~ N(0, v I)``)."""
    return NoetherRazorModel.vanilla(
        2, DT, hidden=(), prior=FixedVariancePrior(PRIOR_VAR), noise=FixedNoise(NOISE_VAR),
        integrator_steps=3, **kwargs,
    ).double()


def coverage_tolerance(level: float, n_points: int, n_draws: int) -> float:
    return 4 * math.sqrt(level * (1 - level) * (1 / n_points + 1 / n_draws))


# ----------------------------------------------------------------------------- draws


def test_posterior_predictive_shapes_and_log_likelihood(trained, test_draws):
    model, _, data = trained
    s, ns = transitions(data.test)
    d = test_draws
    S, (T, n, M) = 40, s.shape
    assert d["obs"].shape == d["mean"].shape == (S, T, n, M)
    assert d["log_likelihood"].shape == (S, T, n)
    assert d["weight1"].shape == (S, 1, 17) and "weight0" not in d  # keep_weights="last"
    sigma = math.sqrt(1e-3)
    assert float(d["noise_scale"]) == pytest.approx(sigma, rel=1e-12)
    # the log-likelihood is log N(next_state; mean_s, sigma^2 I) summed over phase (1e-9)
    expected = norm.logpdf(ns.numpy()[None], d["mean"], sigma).sum(-1)
    np.testing.assert_allclose(d["log_likelihood"], expected, rtol=1e-9, atol=1e-9)
    # obs = mean + sigma * eps: E[z^2] = 1 within 5 s.e. (var z^2 = 2, 4000 values)
    z = (d["obs"] - d["mean"]) / sigma
    assert abs((z**2).mean() - 1) < 5 * math.sqrt(2 / z.size)
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    # posterior draws differ from each other (the guide is not a point mass)
    assert d["weight1"].std(0).min() > 0


def test_draws_are_reproducible_and_leave_the_global_rng_alone(trained):
    model, guide, data = trained
    s, ns = transitions(data.test)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = inference.posterior_predictive(model, guide, s[:2], ns[:2], num_samples=5, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = inference.posterior_predictive(model, guide, s[:2], ns[:2], num_samples=5, seed=7)
    c = inference.posterior_predictive(model, guide, s[:2], ns[:2], num_samples=5, seed=8)
    for key in ("obs", "mean", "log_likelihood", "weight1"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["obs"], c["obs"])
    d = inference.posterior_predictive(model, guide, s[:2], ns[:2], num_samples=5, seed=7,
                                 chunk_size=1, keep_weights="all")
    np.testing.assert_array_equal(a["weight1"][0], d["weight1"][0])  # same first draw
    assert d["weight0"].shape == (5, 16, 3)


def test_chunks_share_the_draw_of_theta():
    """Linear model: the predictive mean is ``x + dt J w_s``, so with one trajectory per model
    call the drift ``mean - x`` must still be identical across trajectories for each draw."""
    model = linear_model()
    states = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    d = inference.posterior_predictive(model, None, states, num_samples=6, seed=0, chunk_size=1)
    drift = d["mean"] - states.numpy()[None]
    np.testing.assert_allclose(drift, np.broadcast_to(drift[:, :1, :1], drift.shape),
                               atol=1e-12)
    w = d["weight0"][:, 0, :2]  # J w = (w_p, -w_q)
    np.testing.assert_allclose(drift[:, 0, 0], DT * np.stack([w[:, 1], -w[:, 0]], -1),
                               atol=1e-12)


def test_rollouts_of_the_linear_model_match_closed_form():
    """Under the prior, ``x_k = x_0 + k dt J w``: exactly linear in ``k`` per draw, with
    ``Var(x_k - x_0) = (k dt)^2 v``, plus ``sigma^2`` with observation noise."""
    model = linear_model()
    x0 = torch.tensor([[0.5, -1.0], [1.5, 0.3], [-2.0, 0.0]], dtype=torch.float64)
    S, K = 1000, 5
    clean = inference.predictive_rollout(model, None, x0, K, S, seed=1, observation_noise=False)
    assert clean.shape == (S, 3, K + 1, 2)
    np.testing.assert_array_equal(clean[:, :, 0], np.broadcast_to(x0.numpy(), (S, 3, 2)))
    step = clean[:, :, 1] - clean[:, :, 0]
    for k in range(2, K + 1):
        np.testing.assert_allclose(clean[:, :, k] - clean[:, :, 0], k * step, atol=1e-12)
    # the drift J w is shared by every trajectory of a draw
    np.testing.assert_allclose(step[:, 1], step[:, 0], atol=1e-12)
    rel = 4 * math.sqrt(2 / (S - 1))  # 4 s.e. of a sample variance, relative
    var1 = step[:, 0].var(0, ddof=1)
    np.testing.assert_allclose(var1, DT**2 * PRIOR_VAR, rtol=rel)
    noisy = inference.predictive_rollout(model, None, x0, K, S, seed=2)
    np.testing.assert_array_equal(noisy[:, :, 0], clean[:, :, 0])
    varK = (noisy[:, 0, K] - x0[0].numpy()).var(0, ddof=1)
    np.testing.assert_allclose(varK, (K * DT) ** 2 * PRIOR_VAR + NOISE_VAR, rtol=rel)


def test_rollouts_of_the_trained_model(trained):
    model, guide, data = trained
    r = inference.predictive_rollout(model, guide, data.test[:2, 0], 6, 10, seed=0)
    assert r.shape == (10, 2, 7, 2) and np.isfinite(r).all()
    np.testing.assert_array_equal(r[:, :, 0], np.broadcast_to(data.test[:2, 0].numpy(), (10, 2, 2)))
    # one step of the noise-free rollout is the predictive mean of the one-step model
    clean = inference.predictive_rollout(model, guide, data.test[:2, 0], 1, 10, seed=0,
                                   observation_noise=False)
    assert clean.std(0)[:, 1].min() > 0  # posterior uncertainty spreads the draws


# ----------------------------------------------------------------------------- ArviZ


def test_inference_data_groups_dims_coords_and_netcdf_roundtrip(trained, test_draws, tmp_path):
    model, guide, data = trained
    s, ns = transitions(data.test)
    rollouts = inference.predictive_rollout(model, guide, data.test[:2, 0], 10, 8, seed=0)
    G = model.generators().detach()
    idata = analysis.to_inference_data(test_draws, ns, G, states=s, rollouts=rollouts,
                                  rollout_truth=data.test[:2], attrs={"variant": "learned"})
    groups = ("posterior", "posterior_predictive", "observed_data", "log_likelihood",
              "constant_data", "predictions", "predictions_constant_data")
    assert set(arviz_compat.group_names(idata)) == set(groups)
    pp, obs, ll = idata.posterior_predictive["obs"], idata.observed_data["obs"], \
        idata.log_likelihood["obs"]
    assert pp.dims == ("chain", "draw", "trajectory", "time", "phase")
    assert obs.dims == ("trajectory", "time", "phase")
    assert ll.dims == ("chain", "draw", "trajectory", "time")
    assert pp.shape == (1, 40, 5, 10, 2)
    for dim in ("trajectory", "time"):
        np.testing.assert_array_equal(pp[dim].values, obs[dim].values)
        np.testing.assert_array_equal(ll[dim].values, obs[dim].values)
    assert list(pp["phase"].values) == list(obs["phase"].values) == ["q1", "p1"]
    np.testing.assert_array_equal(pp.values[0], test_draws["obs"])
    np.testing.assert_array_equal(obs.values, ns.numpy())
    np.testing.assert_array_equal(ll.values[0], test_draws["log_likelihood"])
    inc = idata.posterior_predictive["increment"].values[0]
    np.testing.assert_allclose(inc, test_draws["obs"] - s.numpy()[None], atol=1e-15)
    gen = idata.constant_data["generators"]
    assert gen.dims == ("quantity", "row", "col")
    assert list(gen["row"].values) == list(gen["col"].values) == ["q1", "p1", "1"]
    np.testing.assert_array_equal(gen.values, G.numpy())
    assert float(idata.constant_data["noise_scale"]) == pytest.approx(math.sqrt(1e-3))
    assert idata.posterior["mean"].dims == ("chain", "draw", "trajectory", "time", "phase")
    assert idata.posterior["weight1"].dims == ("chain", "draw", "weight1_row", "weight1_col")
    roll = idata.predictions["rollout"]
    assert roll.dims == ("chain", "draw", "trajectory", "step", "phase")
    assert roll.shape == (1, 8, 2, 11, 2)
    assert idata.predictions_constant_data["rollout_truth"].shape == (2, 11, 2)
    assert idata.posterior.attrs["variant"] == "learned"

    path = analysis.save_netcdf(idata, tmp_path / "sub" / "ppc.nc")
    back = analysis.load_netcdf(path)
    assert type(back) is type(idata)
    assert set(arviz_compat.group_names(back)) == set(groups)
    for group in groups:
        a, b = arviz_compat.group(idata, group), arviz_compat.group(back, group)
        assert set(a.data_vars) == set(b.data_vars)
        for var in a.data_vars:
            assert a[var].dims == b[var].dims
            np.testing.assert_array_equal(a[var].values, b[var].values)
        for coord in a.coords:
            np.testing.assert_array_equal(a[coord].values, b[coord].values)
    with pytest.raises(FileNotFoundError, match="no InferenceData"):
        analysis.load_netcdf(tmp_path / "missing.nc")


def test_to_inference_data_rejects_bad_input(test_draws, trained):
    _, _, data = trained
    s, ns = transitions(data.test)
    with pytest.raises(ValueError, match="'obs' entry"):
        analysis.to_inference_data({"mean": test_draws["mean"]}, ns)
    with pytest.raises(ValueError, match="observed must have shape"):
        analysis.to_inference_data(test_draws, ns[:, :3])
    with pytest.raises(ValueError, match=r"generators must have shape \(K, 3, 3\)"):
        analysis.to_inference_data(test_draws, ns, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        analysis.to_inference_data(test_draws, ns * float("nan"))
    with pytest.raises(ValueError, match="rollout_truth must have shape"):
        analysis.to_inference_data(test_draws, ns, rollouts=np.zeros((3, 2, 4, 2)),
                              rollout_truth=np.zeros((2, 5, 2)))


# ----------------------------------------------------------------------------- calibration


def test_coverage_of_a_known_gaussian_predictive_is_nominal():
    rng = np.random.default_rng(0)
    N, S = 2000, 2000
    mu, sd = rng.normal(size=N), rng.uniform(0.5, 2.0, size=N)
    draws = mu + sd * rng.normal(size=(S, N))
    observed = mu + sd * rng.normal(size=N)
    cov = analysis.coverage(draws, observed, (0.5, 0.8, 0.9, 0.95))
    for level, value in cov.items():
        assert abs(value - level) < coverage_tolerance(level, N, S), (level, value)
    # an overconfident predictive (half the spread) misses: 90% intervals cover P(|z| < 0.82)
    narrow = mu + 0.5 * sd * rng.normal(size=(S, N))
    expected = 2 * norm.cdf(0.5 * norm.ppf(0.95)) - 1
    assert abs(analysis.coverage(narrow, observed, (0.9,))[0.9] - expected) < coverage_tolerance(
        expected, N, S)
    # the intervals are numpy's linear-interpolation quantiles
    lo, hi = np.quantile(draws[:50, :300], [0.15, 0.85], axis=0)
    inside = ((observed[:300] >= lo) & (observed[:300] <= hi)).mean()
    assert analysis.coverage(draws[:50, :300], observed[:300], (0.7,))[0.7] == inside
    nominal, empirical = analysis.calibration_curve(draws, observed)
    np.testing.assert_allclose(nominal, np.arange(1, 20) * 0.05)
    assert np.all(np.diff(empirical) >= 0)  # nested intervals: coverage is monotone
    for level, value in zip(nominal, empirical, strict=True):
        assert abs(value - level) < coverage_tolerance(level, N, S)


def test_prior_predictive_coverage_of_the_linear_model():
    """Observations from the closed-form prior predictive ``N(x, (dt^2 v + sigma^2) I)`` are
    covered at the nominal rate by the model's own Monte-Carlo prior predictive."""
    model = linear_model()
    g = torch.Generator().manual_seed(0)
    T, n, M, S = 500, 2, 2, 1000
    states = torch.randn(T, n, M, generator=g, dtype=torch.float64)
    observed = states + math.sqrt(PREDICTIVE_VAR) * torch.randn(
        T, n, M, generator=g, dtype=torch.float64)
    d = inference.posterior_predictive(model, None, states, observed, num_samples=S, seed=0,
                                 chunk_size=T)
    N = T * n * M
    levels = (0.5, 0.8, 0.9, 0.95)
    for level, value in analysis.coverage(d["obs"], observed.numpy(), levels).items():
        assert abs(value - level) < coverage_tolerance(level, N, S), (level, value)
    # the predictive variance is dt^2 v + sigma^2 (4 s.e. of a variance from S draws)
    var = (d["obs"] - states.numpy()[None]).var(0, ddof=1).mean()
    assert var == pytest.approx(PREDICTIVE_VAR, rel=4 * math.sqrt(2 / S))


def test_mean_log_predictive_density_matches_closed_form():
    """MC ``mean_i log (1/S) sum_s p(y_i | theta_s)`` vs ``log N(y_i; x_i, (dt^2 v + s^2) I)``.

    Tolerance: 4 delta-method standard errors plus the ``O(1/S)`` bias. Linearising
    ``log pbar_i`` around ``p_i``, the estimate is ``const + mean_s h_s`` with
    ``h_s = mean_i p_si / pbar_i`` (the points share the draws, so the errors are summed
    through ``h``), hence s.e. ``sd_s(h) / sqrt(S)``; the bias is ``-mean_i var_s(p_si) /
    (2 S pbar_i^2)``.
    """
    model = linear_model()
    g = torch.Generator().manual_seed(1)
    T, n, M, S = 100, 2, 2, 1000
    states = torch.randn(T, n, M, generator=g, dtype=torch.float64)
    observed = states + math.sqrt(PREDICTIVE_VAR) * torch.randn(
        T, n, M, generator=g, dtype=torch.float64)
    d = inference.posterior_predictive(model, None, states, observed, num_samples=S, seed=5,
                                 chunk_size=T)
    ll = d["log_likelihood"].reshape(S, -1)
    mc = analysis.mean_log_predictive_density(d["log_likelihood"])
    exact = norm.logpdf(observed.numpy(), states.numpy(), math.sqrt(PREDICTIVE_VAR)).sum(-1)
    p = np.exp(ll - ll.max(0))
    ratio = p / p.mean(0)
    se = ratio.mean(1).std(ddof=1) / math.sqrt(S)
    bias = (ratio.var(0, ddof=1) / (2 * S)).mean()
    assert abs(mc - exact.mean()) < 4 * se + bias
    assert 4 * se + bias < 0.03  # the check is sharp
    np.testing.assert_allclose(
        analysis.pointwise_log_predictive_density(d["log_likelihood"]).reshape(-1),
        np.log(np.exp(ll).mean(0)), rtol=1e-10,
    )


def test_mean_log_predictive_density_exact_values():
    # constant over draws -> that constant; two draws -> log of the mean of the likelihoods
    assert analysis.mean_log_predictive_density(np.full((7, 3), -2.5)) == pytest.approx(-2.5)
    ll = np.log(np.array([[0.2, 1e-300], [0.6, 3e-300]]))
    np.testing.assert_allclose(analysis.pointwise_log_predictive_density(ll),
                               np.log([0.4, 2e-300]), rtol=1e-12)
    assert analysis.mean_log_predictive_density(np.array([[-np.inf], [0.0]])) == pytest.approx(
        math.log(0.5))
    with pytest.raises(ValueError, match="NaN"):
        analysis.mean_log_predictive_density(np.array([[np.nan], [0.0]]))


def test_summary_functions_reject_bad_input():
    with pytest.raises(ValueError, match="draws must have shape"):
        analysis.coverage(np.zeros((10, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="draws must have shape"):
        analysis.coverage(np.zeros((1, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="levels must be numbers strictly between 0 and 1"):
        analysis.coverage(np.zeros((10, 3)), np.zeros(3), (0.5, 1.0))
    with pytest.raises(ValueError, match="drop diverged draws"):
        analysis.coverage(np.full((10, 3), np.inf), np.zeros(3))
    model = linear_model()
    states = torch.zeros(2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"states must have shape \(trajectories, transitions"):
        inference.posterior_predictive(model, None, states[0])
    with pytest.raises(ValueError, match="next_states contains NaN"):
        inference.posterior_predictive(model, None, states, states * float("nan"))
    with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
        inference.posterior_predictive(model, None, states, num_samples=0)
    with pytest.raises(ValueError, match="keep_weights must be"):
        inference.posterior_predictive(model, None, states, keep_weights="first")
    with pytest.raises(ValueError, match=r"x0 must have shape \(R, 2\)"):
        inference.predictive_rollout(model, None, states, 3)
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        inference.predictive_rollout(model, None, states[0], 0)


# ----------------------------------------------------------------------------- LOO, comparison


def gaussian_idata(rng, shift: float, post_sd: float, T=30, n=4, M=2, S=200, y_offset=0.0):
    """InferenceData of a location model ``y ~ N(mu + shift + e_s, 1)``, ``e_s ~ N(0, post_sd^2)``
    per draw; observations ``y = mu + y_offset + N(0, 1)`` (one fixed data set per ``rng``)."""
    mu = np.linspace(-1, 1, T * n * M).reshape(T, n, M)
    y = mu + y_offset + np.random.default_rng(99).normal(size=(T, n, M))
    centre = mu[None] + shift + post_sd * rng.normal(size=(S, 1, 1, 1))
    obs = centre + rng.normal(size=(S, T, n, M))
    loglik = norm.logpdf(y[None], centre, 1.0).sum(-1)
    draws = {"obs": obs, "mean": np.broadcast_to(centre, obs.shape), "log_likelihood": loglik}
    return analysis.to_inference_data(draws, y), y, mu


def test_loo_summary_flags_unreliable_importance_sampling():
    rng = np.random.default_rng(0)
    # a tight posterior: the log-likelihood barely varies over draws -> all k small
    good, _, _ = gaussian_idata(rng, 0.0, 0.01)
    loo = analysis.loo_summary(good)
    assert loo["reliable"] and loo["share_k_gt_0.7"] == 0.0 and loo["pareto_k_max"] < 0.5
    assert loo["n_points"] == 120 and loo["n_samples"] == 200
    # tight draws: elpd_loo ~ sum_i log N(y_i; mu_i, 1) (the draws sit at mu)
    assert loo["elpd_loo"] == pytest.approx(float(good.log_likelihood["obs"].mean()) * 120,
                                            abs=1.0)
    # a wide posterior and observations far from it: heavy-tailed weights -> large k
    bad, _, _ = gaussian_idata(rng, 0.0, 3.0, y_offset=6.0)
    loo_bad = analysis.loo_summary(bad)
    assert not loo_bad["reliable"] and loo_bad["share_k_gt_0.7"] > 0
    assert "UNRELIABLE" in loo_bad["note"]


def test_compare_variants_ranks_by_held_out_density():
    rng = np.random.default_rng(1)
    right, y, mu = gaussian_idata(rng, 0.0, 0.01)
    wrong, _, _ = gaussian_idata(rng, 1.0, 0.01)
    result = analysis.compare_variants({"right": right, "wrong": wrong},
                                  {"right": right, "wrong": wrong})
    test = result["test"]
    assert result["best_test"] == "right"
    # closed form (posterior ~ a point at mu / mu+1): mean_i log N(y_i; mu_i (+1), 1) per point
    per_point = {"right": norm.logpdf(y, mu, 1).sum(-1).mean(),
                 "wrong": norm.logpdf(y, mu + 1, 1).sum(-1).mean()}
    for name in ("right", "wrong"):
        assert test[name]["mlpd"] == pytest.approx(per_point[name], abs=0.05)
    assert test["wrong"]["mlpd_diff_to_best"] < -3 * test["wrong"]["mlpd_diff_se"]
    assert test["right"]["mlpd_diff_to_best"] == 0.0
    assert test["right"]["n_points"] == 120 and test["right"]["n_draws"] == 200
    assert result["loo_reliable"] is True
    rows = result["loo_compare"]
    assert rows["right"]["rank"] == 0 and rows["wrong"]["rank"] == 1
    assert rows["wrong"]["elpd_diff"] > 0
    # one unreliable variant flags the whole LOO comparison
    bad, _, _ = gaussian_idata(rng, 0.0, 3.0, y_offset=6.0)
    flagged = analysis.compare_variants({"right": right, "bad": bad}, {"right": right, "bad": bad})
    assert flagged["loo_reliable"] is False and "bad" in flagged["loo_note"]
    assert flagged["loo_compare"]["bad"]["reliable"] is False
    no_loo = analysis.compare_variants({"right": right})
    assert no_loo["loo"] is None and no_loo["best_test"] == "right"
    with pytest.raises(ValueError, match="non-empty dict"):
        analysis.compare_variants({})


# ----------------------------------------------------------------------------- figures


def test_figures(trained, test_draws, tmp_path):
    model, guide, data = trained
    s, ns = transitions(data.test)
    idata = analysis.to_inference_data(test_draws, ns, model.generators().detach(), states=s)
    fig = plotting.plot_ppc_phases(idata, tmp_path / "obs.png")
    assert sum(ax.get_visible() for ax in fig.axes) == 2
    plotting.plot_ppc_phases(idata, tmp_path / "inc.png", "increment")
    r = inference.predictive_rollout(model, guide, data.test[:2, 0], 10, 20, seed=0)
    fig = plotting.plot_rollout_bands(r, data.test[:2], tmp_path / "roll.png",
                                 times=np.arange(11) * 0.2)
    assert len(fig.axes) == 4
    median = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"][0]
    np.testing.assert_allclose(median.get_ydata(), np.median(r[:, 0, :, 0], axis=0))
    curves = {"one step": analysis.calibration_curve(test_draws["obs"], ns.numpy())}
    plotting.plot_calibration(curves, tmp_path / "cal.png", n_points=ns.numel())
    plotting.plot_loo_pit(idata, tmp_path / "loo_pit.png")
    for name in ("obs", "inc", "roll", "cal", "loo_pit"):
        head = (tmp_path / f"{name}.png").read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="disagree"):
        plotting.plot_rollout_bands(r, data.test[:3], None)


# ----------------------------------------------------------------------------- runs


@pytest.fixture
def keep_param_store():
    """``load_variant`` clears the global param store; give the other tests theirs back."""
    state = pyro.get_param_store().get_state()
    yield
    pyro.get_param_store().set_state(state)


def test_run_ppc_on_a_finished_run(tmp_path, cache, keep_param_store, capsys):
    from pyro_razor.runs import DataConfig, EvaluationConfig, ExperimentConfig, ModelConfig

    config = ExperimentConfig(
        name="tiny",
        variants=("vanilla", "learned"),
        data=DataConfig(system="sho", n_train=5, train_points=5, n_test=5, test_points=11,
                        dt=0.2),
        model=ModelConfig(hidden=(16,), integrator_steps=5, tau_samples=8, prior="fixed"),
        train=TrainConfig(epochs=30, lr=1e-2),
        evaluation=EvaluationConfig(num_samples=2, tau_samples=8, rollout_points=11,
                                    rollout_trajectories=1, grid=9),
        dtype="float64",
    )
    run_dir = tmp_path / "tiny"
    runs.run_experiment(config, run_dir, progress=False)
    result = runs.run_ppc(run_dir, samples=20, horizon=12, rollout_trajectories=2)
    printed = capsys.readouterr().out
    assert "vanilla" in printed and "learned" in printed and "mlpd" in printed
    assert set(result["variants"]) == {"vanilla", "learned"}
    for variant in ("vanilla", "learned"):
        vdir = run_dir / variant
        record = json.loads((vdir / "ppc.json").read_text())
        assert set(record["test"]["coverage"]) == {"50%", "80%", "90%", "95%"}
        assert 0 <= record["test"]["coverage"]["50%"] <= record["test"]["coverage"]["90%"] <= 1
        assert record["rollout"]["horizon_steps"] == 12  # beyond the data: exact solution
        for key in ("reliable", "share_k_gt_0.7", "elpd_loo", "good_k"):
            assert key in record["loo_train"]
        idata = analysis.load_netcdf(vdir / "ppc.nc")
        # ppc.json's test mlpd is the one of the saved log-likelihood
        ll = idata.log_likelihood["obs"].values[0]
        assert record["test"]["mlpd_per_transition"] == pytest.approx(
            analysis.mean_log_predictive_density(ll), rel=1e-12)
        assert idata.log_likelihood["obs"].shape == (1, 20, 5, 10)
        assert idata.predictions["rollout"].shape == (1, 20, 2, 13, 2)
        truth = idata.predictions_constant_data["rollout_truth"].values
        data = make_dataset(config.data.spec())
        np.testing.assert_allclose(truth[:, :11], data.test[:2].numpy(), atol=1e-8)
        assert ("generators" in idata.constant_data) == (variant == "learned")
        assert (vdir / "ppc_train.nc").is_file()
        for figure in record["figures"].values():
            assert (run_dir / figure).is_file()
        for kind in ("obs", "increment", "rollout", "calibration"):
            assert (run_dir / "figures" / f"ppc_{variant}_{kind}.png").is_file()
    comparison = json.loads((run_dir / "ppc_comparison.json").read_text())
    assert set(comparison["test"]) == {"vanilla", "learned"}
    assert comparison["best_test"] in {"vanilla", "learned"}
    assert isinstance(comparison["loo_reliable"], bool) and comparison["loo_note"]

    # a single variant, then the errors: an untrained variant and a directory without a run
    one = runs.run_ppc(run_dir, variant="vanilla", samples=5, verbose=False)
    assert set(one["variants"]) == {"vanilla"}
    assert set(one["comparison"]["test"]) == {"vanilla", "learned"}  # earlier files reused
    with pytest.raises(FileNotFoundError, match=r"oracle.*checkpoint\.pt.*pyro-razor run CONFIG"):
        runs.run_ppc(run_dir, variant="oracle")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no trained variant.*pyro-razor run CONFIG"):
        runs.run_ppc(empty)
    with pytest.raises(FileNotFoundError, match="does not exist.*pyro-razor run CONFIG"):
        runs.run_ppc(tmp_path / "nowhere")
