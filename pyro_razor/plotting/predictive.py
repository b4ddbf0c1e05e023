"""Figures of the posterior predictive checks: predictive densities per coordinate, rollout
bands, calibration of central intervals and the LOO probability integral transform.

The figures are drawn with matplotlib from numbers computed by ArviZ through
:mod:`pyro_razor.analysis.arviz_compat` (its KDE, its PSIS weights and LOO-PIT values), so they
look the same with ArviZ 0.x (``InferenceData``) and 1.x (``DataTree``).

Shapes: ``P`` draws, ``R`` rollouts of ``h + 1`` steps, ``M`` phase dimension.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from pyro_razor.analysis import arviz_compat as compat
from pyro_razor.analysis.arviz_data import as_float_array
from pyro_razor.analysis.predictive import check_levels
from pyro_razor.plotting.common import save
from pyro_razor.symmetry import phase_labels

__all__ = [
    "plot_calibration",
    "plot_loo_pit",
    "plot_ppc_phases",
    "plot_rollout_bands",
    "ppc_values",
]


def ppc_values(idata, var_name: str = "obs") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Observed and predictive values of ``var_name`` with the phase coordinate last.

    Returns:
        ``(observed (..., M), predictive (P, ..., M), phase labels (M,))``.
    """
    obs = compat.group(idata, "observed_data")[var_name].transpose(..., "phase")
    pred = compat.group(idata, "posterior_predictive")[var_name]
    pred = pred.transpose(*compat.SAMPLE_DIMS, *obs.dims)
    labels = [str(v) for v in obs["phase"].values]
    return obs.values, pred.values.reshape(-1, *obs.shape), labels


