"""The ArviZ compatibility layer (:mod:`pyro_razor.analysis.arviz_compat`) on whichever ArviZ is
installed: 0.x (``InferenceData``, Python 3.11 here) or 1.x (``xarray.DataTree``, Python >= 3.12).

The same file runs in both environments (``docs/arviz.md``). Where torch is missing (the
Python 3.12 environment), ``pyro_razor`` cannot be imported, but ``arviz_compat`` needs only
NumPy, xarray and ArviZ: it is then loaded from its file, and the tests that need the rest of
pyro-razor (figures, ``to_inference_data``) are skipped.

Reference model for the numbers: ``y_i ~ N(mu, 1)``, ``i = 1..N``, flat prior, so the posterior
is ``mu ~ N(ybar, 1/N)`` and, exactly, ``p(y_i | y_-i) = N(y_i; ybar_-i, 1 + 1/(N-1))`` and the
LOO-PIT is ``Phi((y_i - ybar_-i) / sqrt(1 + 1/(N-1)))``. With ``S = 4000`` exact posterior draws
the PSIS estimates are within Monte-Carlo error of these. Over seeds 0-4, on ArviZ 0.23.4 and
1.3 alike, the largest deviations were 0.018 per point and 0.032 in total for ``elpd`` and
0.021 for LOO-PIT; the tolerances below are about twice those.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import norm

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _load_compat():
    if HAVE_TORCH:
        from pyro_razor.analysis import arviz_compat

        return arviz_compat
    path = Path(__file__).resolve().parents[1] / "pyro_razor" / "analysis" / "arviz_compat.py"
    spec = importlib.util.spec_from_file_location("pyro_razor_arviz_compat", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


compat = _load_compat()
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="pyro_razor needs torch")
arviz_0 = pytest.mark.skipif(compat.ARVIZ_GENERATION != 0, reason="ArviZ 0.x only")
arviz_1 = pytest.mark.skipif(compat.ARVIZ_GENERATION != 1, reason="ArviZ 1.x only")

N, S = 20, 4000  # observations, posterior draws
SD = ["chain", "draw"]


def normal_mean_model(seed: int = 0, shift: float = 0.0, m: int = 1):
    """Groups of the reference model, ``m`` coordinates per point (``(N, m)`` observations,
    ``y_ij ~ N(mu_j, 1)``, independent ``mu_j``); ``shift`` moves the posterior draws away
    (a wrong model). Returns ``(groups, y, mu, y_rep, log_lik)``."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0.5, 1.0, size=(N, m))
    mu = y.mean(0) + rng.normal(size=(S, m)) / math.sqrt(N) + shift
    y_rep = mu[:, None, :] + rng.normal(size=(S, N, m))
    log_lik = norm.logpdf(y[None], mu[:, None, :], 1.0).sum(-1)  # (S, N): per point
    coords = {"point": np.arange(N), "coord": [f"c{j}" for j in range(m)]}
    groups = {
        "posterior": compat.dataset({"mu": (SD + ["coord"], mu[None])}, coords),
        "posterior_predictive": compat.dataset({"y": (SD + ["point", "coord"], y_rep[None])},
                                               coords),
        "log_likelihood": compat.dataset({"y": (SD + ["point"], log_lik[None])}, coords),
        "observed_data": compat.dataset({"y": (["point", "coord"], y)}, coords,
                                        {"source": "test"}),
    }
    return groups, y, mu, y_rep, log_lik


