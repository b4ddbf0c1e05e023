r"""Direct discovery: the conserved subspace of a feature library, with a calibrated count.

A quantity ``C(x) = c^T phi(x)`` (``phi``: :class:`~pyro_razor.discovery.features.MonomialFeatures`
of the standardised states, or any library of :mod:`~pyro_razor.discovery.libraries` through
:class:`~pyro_razor.discovery.features.ConditionedFeatures`) is conserved when it is constant
along every trajectory and varies across them (Kaiser, Kutz & Brunton 2018). With ``phi_bt`` the
features of state ``t`` of trajectory ``b`` and ``J_bt`` their Jacobian, everything is a
quadratic form in ``c``:

- within-trajectory scatter ``W = sum_bt (phi_bt - mean_b phi)(...)^T``;
- the scatter observation noise ``Sigma`` alone would give a conserved ``C``,
  ``N = sum_bt (1 - 1/n_b) J_bt Sigma J_bt^T`` (noise from :mod:`~pyro_razor.discovery.noise`,
  ``N_hi`` / ``N_lo`` from its high / low estimate);
- the scatter a non-conserved ``C`` with a gradient of the same size would show, ``P = (1/M)
  sum_bt (|x_bt - mean_b x|^2 - (1 - 1/n_b) tr Sigma)_+ J_bt J_bt^T``;
- the total scatter ``T`` about the mean of all states and its noise part ``N_T``.

Three counts, each from a stated test at level ``alpha`` (default 0.05):

1. ``D`` — directions **constant on all the data** (not only along trajectories): the
   largest ``k`` with the ``k``-th generalised eigenvalue of ``(T, N_T)`` below
   :func:`~pyro_razor.discovery.calibration.max_eigenvalue_quantile` ``(k, nu_T)``. Such a
   direction cannot be told apart from a coincidence of the data (all runs at zero total
   momentum, a window too short for anything to move); the next two counts are taken on the
   complement of these ``D`` directions.
2. ``U`` — the most quantities the data **allow**: the largest ``k`` such that the ``k``
   smallest within/noise ratios (generalised eigenvalues ``lambda_k`` of ``(W, N_hi)``) are all
   within noise, ``lambda_j <= w_j(nu_j)`` for ``j <= k``, with ``w_j`` the ``1 - alpha``
   quantile of ``lambda_max(Wishart_j(nu)/nu)`` and ``nu_j`` the Satterthwaite degrees of
   freedom of the first ``j`` directions. A true ``k``-dimensional conserved subspace passes
   with probability at least ``1 - alpha`` (Courant-Fischer), so ``U`` misses a law with
   probability at most ``alpha``. A slow drift can hide in that test, so the ``U``
   directions are then tested for straight-line **trends** along the trajectories, step-down
   at level ``alpha`` (:mod:`~pyro_razor.discovery.trend`; a true conserved subspace survives
   with probability at least ``1 - alpha``); each direction shown to trend leaves ``U``
   (``counts["drifting"]``).
3. ``L`` — the quantities the data **show**: the number of directions whose within scatter is
   below ``tolerance^2 P + m N_lo``, i.e. smaller than what the low noise estimate
   necessarily produces (``m``: the ``alpha`` quantile of ``lambda_min(Wishart_F(nu)/nu)``,
   simultaneous over all ``F`` directions) plus a drift of ``tolerance`` (default 5 %) of the
   quantity's potential variation. A quantity that drifts by more than that is claimed with
   probability at most ``alpha``, for all directions together (family-wise, hence also
   false-discovery, control).

When the noise cannot be resolved from the motion (too few points per trajectory: the top
difference orders still carry motion, :attr:`NoiseEstimate.resolved`), passing test 2 says
little, and only the leading directions whose noise allowance bounds their drift below the
tolerance count as exactly conserved (``E <= U``, :func:`_exact_count`; ``E = U`` otherwise).

Verdict: ``D = 0`` and ``L = U = E``: **determined**, that count. ``D = 0`` and ``L >= U``:
``E`` conserved and ``L - E`` **approximately conserved** (drift certified below the
tolerance, but not shown to be within the noise). Otherwise **undetermined**, with the range
``[min(L, E), U + D]`` the data allow.

Shapes: ``B`` trajectories, ``n_b`` points of trajectory ``b``, ``M`` phase dimension, ``F``
features, ``r`` reported quantities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from pyro_razor.discovery.calibration import max_eigenvalue_quantile, min_eigenvalue_quantile
from pyro_razor.discovery.features import ConditionedFeatures, MonomialFeatures
from pyro_razor.discovery.noise import NoiseEstimate, estimate_noise, known_noise
from pyro_razor.discovery.scatter import Scatter, generalised_eigh, scatter_matrices
from pyro_razor.discovery.trajectories import as_trajectory_list
from pyro_razor.discovery.trend import split_trending
from pyro_razor.systems.units import PhaseSpaceScaling, fit_scaling

__all__ = [
    "DirectEstimate",
    "conservation_tests",
    "direct_estimate",
    "noise_in_scaled_units",
    "reported_directions",
    "verdict_of",
]

F64 = torch.float64
SIGMA_FLOOR = 1e-8  # standardised units: integrator and rounding errors; keeps N definite


@dataclass
class DirectEstimate:
    """The answer of :func:`direct_estimate`; :meth:`to_json` is its record.

    Attributes:
        status: ``"determined"``, ``"approximate"`` or ``"undetermined"``.
        count: the number of conserved quantities (``None`` when undetermined).
        range: ``(low, high)`` numbers of conserved quantities the data allow.
        counts: ``{"D": .., "U": .., "L": ..}`` of the module docstring.
        coefficients: ``(r, F)`` coefficients of the reported quantities in the standardised
            feature basis, most conserved first: ``count`` (or ``range[1]``) of them, then any
            approximately conserved ones.
        kinds: per reported quantity ``"conserved"``, ``"approximate"`` or ``"undecided"``.
        ratios: ``(F',)`` the spectrum ``lambda_k`` of ``(W, N_hi)`` on the complement of the
            ``D`` constant directions, ascending (within scatter / noise-expected scatter).
        thresholds: ``(F',)`` the ``w_k`` the ratios were tested against.
        drifts: ``(F',)`` relative drift of each eigen-direction, ``sqrt((c^T W c - c^T N_lo
            c)_+ / c^T P c)``, against ``tolerance``.
        scaling: the standardisation of the states; features: the library (a
            :class:`MonomialFeatures`, or the :class:`ConditionedFeatures` of a given one,
            whose ``to_library`` maps ``coefficients`` to the given library's basis).
        noise: the noise used (standardised units).
        settings: ``alpha``, ``tolerance``, degrees of freedom; seconds: wall time.
        within, noise_scatter, potential: ``(F, F)`` the ``W``, ``N_hi`` and ``P`` of the
            module docstring, to evaluate any quantity's statistics (:meth:`statistics`).
    """

    status: str
    count: int | None
    range: tuple[int, int]
    counts: dict
    coefficients: torch.Tensor
    kinds: list[str]
    ratios: torch.Tensor
    thresholds: torch.Tensor
    drifts: torch.Tensor
    scaling: PhaseSpaceScaling
    features: MonomialFeatures | ConditionedFeatures
    noise: NoiseEstimate
    settings: dict
    within: torch.Tensor | None = None
    noise_scatter: torch.Tensor | None = None
    potential: torch.Tensor | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def statistics(self, coefficients: torch.Tensor) -> dict:
        """Per quantity ``(r, F)`` (standardised feature basis): ``ratio`` = within scatter /
        noise-expected scatter (the statistic of test 2) and ``drift`` = sqrt(within /
        potential), the relative drift (noise included) compared with the tolerance."""
        c = coefficients.to(F64)
        form = lambda X: torch.einsum("rf,fg,rg->r", c, X, c)  # noqa: E731
        W = form(self.within).clamp_min(0.0)
        return {"ratio": (W / form(self.noise_scatter).clamp_min(1e-300)).tolist(),
                "drift": (W / form(self.potential).clamp_min(1e-300)).sqrt().tolist()}

    def summary(self) -> str:
        """One line: the count (or range) and the test that gave it."""
        a, tol = self.settings["alpha"], self.settings["tolerance"]
        test = (f"level {a:g}, drift tolerance {tol:g}, {self.settings['noise_source']} noise; "
                f"D={self.counts['D']} U={self.counts['U']} L={self.counts['L']}")
        if self.status == "determined":
            return f"direct estimate: {self.count} conserved ({test})"
        if self.status == "approximate":
            extra = self.range[1] - self.count
            return (f"direct estimate: {self.count} conserved + {extra} approximately conserved "
                    f"({test})")
        return (f"direct estimate: undetermined, between {self.range[0]} and {self.range[1]} "
                f"conserved ({test})")

    def to_json(self) -> dict:
        return {"status": self.status, "count": self.count, "range": list(self.range),
                "counts": self.counts, "kinds": self.kinds,
                "coefficients": self.coefficients.tolist(), "ratios": self.ratios.tolist(),
                "thresholds": self.thresholds.tolist(), "drifts": self.drifts.tolist(),
                "noise": self.noise.to_json(), "settings": self.settings,
                "seconds": self.seconds, "warnings": self.warnings, "summary": self.summary()}


def _satterthwaite(JC: torch.Tensor, a: torch.Tensor, sigma: torch.Tensor) -> np.ndarray:
    """Effective degrees of freedom of the noise scatter along each direction.

    Args:
        JC: ``(N, k, M)`` the directions' gradients ``c^T J`` at every state.
        a: ``(N,)`` the scatter's weights; sigma: ``(M,)`` the noise.
    """
    v = (JC * sigma).pow(2).sum(-1)  # (N, k) noise variance of each direction at each state
    return ((a[:, None] * v).sum(0).pow(2) / (a[:, None] * v.pow(2)).sum(0).clamp_min(1e-300)
            ).numpy()


def _leading_count(ratios: np.ndarray, nus: np.ndarray, alpha: float) -> tuple[int, list]:
    """Largest ``k`` with ``ratios[j] <= w_j(min nu over the first j)`` for all ``j <= k``."""
    thresholds, count, nu = [], 0, np.inf
    for k in range(1, len(ratios) + 1):
        nu = min(nu, float(nus[k - 1]))
        w = max_eigenvalue_quantile(k, max(nu, 1.0), alpha)
        thresholds.append(w)
        if ratios[k - 1] > w:
            break
        count = k
    return count, thresholds


def _constant_directions(s: Scatter, sigma: torch.Tensor, alpha: float):
    """``D``, the ``(F, D)`` constant directions and the ``(F, F - D)`` basis of their
    complement.

    Combinations that neither vary nor carry noise on the data (e.g. ``(p1 + p2)^2`` when
    every run has ``p1 + p2 = 0``: its gradient vanishes there) are constant without a test.
    """
    T, N_T = s.total.numpy(), s.noise(sigma, total=True).numpy()
    size, R = np.linalg.eigh(T / np.trace(T) + N_T / max(np.trace(N_T), 1e-300))
    flat = size <= 1e-12 * size.max()
    mu, V = generalised_eigh(R[:, ~flat].T @ T @ R[:, ~flat], R[:, ~flat].T @ N_T @ R[:, ~flat])
    V = R[:, ~flat] @ V
    D, _ = _leading_count(mu, _satterthwaite(s.gradients(V), s.total_weights, sigma), alpha)
    return D + int(flat.sum()), np.concatenate([R[:, flat], V[:, :D]], axis=1), V[:, D:]


def _claims(W, P, N_lo, nu: float, alpha: float, tolerance: float,
            family: int | None = None) -> tuple[int, float]:
    """``L``: directions with within scatter below ``tolerance^2 P + m N_lo``; and ``m``, the
    bound simultaneous over ``family`` directions (default: the ``W.shape[0]`` tested)."""
    m = min_eigenvalue_quantile(max(family or 0, W.shape[0]), max(nu, 1.0), alpha)
    bound = tolerance**2 * P + m * N_lo
    return int((np.linalg.eigvalsh(0.5 * (W - bound + (W - bound).T)) < 0).sum()), m


def _exact_count(U: int, thresholds, potentials: np.ndarray, noise: NoiseEstimate,
                 tolerance: float) -> int:
    """How many of the ``U`` directions the data call *exactly* conserved.

    When the noise is resolved (given, or dominating the top difference orders:
    :attr:`NoiseEstimate.resolved`), all ``U``. Otherwise (too few points per trajectory to
    separate noise from motion) only the leading directions whose noise allowance already
    bounds their drift below the tolerance,
    ``w_k / (v_k^T P v_k) <= tolerance^2`` (``v_k^T N_hi v_k = 1``; ``potentials`` holds the
    ``v_k^T P v_k``).
    """
    if noise.resolved:
        return U
    allowed = np.asarray(thresholds[:U]) / np.clip(potentials[:U], 1e-300, None)
    passing = allowed <= tolerance**2
    return U if passing.all() else int(np.argmin(passing))


def verdict_of(D: int, U: int, exact: int, L: int) -> tuple[str, int | None, tuple[int, int]]:
    """``(status, count, (low, high))`` from the counts of :func:`conservation_tests` (the
    module docstring's verdict)."""
    if D == 0 and L >= U:
        if exact == U and L == U:
            return "determined", U, (U, U)
        return "approximate", exact, (exact, L)
    return "undetermined", None, (min(L, exact), U + D)


def noise_in_scaled_units(noise, trajectories, scaling: PhaseSpaceScaling, M: int,
                          alpha: float) -> NoiseEstimate:
    """The noise in standardised units: estimated, or the user's (in their units) rescaled."""
    if noise is None:
        return estimate_noise(trajectories, alpha)
    given = known_noise(noise, M)
    s = scaling.scale()
    return NoiseEstimate(low=given.low / s, high=given.high / s, order=0, given=True)


def reported_directions(status: str, count, span, C: np.ndarray, constant: np.ndarray,
                        U: int):
    """The reported directions ``(F, r)`` and their kinds, most conserved first."""
    if status != "undetermined":
        return C[:, :span[1]], ["conserved"] * count + ["approximate"] * (span[1] - count)
    kinds = ["conserved"] * span[0] + ["undecided"] * (span[1] - span[0])
    return np.concatenate([C[:, :U], constant], axis=1), kinds


def _warnings(status: str, span, F: int, B: int, counts: dict) -> list[str]:
    out = []
    if span[1] >= F:
        out.append(f"the data allow up to {span[1]} of the {F} possible quantities: nothing in "
                   "them moves beyond the noise (window too short or noise too large?); give "
                   "longer trajectories or the noise level (--noise)")
    if counts["D"]:
        out.append(f"{counts['D']} combination(s) take the same value on every trajectory, so "
                   "whether they are conserved cannot be told from these data; vary the "
                   "initial conditions")
    if counts["exact"] < counts["U"]:
        out.append("the noise could not be separated from the motion (too few points per "
                   "trajectory): exact and approximate conservation cannot be told apart; give "
                   "more points per trajectory or the noise level (--noise)")
    if counts.get("drifting"):
        out.append(f"{counts['drifting']} combination(s) vary along the trajectories by no more "
                   "than the noise, but steadily (trend test): not counted as conserved; "
                   "longer trajectories would tell how far they drift")
    if B < 4:
        out.append(f"only {B} trajectories: conservation is judged against very few values")
    return out


def direct_estimate(
    trajectories,
    *,
    alpha: float = 0.05,
    noise=None,
    tolerance: float = 0.05,
    degree: int = 2,
    features=None,
) -> DirectEstimate:
    """Find the conserved subspace of a feature library and count it (module docstring).

    Args:
        trajectories: ``(B, n, M)`` states, or a sequence of ``B`` arrays ``(n_b, M)`` of
            unequal lengths; positions first (``M = 2d``), finite, ``n_b >= 2``.
        alpha: the level of every test, in ``(0, 0.5)``.
        noise: the observation noise's standard deviation in the data's units (one number, or
            ``M``); ``None`` estimates it from the data (:mod:`~pyro_razor.discovery.noise`).
        tolerance: the relative drift below which a quantity counts as (approximately)
            conserved, in ``[0, 1)``.
        degree: the degree of the monomial library (2: quadratic laws) when ``features`` is
            ``None``.
        features: any feature library of ``M`` coordinates (:mod:`.libraries`), evaluated
            through :class:`~pyro_razor.discovery.features.ConditionedFeatures` (columns
            scaled to their spread, constant or duplicate ones dropped with a warning);
            ``None``: the standardised monomials of ``degree``.

    Returns:
        The :class:`DirectEstimate`.
    """
    start = time.perf_counter()
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"direct_estimate: alpha must be in (0, 0.5), got {alpha!r}")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"direct_estimate: tolerance must be in [0, 1), got {tolerance!r}")
    xs = as_trajectory_list(trajectories, "direct_estimate")
    scaling = fit_scaling(torch.cat(xs))
    zs = [scaling.to_scaled(x) for x in xs]
    noise_used = noise_in_scaled_units(noise, zs, scaling, xs[0].shape[-1], alpha)
    if features is None:
        features, dropped = MonomialFeatures(xs[0].shape[-1], degree), []
    else:
        features = ConditionedFeatures(features, scaling, torch.cat(zs))
        dropped, degree = features.warnings, None
    s = scatter_matrices(zs, features)
    tests = conservation_tests(s, noise_used, alpha, tolerance)
    status, count, span = verdict_of(*(tests["counts"][k] for k in ("D", "U", "exact", "L")))
    reported, kinds = reported_directions(status, count, span, tests["C"], tests["constant"],
                                tests["counts"]["U"])
    settings = {"alpha": alpha, "tolerance": tolerance, "degree": degree,
                "noise_source": "given" if noise_used.given else "estimated",
                "nu_min": tests["nu"], "noise_quantile_m": tests["m"],
                "features": features.num_features, "trajectories": len(xs),
                "states": int(sum(x.shape[0] for x in xs))}
    out = DirectEstimate(
        status, count, span, tests["counts"], torch.from_numpy(np.ascontiguousarray(reported.T)),
        kinds, tests["ratios"], tests["thresholds"], tests["drifts"], scaling, features,
        noise_used, settings, **tests["matrices"],
        warnings=dropped + _warnings(status, span, features.num_features, len(xs),
                                     tests["counts"]))
    out.seconds = time.perf_counter() - start
    return out


def conservation_tests(s: Scatter, noise: NoiseEstimate, alpha: float,
                       tolerance: float, family: int | None = None) -> dict:
    """The three tests of the module docstring on one :class:`Scatter` (of any feature
    library: :mod:`~pyro_razor.discovery.span_test` runs them on a razor's learned span).

    Returns:
        ``counts`` (``D``, ``U``, ``L``, ``exact``, ``drifting``), ``C`` ``(F, F')`` the directions
        (most conserved first) and ``constant`` ``(F, D)`` the constant ones in the feature
        basis, ``ratios``, ``thresholds``, ``drifts`` per direction, ``nu``, ``m`` and the
        full scatter ``matrices``.

    ``family``: the number of directions the drift test's noise bound must hold for at once
    (default: the library's own). A span chosen from a larger library by looking at the same
    data (a razor's learned span) passes that library's size, so that the claim "every
    direction drifting more than the tolerance is rejected with probability ``1 - alpha``"
    covers the selection too.
    """
    lo, hi = noise.low.clamp_min(SIGMA_FLOOR), noise.high.clamp_min(SIGMA_FLOOR)
    D, constant, Q = _constant_directions(s, hi, alpha)
    full = {"within": s.within, "noise_scatter": s.noise(hi), "potential": s.potential(hi)}
    project = lambda X: Q.T @ X.numpy() @ Q  # noqa: E731
    W, N_hi, N_lo, P = (project(full["within"]), project(full["noise_scatter"]),
                        project(s.noise(lo)), project(full["potential"]))
    ratios, V = generalised_eigh(W, N_hi)
    U, thresholds = _leading_count(
        ratios, _satterthwaite(s.gradients(Q @ V), s.within_weights, hi), alpha)
    V, drifting = split_trending(s, Q, V, U, W, N_hi, hi, alpha)
    U -= drifting
    ratios = np.einsum("fk,fg,gk->k", V, W, V) / np.einsum("fk,fg,gk->k", V, N_hi, V)
    C = Q @ V  # (F, F'): the directions in the feature basis, most conserved first
    JC = s.gradients(C)
    nu_lo = float(_satterthwaite(JC, s.within_weights, lo).min())
    L, m = _claims(W, P, N_lo, nu_lo, alpha, tolerance, family)
    potentials = np.einsum("fk,fg,gk->k", V, P, V)
    exact = _exact_count(U, thresholds, potentials, noise, tolerance)
    excess = np.clip(np.einsum("fk,fg,gk->k", V, W - N_lo, V), 0.0, None)
    drifts = np.sqrt(excess / np.clip(potentials, 1e-300, None))
    padded = thresholds + [float("nan")] * (len(ratios) - len(thresholds))
    return {"counts": {"D": D, "U": U, "L": L, "exact": exact, "drifting": drifting},
            "C": C, "constant": constant,
            "ratios": torch.from_numpy(ratios), "thresholds": torch.tensor(padded, dtype=F64),
            "drifts": torch.from_numpy(drifts), "nu": nu_lo, "m": m, "matrices": full}
