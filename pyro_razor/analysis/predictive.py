r"""Predictive checks: coverage, calibration, log predictive density, PSIS-LOO, comparison.

- :func:`coverage` of central predictive intervals and a :func:`calibration_curve`;
- the pointwise and mean log predictive density (:func:`mean_log_predictive_density`, the
  held-out ``elpd`` per transition);
- PSIS-LOO with its Pareto-``k`` reliability check (:func:`loo_summary`) and
  :func:`compare_variants`, which ranks model variants by held-out density first.

Shapes: ``P`` posterior draws; ``...`` any shape of observed values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.special import logsumexp

from pyro_razor.analysis import arviz_compat as compat
from pyro_razor.analysis.arviz_data import as_float_array, finite_array

__all__ = [
    "DEFAULT_LEVELS",
    "PARETO_K_LIMIT",
    "calibration_curve",
    "check_levels",
    "compare_variants",
    "coverage",
    "loo_summary",
    "mean_log_predictive_density",
    "pointwise_log_predictive_density",
]

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Nominal levels of the central predictive intervals reported by default."""

PARETO_K_LIMIT = 0.7
"""Pareto ``k`` above which a PSIS-LOO term is unreliable whatever the number of draws."""


def check_levels(levels) -> np.ndarray:
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if lv.ndim != 1 or lv.size == 0 or not ((lv > 0) & (lv < 1)).all():
        raise ValueError(f"levels must be numbers strictly between 0 and 1, got {levels!r}")
    return lv


def coverage(
    draws: np.ndarray, observed: np.ndarray, levels: Sequence[float] = DEFAULT_LEVELS
) -> dict[float, float]:
    r"""Empirical coverage of central predictive intervals.

    For each level ``l``, the interval at a point is ``[Q_{(1-l)/2}, Q_{(1+l)/2}]`` of the draws
    at that point (``numpy.quantile``, linear interpolation), and the coverage is the fraction
    of observed values inside it (ends included). For a calibrated predictive and independent
    points it is ``l`` up to a binomial error ``sqrt(l (1-l) / N)``, plus ``l (1-l) / P`` in
    variance from the finite number of draws ``P``.

    Args:
        draws: ``(P, ...)`` predictive draws, ``P >= 2``.
        observed: ``(...)`` observed values.
        levels: nominal levels in ``(0, 1)``.

    Returns:
        ``{level: empirical coverage}``.
    """
    d = finite_array(as_float_array(draws, "draws"), "draws")
    y = finite_array(as_float_array(observed, "observed"), "observed")
    if d.ndim < 1 or d.shape[0] < 2 or d.shape[1:] != y.shape:
        raise ValueError(
            f"draws must have shape (P >= 2, *observed.shape) = (P, {', '.join(map(str, y.shape))})"
            f", got {d.shape}"
        )
    if y.size == 0:
        raise ValueError("observed is empty")
    lv = check_levels(levels)
    d = np.sort(d, axis=0)  # once; then every quantile is an interpolation of order statistics
    out = {}
    for level in lv:
        lo = _sorted_quantile(d, (1 - level) / 2)
        hi = _sorted_quantile(d, (1 + level) / 2)
        out[float(level)] = float(((y >= lo) & (y <= hi)).mean())
    return out


def _sorted_quantile(d: np.ndarray, q: float) -> np.ndarray:
    """``numpy.quantile(d, q, axis=0)`` (method ``"linear"``) of draws sorted along axis 0."""
    h = (d.shape[0] - 1) * q
    i = min(int(math.floor(h)), d.shape[0] - 2)
    return d[i] + (h - i) * (d[i + 1] - d[i])