def plot_ppc_phases(
    idata,
    path: str | os.PathLike | None = None,
    var_name: str = "obs",
    num_pp_samples: int = 50,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """Posterior predictive check of ``var_name`` with one panel per phase coordinate.

    Each panel overlays ArviZ's KDE of the observed values (over all trajectories and times)
    with the KDEs of ``num_pp_samples`` replicates (draws chosen at random with ``seed``) and
    the KDE of all draws pooled (the predictive mean density). ``idata``: ``InferenceData``
    (ArviZ 0.x) or ``DataTree`` (1.x) from :func:`pyro_razor.analysis.to_inference_data`.
    """
    y, pred, labels = ppc_values(idata, var_name)
    M, P = y.shape[-1], pred.shape[0]
    picks = np.random.default_rng(seed).choice(P, size=min(num_pp_samples, P), replace=False)
    fig = Figure(figsize=(3.6 * min(M, 4), 3.0 * math.ceil(M / 4)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(M / 4), min(M, 4), squeeze=False).ravel())
    for m, ax in enumerate(axes[:M]):
        for j, p in enumerate(picks):
            ax.plot(*compat.kde(pred[p, ..., m]), color="C0", alpha=0.2, lw=0.8,
                    label="posterior predictive" if j == 0 else None)
        ax.plot(*compat.kde(pred[..., m]), color="C1", ls="--", lw=1.5,
                label="posterior predictive mean")
        ax.plot(*compat.kde(y[..., m]), color="k", lw=1.5, label="observed")
        ax.set_xlabel(f"{var_name}: {labels[m]}", fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8)
    for ax in axes[M:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def plot_rollout_bands(
    rollouts: np.ndarray,
    truth: np.ndarray,
    path: str | os.PathLike | None = None,
    times: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    interval: float = 0.9,
    title: str | None = None,
) -> Figure:
    """Predictive rollouts: median and central ``interval`` band against the true trajectory.

    One row per rollout trajectory, one column per phase coordinate. Non-finite (diverged)
    draws are ignored in the quantiles.

    Args:
        rollouts: ``(P, R, h+1, M)`` from :func:`pyro_razor.inference.predictive_rollout`.
        truth: ``(R, h+1, M)`` true trajectories.
        times: ``(h+1,)`` time of each step (default the step index).
        labels: ``M`` coordinate names (default ``q1..pd``).
    """
    r = as_float_array(rollouts, "rollouts")
    x = as_float_array(truth, "truth")
    if r.ndim != 4 or x.shape != r.shape[1:]:
        raise ValueError(f"rollouts (P, R, h+1, M) and truth (R, h+1, M) disagree: "
                         f"{r.shape} vs {x.shape}")
    check_levels([interval])
    S, R, P, M = r.shape
    t = np.arange(P) if times is None else as_float_array(times, "times")
    names = list(labels) if labels is not None else phase_labels(M)
    r = np.where(np.isfinite(r), r, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices after a divergence
        lo, med, hi = np.nanquantile(r, [(1 - interval) / 2, 0.5, (1 + interval) / 2], axis=0)
    fig = Figure(figsize=(3.2 * M, 2.3 * R), layout="constrained")
    axes = fig.subplots(R, M, squeeze=False, sharex=True)
    for i in range(R):
        for m in range(M):
            ax = axes[i, m]
            ax.fill_between(t, lo[i, :, m], hi[i, :, m], color="C0", alpha=0.25,
                            label=f"{100 * interval:.0f}% predictive interval")
            ax.plot(t, med[i, :, m], color="C0", lw=1.5, ls="--", label="predictive median")
            ax.plot(t, x[i, :, m], color="k", lw=1.2, label="true trajectory")
            if i == 0:
                ax.set_title(names[m], fontsize=10)
            if m == 0:
                ax.set_ylabel(f"trajectory {i}", fontsize=9)
            if i == R - 1:
                ax.set_xlabel("time" if times is not None else "step", fontsize=9)
            ax.tick_params(labelsize=8)
    handles, labels_ = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def plot_calibration(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike | None = None,
    n_points: int | None = None,
    title: str | None = None,
) -> Figure:
    """Nominal vs empirical coverage of central intervals, with the diagonal as reference.

    Args:
        curves: name to ``(nominal, empirical)`` from :func:`calibration_curve`.
        n_points: if given, shade ``+- 2`` binomial standard errors ``sqrt(l(1-l)/N)`` around
            the diagonal (assumes independent points, so it is a lower bound on the noise).
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict: name -> (nominal, empirical)")
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    grid = np.linspace(0, 1, 101)
    ax.plot(grid, grid, color="0.4", lw=1, ls=":", label="ideal")
    if n_points:
        se = np.sqrt(grid * (1 - grid) / n_points)
        ax.fill_between(grid, grid - 2 * se, grid + 2 * se, color="0.85",
                        label=f"±2 binomial s.e. (N={n_points})")
    for i, (name, (nominal, empirical)) in enumerate(curves.items()):
        ax.plot(nominal, empirical, marker="o", ms=3, color=f"C{i}", label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="nominal coverage of central interval",
           ylabel="empirical coverage")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower right")  # over-dispersed curves run along the top left
    if title:
        ax.set_title(title, fontsize=10)
    return save(fig, path)


def plot_loo_pit(idata, path: str | os.PathLike | None = None,
                 title: str | None = None) -> Figure:
    """The LOO probability integral transform of ``obs``: ECDF of its values minus the uniform
    CDF, with ``+- 2`` pointwise standard errors ``sqrt(u (1-u) / N)`` of a uniform ECDF.

    The values come from ArviZ (:func:`.arviz_compat.loo_pit`); the PSIS weights from the
    per-transition log-likelihood (leave out a whole transition) are shared by its ``M``
    coordinates, so the ``N`` values are not independent and the band is indicative. For a
    calibrated model the LOO-PIT values are uniform (the curve stays near 0; a U shape in the
    ECDF, i.e. a curve falling then rising, means too narrow predictives). Only meaningful
    where :func:`loo_summary` says the PSIS-LOO is reliable.
    """
    pit = np.sort(compat.loo_pit(idata, "obs").reshape(-1))
    N = pit.size
    u = np.linspace(0, 1, 201)
    ecdf = np.searchsorted(pit, u, side="right") / N
    se = np.sqrt(u * (1 - u) / N)
    fig = Figure(figsize=(5.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(u, -2 * se, 2 * se, color="0.85", label=f"±2 s.e. of a uniform ECDF (N={N})")
    ax.axhline(0, color="0.4", lw=1, ls=":")
    ax.step(u, ecdf - u, where="post", color="C0", lw=1.5, label="LOO-PIT ECDF - uniform")
    ax.set_xlim(0, 1)
    ax.set_xlabel("LOO-PIT value", fontsize=9)
    ax.set_ylabel("ECDF difference", fontsize=9)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    ax.set_title(title or "LOO-PIT of the next states (all coordinates)", fontsize=10)
    return save(fig, path)