def exact_loo(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N,)`` exact ``log p(y_i | y_-i)`` (summed over coordinates) and ``(N, m)`` LOO-PIT."""
    ybar_minus = (y.sum(0) - y) / (N - 1)
    scale = math.sqrt(1 + 1 / (N - 1))
    return norm.logpdf(y, ybar_minus, scale).sum(-1), norm.cdf((y - ybar_minus) / scale)


# ----------------------------------------------------------------------------- groups


def test_generation_is_detected_from_the_installed_arviz():
    import arviz

    assert compat.ARVIZ_VERSION == arviz.__version__
    assert compat.ARVIZ_GENERATION == (0 if arviz.__version__.startswith("0.") else 1)
    data = compat.from_datasets(normal_mean_model()[0])
    if compat.ARVIZ_GENERATION == 0:
        assert type(data).__name__ == "InferenceData"
    else:
        assert isinstance(data, xr.DataTree)
        assert importlib.util.find_spec("arviz_base") and importlib.util.find_spec("arviz_stats")


def test_groups_hold_exactly_the_given_values_dims_and_coords():
    groups, y, mu, y_rep, log_lik = normal_mean_model(m=2)
    data = compat.from_datasets(groups)
    assert compat.group_names(data) == list(groups)
    pp = compat.group(data, "posterior_predictive")["y"]
    assert pp.dims == ("chain", "draw", "point", "coord") and pp.shape == (1, S, N, 2)
    np.testing.assert_array_equal(pp.values[0], y_rep)
    np.testing.assert_array_equal(pp["draw"].values, np.arange(S))
    assert list(pp["coord"].values) == ["c0", "c1"]
    obs = compat.group(data, "observed_data")
    assert obs["y"].dims == ("point", "coord") and obs.attrs == {"source": "test"}
    assert set(obs.coords) == {"point", "coord"}  # only the dims it uses
    np.testing.assert_array_equal(obs["y"].values, y)
    ll = compat.group(data, "log_likelihood")["y"]
    assert ll.dims == ("chain", "draw", "point")
    np.testing.assert_array_equal(compat.samples(data, "log_likelihood", "y"), log_lik)
    np.testing.assert_array_equal(compat.samples(data, "posterior", "mu"), mu)
    with pytest.raises(KeyError, match="no 'predictions' group"):
        compat.group(data, "predictions")
    with pytest.raises(ValueError, match="1-d values for dims"):
        compat.dataset({"a": (["x", "y"], np.zeros(3))})


def test_scalar_variables_and_unused_coords():
    ds = compat.dataset({"noise_scale": ([], np.asarray(0.25))}, {"point": np.arange(3)})
    assert ds["noise_scale"].dims == () and float(ds["noise_scale"]) == 0.25
    assert "point" not in ds.coords


def test_netcdf_roundtrip_and_file_format_shared_by_both_generations(tmp_path):
    groups = normal_mean_model(m=2)[0]
    data = compat.from_datasets(groups)
    compat.save_netcdf(data, tmp_path / "a.nc")
    back = compat.load_netcdf(tmp_path / "a.nc")
    assert type(back) is type(data) and compat.group_names(back) == list(groups)
    for name, ds in groups.items():
        xr.testing.assert_identical(compat.group(back, name), ds)
    # the file is a netCDF4 group per ArviZ group: plain xarray reads it as a DataTree ...
    with xr.open_datatree(tmp_path / "a.nc") as tree:
        assert set(tree.children) == set(groups)
        np.testing.assert_array_equal(tree["observed_data"]["y"].values,
                                      groups["observed_data"]["y"].values)
    # ... and a file written group by group (as ArviZ 0.x does) loads on either generation
    for i, (name, ds) in enumerate(groups.items()):
        ds.to_netcdf(tmp_path / "b.nc", group=name, mode="w" if i == 0 else "a")
    other = compat.load_netcdf(tmp_path / "b.nc")
    for name, ds in groups.items():
        xr.testing.assert_identical(compat.group(other, name), ds)


# ----------------------------------------------------------------------------- PSIS-LOO


def test_loo_matches_the_direct_computation_and_the_exact_leave_one_out():
    groups, y, _, _, log_lik = normal_mean_model(m=2)
    res = compat.loo(compat.from_datasets(groups), "y")
    assert res.n_samples == S and res.n_points == N
    assert res.elpd_i.shape == res.pareto_k.shape == (N,)
    assert res.good_k == pytest.approx(min(1 - 1 / math.log10(S), 0.7), rel=1e-12)
    # direct: elpd_i = log sum_s w_is p(y_i | mu_s) with the normalised PSIS weights (1e-10)
    lw, k = compat.psis_log_weights(log_lik)
    assert lw.shape == (S, N) and k.shape == (N,)
    np.testing.assert_allclose(logsumexp(lw, axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(res.elpd_i, logsumexp(lw + log_lik, axis=0), atol=1e-10)
    np.testing.assert_allclose(res.pareto_k, k, atol=1e-12)
    assert res.elpd == pytest.approx(res.elpd_i.sum(), abs=1e-9)
    lpd = logsumexp(log_lik, axis=0) - math.log(S)  # p_loo = lpd - elpd_loo
    assert res.p == pytest.approx(lpd.sum() - res.elpd, abs=1e-9)
    # ArviZ's standard error: ddof 0 on 0.x, ddof 1 on 1.x
    ddof = compat.ARVIZ_GENERATION
    assert res.se == pytest.approx(math.sqrt(N * res.elpd_i.var(ddof=ddof)), rel=1e-9)
    # against the exact LOO densities: a tight posterior, all k small (module docstring)
    exact, _ = exact_loo(y)
    assert res.pareto_k.max() < 0.5
    np.testing.assert_allclose(res.elpd_i, exact, atol=0.04)
    assert res.elpd == pytest.approx(exact.sum(), abs=0.07)


def test_loo_flags_heavy_tailed_weights():
    """A posterior far from the data makes the importance ratios heavy-tailed: large k."""
    rng = np.random.default_rng(3)
    mu = rng.normal(0, 3, size=(200, 1))  # wide posterior draws, data at 6
    log_lik = norm.logpdf(np.full((1, 30), 6.0), mu, 1.0)
    ds = compat.dataset({"y": (SD + ["point"], log_lik[None])})
    data = compat.from_datasets({"posterior": compat.dataset({"mu": (SD, mu.T)}),
                                 "log_likelihood": ds})
    res = compat.loo(data, "y")
    assert res.pareto_k.max() > res.good_k
    np.testing.assert_allclose(res.pareto_k, compat.psis_log_weights(log_lik)[1], atol=1e-12)


def test_loo_pit_matches_the_weighted_ecdf_and_the_exact_leave_one_out():
    """The log-likelihood is per point, the observations have 2 coordinates: the point's
    weights are shared by its coordinates (as for pyro-razor's transitions)."""
    groups, y, _, y_rep, log_lik = normal_mean_model(seed=1, m=2)
    pit = compat.loo_pit(compat.from_datasets(groups), "y")
    assert pit.shape == (N, 2) and ((pit >= 0) & (pit <= 1)).all()
    lw, _ = compat.psis_log_weights(log_lik)
    direct = (np.exp(lw)[:, :, None] * (y_rep <= y[None])).sum(0)  # (1e-12)
    np.testing.assert_allclose(pit, direct, atol=1e-12)
    # exact LOO-PIT (module docstring)
    _, exact = exact_loo(y)
    np.testing.assert_allclose(pit, exact, atol=0.045)


def test_compare_ranks_the_right_model_first():
    right = compat.from_datasets(normal_mean_model(seed=2)[0])
    wrong = compat.from_datasets(normal_mean_model(seed=2, shift=1.0)[0])
    rows = compat.compare({"right": right, "wrong": wrong}, "y")
    assert list(rows) == ["right", "wrong"]
    assert rows["right"]["rank"] == 0 and rows["wrong"]["rank"] == 1
    loo_right, loo_wrong = compat.loo(right, "y"), compat.loo(wrong, "y")
    assert rows["right"]["elpd_loo"] == pytest.approx(loo_right.elpd, abs=1e-9)
    assert rows["wrong"]["p_loo"] == pytest.approx(loo_wrong.p, abs=1e-9)
    assert rows["wrong"]["elpd_diff"] == pytest.approx(loo_right.elpd - loo_wrong.elpd, abs=1e-9)
    assert rows["right"]["weight"] > rows["wrong"]["weight"]
    assert rows["right"]["weight"] + rows["wrong"]["weight"] == pytest.approx(1, abs=1e-6)


def test_kde_is_a_density_of_the_values():
    x = np.random.default_rng(4).normal(1.0, 2.0, size=5000)
    grid, density = compat.kde(x)
    assert grid.shape == density.shape == (512,)
    # the grid covers the values' range (bin centres: within one bin of the ends)
    step = (x.max() - x.min()) / 511
    assert abs(grid[0] - x.min()) < step and abs(grid[-1] - x.max()) < step
    assert np.trapezoid(density, grid) == pytest.approx(1, abs=0.01)
    # its mean and the N(1, 2) density at the mode (0.01 and 5%: bandwidth and sampling)
    assert np.trapezoid(grid * density, grid) == pytest.approx(x.mean(), abs=0.01)
    assert density.max() == pytest.approx(norm.pdf(0, 0, 2), rel=0.05)
    with pytest.raises(ValueError, match="at least 2 finite"):
        compat.kde(np.array([1.0, np.nan]))


# ----------------------------------------------------------------------------- pyro-razor


@needs_torch
def test_to_inference_data_and_figures_on_the_installed_arviz(tmp_path):
    from pyro_razor import analysis, plotting

    groups, y, _, y_rep, log_lik = normal_mean_model(seed=5, m=2)
    mu = compat.samples(compat.from_datasets(groups), "posterior", "mu")[:400]
    draws = {"obs": y_rep.reshape(S, 4, 5, 2)[:400],
             "log_likelihood": log_lik.reshape(S, 4, 5)[:400],
             "mean": np.broadcast_to(mu[:, None, None], (400, 4, 5, 2))}
    data = analysis.to_inference_data(draws, y.reshape(4, 5, 2))
    assert set(compat.group_names(data)) == {"posterior", "posterior_predictive",
                                             "observed_data", "log_likelihood"}
    obs, pred, labels = plotting.predictive.ppc_values(data)
    np.testing.assert_array_equal(pred, draws["obs"])
    assert labels == ["q1", "p1"]
    fig = plotting.plot_ppc_phases(data, tmp_path / "ppc.png", num_pp_samples=5)
    observed_line = [ln for ln in fig.axes[0].lines if ln.get_label() == "observed"][0]
    np.testing.assert_allclose(observed_line.get_ydata(), compat.kde(obs[..., 0])[1])
    assert len(fig.axes[0].lines) == 5 + 2
    fig = plotting.plot_loo_pit(data, tmp_path / "pit.png")
    pit = np.sort(compat.loo_pit(data, "obs").reshape(-1))
    curve = fig.axes[0].lines[-1]
    u = curve.get_xdata()
    np.testing.assert_allclose(curve.get_ydata(), np.searchsorted(pit, u, side="right") / 40 - u)
    for name in ("ppc", "pit"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@arviz_0
def test_arviz_0_container_is_inference_data():
    import arviz

    assert isinstance(compat.from_datasets(normal_mean_model()[0]), arviz.InferenceData)


@arviz_1
def test_arviz_1_container_is_a_datatree_with_one_child_per_group():
    data = compat.from_datasets(normal_mean_model()[0])
    assert data.groups == ("/", "/posterior", "/posterior_predictive", "/log_likelihood",
                           "/observed_data")