def calibration_curve(
    draws: np.ndarray, observed: np.ndarray, levels: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nominal vs empirical :func:`coverage` over many levels (default ``0.05, 0.10, .., 0.95``).

    Returns:
        ``(nominal, empirical)``, each ``(L,)``.
    """
    lv = np.round(np.arange(1, 20) * 0.05, 10) if levels is None else check_levels(levels)
    cov = coverage(draws, observed, lv)
    return np.asarray(list(cov.keys())), np.asarray(list(cov.values()))


def pointwise_log_predictive_density(loglik: np.ndarray) -> np.ndarray:
    r"""``lpd_i = log (1/P) sum_p p(y_i | theta_p) = logsumexp_p(loglik[p, i]) - log P``.

    Args:
        loglik: ``(P, ...)`` pointwise log-likelihoods of ``P`` posterior draws.

    Returns:
        ``(...)`` Monte-Carlo estimates of ``log p(y_i | data)``.
    """
    ll = as_float_array(loglik, "loglik")
    if ll.ndim < 1 or ll.shape[0] < 1:
        raise ValueError(f"loglik must have shape (P, ...) with P >= 1, got {ll.shape}")
    if np.isnan(ll).any() or np.isposinf(ll).any():
        raise ValueError("loglik contains NaN or +inf values")
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])


def mean_log_predictive_density(loglik: np.ndarray) -> float:
    """Mean over points of :func:`pointwise_log_predictive_density`: the ``elpd`` per point
    (per transition here) when the points are held out."""
    return float(pointwise_log_predictive_density(loglik).mean())


def _log_likelihood_array(idata) -> np.ndarray:
    """``(P, points)`` log-likelihood of ``obs`` with chains and draws stacked."""
    if "log_likelihood" not in compat.group_names(idata):
        raise ValueError("the InferenceData has no log_likelihood group")
    ll = compat.samples(idata, "log_likelihood", "obs")
    return ll.reshape(ll.shape[0], -1)


def loo_summary(idata) -> dict[str, object]:
    """PSIS-LOO of the ``obs`` log-likelihood with its Pareto-``k`` reliability check.

    ArviZ's ``loo`` (via :func:`.arviz_compat.loo`; ``idata`` is an ``InferenceData`` with
    ArviZ 0.x, a ``DataTree`` with 1.x) estimates ``elpd_loo = sum_i log p(y_i | y_{-i})`` by
    Pareto-smoothed importance sampling of the draws. Its Pareto shape ``k_i`` per point says
    whether that estimate is trustworthy: ``k > 0.7`` never is, and ArviZ's sample-size
    threshold ``good_k = min(1 - 1/log10 P, 0.7)`` is stricter for few draws. The result is
    flagged ``reliable`` only if no ``k_i`` exceeds ``good_k``. (With a variational posterior a
    large ``k`` also signals that ``q`` is far from the exact posterior.) ``se`` is ArviZ's: 1.x
    uses ``ddof=1`` over the points, 0.x ``ddof=0`` (a factor ``sqrt(N/(N-1))`` apart).

    Returns:
        ``elpd_loo``, ``se``, ``p_loo``, ``elpd_loo_per_point``, ``n_points``, ``n_samples``,
        ``pareto_k_max``, ``share_k_gt_0.7``, ``good_k``, ``share_k_gt_good_k``, ``reliable``,
        ``note``.
    """
    loo = compat.loo(idata, "obs")
    k = loo.pareto_k.reshape(-1)
    good_k = loo.good_k
    share_07 = float((k > PARETO_K_LIMIT).mean())
    share_good = float((k > good_k).mean())
    reliable = bool(share_good == 0.0)
    n = int(k.size)
    if reliable:
        note = f"PSIS-LOO reliable: every Pareto k <= {good_k:.2f}"
    else:
        note = (
            f"PSIS-LOO UNRELIABLE: {100 * share_07:.1f}% of Pareto k > 0.7 and "
            f"{100 * share_good:.1f}% > {good_k:.2f} (ArviZ's threshold for {loo.n_samples} "
            "draws); do not use elpd_loo for model selection (more draws or exact refits needed)"
        )
    return {
        "elpd_loo": loo.elpd,
        "se": loo.se,
        "p_loo": loo.p,
        "elpd_loo_per_point": loo.elpd / n,
        "n_points": n,
        "n_samples": int(loo.n_samples),
        "pareto_k_max": float(np.max(k)),
        "share_k_gt_0.7": share_07,
        "good_k": good_k,
        "share_k_gt_good_k": share_good,
        "reliable": reliable,
        "note": note,
    }


def compare_variants(
    idatas: Mapping[str, object],
    loo_idatas: Mapping[str, object] | None = None,
) -> dict[str, object]:
    r"""Compare variants by predictive performance.

    *Held-out* (``idatas``, log-likelihoods of test data under posteriors fitted without it):
    per variant the mean log predictive density ``mlpd`` per transition (the test ``elpd`` per
    point), its standard error over points, the total, and the paired difference to the best
    variant with its standard error (``sqrt(N) * sd(lpd_i - lpd_best,i) / N``, the points
    being the same test transitions). This is the primary comparison.

    *In-sample LOO* (``loo_idatas``, log-likelihoods of the training data, optional): per
    variant :func:`loo_summary` and ArviZ's ``compare`` (ranks, ``elpd_diff``, stacking weights).
    They are reported only with their Pareto-``k`` diagnostics: ``loo_reliable`` is false (and
    ``loo_note`` says why) when any variant's PSIS approximation is unreliable.

    Args:
        idatas: variant name to ``InferenceData`` with a ``log_likelihood`` group (same points).
        loo_idatas: variant name to training-data ``InferenceData`` (same names), or ``None``.

    Returns:
        A JSON-ready dict: ``test`` (per variant), ``best_test``, ``loo`` (per variant),
        ``loo_compare`` (ArviZ ``compare`` table rows, or ``None``), ``loo_reliable``,
        ``loo_note``.
    """
    if not isinstance(idatas, Mapping) or not idatas:
        raise ValueError("idatas must be a non-empty dict: variant name -> InferenceData")
    arrays = {name: _log_likelihood_array(d) for name, d in idatas.items()}
    lpd = {name: pointwise_log_predictive_density(a) for name, a in arrays.items()}
    sizes = {name: v.size for name, v in lpd.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the variants' test sets differ in size: {sizes}")
    best = max(lpd, key=lambda k: lpd[k].mean())
    N = next(iter(sizes.values()))
    test = {}
    for name, v in lpd.items():
        diff = v - lpd[best]
        test[name] = {
            "mlpd": float(v.mean()),
            "mlpd_se": float(v.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan"),
            "elpd_total": float(v.sum()),
            "mlpd_diff_to_best": float(diff.mean()),
            "mlpd_diff_se": float(diff.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan"),
            "n_points": int(N),
            "n_draws": int(arrays[name].shape[0]),
        }
    result: dict[str, object] = {
        "test": test,
        "best_test": best,
        "loo": None,
        "loo_compare": None,
        "loo_reliable": None,
        "loo_note": "no training-data InferenceData given",
    }
    if loo_idatas:
        loo = {name: loo_summary(d) for name, d in loo_idatas.items()}
        unreliable = [name for name, v in loo.items() if not v["reliable"]]
        result["loo"] = loo
        result["loo_reliable"] = not unreliable
        if unreliable:
            result["loo_note"] = (
                "PSIS-LOO unreliable for " + ", ".join(
                    f"{n} ({100 * loo[n]['share_k_gt_good_k']:.1f}% of Pareto k > "
                    f"{loo[n]['good_k']:.2f}, {100 * loo[n]['share_k_gt_0.7']:.1f}% > 0.7)"
                    for n in unreliable
                ) + "; rank the variants by the held-out mlpd instead"
            )
        else:
            result["loo_note"] = "PSIS-LOO reliable for every variant (all Pareto k <= good_k)"
        if len(loo_idatas) > 1:
            rows = compat.compare(loo_idatas, "obs")
            for name, row in rows.items():
                row["reliable"] = bool(loo[name]["reliable"])
            result["loo_compare"] = rows
    return result
