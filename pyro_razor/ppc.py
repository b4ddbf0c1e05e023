r"""Posterior predictive checks of a trained model, through ArviZ.

Two predictive distributions are checked:

*One step* (the likelihood itself, paper eq. 8). For every observed transition
``(x_t, x_{t+dt})`` and every posterior draw ``theta_s ~ q(theta)`` (``s = 1..S``; ``eta`` at its
learned value, it is a parameter),

.. math:: y^{(s)}_{t+dt} \sim \mathcal N\big(\mu_s(x_t), \sigma^2_{data} I\big), \qquad
          \mu_s(x_t) = \mathrm{ODESolve}(J \nabla \hat H_{\theta_s}, x_t, \Delta t),

and the pointwise log-likelihood ``log p(x_{t+dt} | x_t, theta_s)`` (summed over the ``M`` phase
coordinates) of the observed next state. This is what ``pyro.infer.Predictive(model, guide)``
draws; :func:`posterior_predictive` runs the same guide-then-replayed-model loop itself because it
also needs the observation site's distribution (for the log-likelihood and the predictive mean)
under the *same* draw of ``theta`` and of the symmetry times ``tau``.

*Multi-step rollouts* (:func:`rollout_predictive`). For each draw ``theta_s`` (and one set of
symmetry transforms per draw, fixed along the rollout so that the rolled-out ``H_hat`` is one
function), the state is propagated *without* process noise, ``x_{k+1} = mu_s(x_k)``, and every
output gets independent observation noise, ``y_k = x_k + sigma_data eps_k`` (``k >= 1``;
``y_0 = x_0`` is given). The spread of the rollouts is therefore posterior (epistemic)
uncertainty of the dynamics plus the per-output measurement noise; noise is not fed back into
the dynamics.

The draws become an :class:`arviz.InferenceData` (:func:`to_inference_data`; chain dimension of
size 1 since the draws are independent) with groups ``posterior`` (predictive means, chosen
weights), ``posterior_predictive`` / ``observed_data`` (``obs``: next states; ``increment``:
``x_{t+dt} - x_t``), ``log_likelihood`` (``obs``), ``constant_data`` (the conserved quantities'
generators ``(quantity, row, col)``, the input states, ``sigma_data``) and, for rollouts,
``predictions`` / ``predictions_constant_data``. Dimensions are named ``trajectory``, ``time``
(transition index ``t``: ``x_t -> x_{t+1}``) and ``phase`` (``q1..qd, p1..pd``).

Summaries: empirical :func:`coverage` of central predictive intervals and a
:func:`calibration_curve`; the mean log predictive density (:func:`mean_log_predictive_density`,
the held-out ``elpd`` per transition); PSIS-LOO (:func:`loo_summary`, with its Pareto-``k``
reliability check) and :func:`compare_variants`. :func:`run_ppc` does all of it for a finished
run directory and writes ``ppc.nc``, ``ppc.json`` and figures.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
import xarray as xr
from matplotlib.figure import Figure
from scipy.special import logsumexp

from pyro_razor.atomic import atomic_path
from pyro_razor.plotting import DPI, phase_labels
from pyro_razor.symmetry import check_phase_dim

with warnings.catch_warnings():  # ArviZ 0.x announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = [
    "DEFAULT_LEVELS",
    "PARETO_K_LIMIT",
    "calibration_curve",
    "compare_variants",
    "coverage",
    "load_netcdf",
    "loo_summary",
    "mean_log_predictive_density",
    "plot_calibration",
    "plot_loo_pit",
    "plot_ppc_phases",
    "plot_rollout_bands",
    "pointwise_log_predictive_density",
    "posterior_predictive",
    "rollout_predictive",
    "run_ppc",
    "save_netcdf",
    "to_inference_data",
]

DEFAULT_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Nominal levels of the central predictive intervals reported by default."""

PARETO_K_LIMIT = 0.7
"""Pareto ``k`` above which a PSIS-LOO term is unreliable whatever the number of draws."""

RUN_HINT = "run `pyro-razor run CONFIG` first"

MAX_POINTS_PER_CALL = 2**17
"""Default memory budget of one model call: trajectories x transitions x tau samples."""


# ---------------------------------------------------------------------------- checks


def _check_states(model, states: torch.Tensor, next_states: torch.Tensor | None) -> None:
    if not isinstance(states, torch.Tensor):
        raise TypeError(f"states must be a torch.Tensor, got {type(states).__name__}")
    if next_states is not None and not isinstance(next_states, torch.Tensor):
        raise TypeError(f"next_states must be a torch.Tensor, got {type(next_states).__name__}")
    model._check_data(states, next_states)
    for name, x in (("states", states), ("next_states", next_states)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or inf values; clean the data first")


def _check_count(value: int, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _array(x, name: str) -> np.ndarray:
    """Float64 NumPy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array or tensor of numbers, got {type(x)}") from None


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(
            f"{name} contains NaN or inf values ({int((~np.isfinite(a)).sum())} entries); "
            "drop diverged draws first"
        )
    return a


def _check_levels(levels) -> np.ndarray:
    lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
    if lv.ndim != 1 or lv.size == 0 or not ((lv > 0) & (lv < 1)).all():
        raise ValueError(f"levels must be numbers strictly between 0 and 1, got {levels!r}")
    return lv


# ---------------------------------------------------------------------------- drawing


class _RngScope:
    """Seed Pyro/torch/NumPy/random for a block and restore the previous global state after."""

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.seed = seed

    def __enter__(self) -> None:
        self.state = pyro.util.get_rng_state()
        pyro.set_rng_seed(self.seed)

    def __exit__(self, *exc) -> None:
        pyro.util.set_rng_state(self.state)


def _draw_theta(model, guide, states: torch.Tensor, observed: torch.Tensor):
    """One posterior (``guide``) or prior (``guide=None``) draw of every weight site.

    The guide is called with the model's arguments ``(states[:1], observed[:1])``: guides of
    global weights only use them for their plates, and a guide that has not been set up yet
    then sees ``"obs"`` as observed (``observed`` may be a placeholder such as ``states``).

    Returns the trace to replay the model against and the weights, per layer
    ``(1, out, in+1)``.
    """
    if guide is None:
        trace = poutine.trace(poutine.block(model, expose=model.weight_sites)).get_trace(
            states[:1, :1], observed[:1, :1]
        )
    else:
        trace = poutine.trace(guide).get_trace(states[:1], observed[:1])
    weights = []
    for name, shape in zip(model.weight_sites, model.hamiltonian_net.layer_shapes, strict=True):
        if name not in trace.nodes:
            raise ValueError(f"the guide has no sample site {name!r}; it must cover every weight")
        weights.append(trace.nodes[name]["value"].detach().reshape(1, *shape))
    return trace, weights


def _noise_scale(model) -> float:
    return float(model.noise.variance.detach().sqrt())


@torch.no_grad()
def posterior_predictive(
    model,
    guide,
    states: torch.Tensor,
    next_states: torch.Tensor | None = None,
    num_samples: int = 100,
    seed: int = 0,
    *,
    tau_samples: int | None = None,
    chunk_size: int | None = None,
    keep_weights: str = "last",
) -> dict[str, np.ndarray]:
    r"""One-step posterior predictive draws, pointwise log-likelihoods and posterior draws.

    For ``s = 1..S``: draw ``theta_s`` from ``guide`` (``guide=None``: from the prior, i.e. the
    prior predictive), run the model replayed against it on ``states`` (in chunks of
    ``chunk_size`` trajectories, the same ``theta_s``; each model call draws its ``tau``), and
    record the sampled ``obs``, the predictive mean ``mu_s(x_t)`` and, when ``next_states`` is
    given, ``log N(x_{t+dt}; mu_s(x_t), sigma^2 I)`` from the observation site's ``fn.log_prob``
    (summed over the phase coordinates). Pyro/torch/NumPy RNGs are seeded with ``seed`` for
    the call and restored afterwards.

    Args:
        model: a :class:`~pyro_razor.models.NoetherRazorModel` (params restored).
        guide: a guide covering its weight sites, or ``None`` for the prior.
        states: ``(T, n, M)`` states before each transition (the model's device and dtype).
        next_states: ``(T, n, M)`` observed next states, or ``None``.
        num_samples: ``S``.
        seed: RNG seed of the draws.
        tau_samples: symmetrisation samples per model call (default: the model's).
        chunk_size: trajectories per model call (default: as many as keep at most
            ``2**17`` symmetrised points, ``chunk x n x tau_samples``, in one call).
        keep_weights: which layer matrices to return: ``"last"``, ``"all"`` or ``"none"``.

    Returns:
        float64 arrays: ``"obs"`` ``(S, T, n, M)``; ``"mean"`` ``(S, T, n, M)``;
        ``"log_likelihood"`` ``(S, T, n)`` (only with ``next_states``); ``"weight<l>"``
        ``(S, out_l, in_l + 1)`` for the kept layers; ``"noise_scale"`` ``()`` (``sigma_data``).
    """
    _check_states(model, states, next_states)
    S = _check_count(num_samples, "num_samples")
    T, n, M = states.shape
    if chunk_size is None:
        taus = model.tau_samples if tau_samples is None else tau_samples
        per_trajectory = n * (taus if model.num_quantities else 1)
        chunk_size = max(1, MAX_POINTS_PER_CALL // per_trajectory)
    chunk = _check_count(chunk_size, "chunk_size")
    L = len(model.weight_sites)
    kept = {"last": [L - 1], "all": list(range(L)), "none": []}
    if keep_weights not in kept:
        raise ValueError(f"keep_weights must be 'last', 'all' or 'none', got {keep_weights!r}")
    obs = np.empty((S, T, n, M))
    mean = np.empty((S, T, n, M))
    loglik = np.empty((S, T, n)) if next_states is not None else None
    weights_out = {l: [] for l in kept[keep_weights]}
    placeholder = states if next_states is None else next_states
    with _RngScope(seed), model.evaluation(tau_samples):
        for s in range(S):
            trace, weights = _draw_theta(model, guide, states, placeholder)
            for l in weights_out:
                weights_out[l].append(weights[l][0].to("cpu", torch.float64).numpy())
            replayed = poutine.replay(model, trace=trace)
            for start in range(0, T, chunk):
                stop = min(start + chunk, T)
                idx = torch.arange(start, stop, device=states.device)
                site = poutine.trace(replayed).get_trace(states, None, subsample=idx).nodes["obs"]
                value = site["value"]
                obs[s, start:stop] = value.to("cpu", torch.float64).numpy()
                loc = site["fn"].base_dist.loc.expand_as(value)
                mean[s, start:stop] = loc.to("cpu", torch.float64).numpy()
                if loglik is not None:
                    ll = site["fn"].log_prob(next_states[idx])
                    loglik[s, start:stop] = ll.to("cpu", torch.float64).numpy()
    out = {"obs": obs, "mean": mean}
    if loglik is not None:
        out["log_likelihood"] = loglik
    for l, values in weights_out.items():
        out[f"weight{l}"] = np.stack(values)
    out["noise_scale"] = np.asarray(_noise_scale(model))
    return out


@torch.no_grad()
def rollout_predictive(
    model,
    guide,
    x0: torch.Tensor,
    horizon: int,
    num_samples: int = 100,
    seed: int = 0,
    *,
    tau_samples: int | None = None,
    observation_noise: bool = True,
) -> np.ndarray:
    r"""Multi-step predictive rollouts from ``x0``.

    For each draw ``theta_s`` (from ``guide``; ``None``: the prior) and one set of symmetry
    transforms per draw: ``x_0 = x0``, ``x_{k+1} = ODESolve(J grad H_hat_s, x_k, dt)`` (the
    model's integrator and sub-steps; no process noise) and outputs ``y_0 = x_0``,
    ``y_k = x_k + sigma_data eps_k`` with ``eps_k ~ N(0, I)`` i.i.d. for ``k >= 1`` (omitted with
    ``observation_noise=False``). Diverging draws give ``inf``/``nan`` entries.

    Args:
        model, guide: as for :func:`posterior_predictive`.
        x0: ``(R, M)`` initial states.
        horizon: ``K``, steps of ``dt`` to roll out.
        num_samples: ``S``.
        seed: RNG seed (global RNG state is restored afterwards).
        tau_samples: symmetrisation samples per draw (default: the model's).
        observation_noise: add ``sigma_data`` noise to the outputs.

    Returns:
        ``(S, R, K + 1, M)`` float64 array; ``[:, :, 0]`` equals ``x0``.
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    M = model.phase_dim
    if x0.dim() != 2 or x0.shape[1] != M or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (R, {M}) with R >= 1, got {tuple(x0.shape)}")
    if not bool(torch.isfinite(x0).all()):
        raise ValueError("x0 contains NaN or inf values")
    K = _check_count(horizon, "horizon")
    S = _check_count(num_samples, "num_samples")
    sigma = _noise_scale(model)
    R = x0.shape[0]
    states = x0[:, None, :]  # (R, 1, M): what the guide sees

    def roll(weights, transforms, x):  # (P, R, M) -> (P, R, K + 1, M)
        path = [x]
        for _ in range(K):
            x = model.predict(weights, transforms, x)
            path.append(x)
        return torch.stack(path, dim=2)

    with _RngScope(seed), model.evaluation(tau_samples):
        thetas = [_draw_theta(model, guide, states, states)[1] for _ in range(S)]
        if model.generators() is None:  # no symmetrisation: all draws in one batch
            weights = [torch.cat([t[l] for t in thetas]) for l in range(len(thetas[0]))]
            y = roll(weights, None, x0.expand(S, R, M))
        else:  # one set of symmetry transforms per draw
            y = torch.cat([roll(t, model.transforms(), x0[None]) for t in thetas])
        if observation_noise:
            noise = sigma * torch.randn_like(y[:, :, 1:])
            y = torch.cat([y[:, :, :1], y[:, :, 1:] + noise], dim=2)
    return y.to("cpu", torch.float64).numpy()


# ---------------------------------------------------------------------------- ArviZ


def _homogeneous_labels(M: int) -> list[str]:
    return phase_labels(M) + ["1"]


def to_inference_data(
    draws: Mapping[str, np.ndarray],
    observed: torch.Tensor | np.ndarray,
    generators: torch.Tensor | np.ndarray | None = None,
    coords: Mapping[str, Sequence] | None = None,
    *,
    states: torch.Tensor | np.ndarray | None = None,
    rollouts: np.ndarray | None = None,
    rollout_truth: torch.Tensor | np.ndarray | None = None,
    attrs: Mapping[str, object] | None = None,
) -> az.InferenceData:
    """Wrap :func:`posterior_predictive` output (and optional rollouts) as ``InferenceData``.

    Groups (draws get a ``chain`` dimension of size 1):

    - ``posterior``: ``mean`` ``(trajectory, time, phase)`` and every ``weight<l>``
      ``(weight<l>_row, weight<l>_col)`` of ``draws``;
    - ``posterior_predictive`` / ``observed_data``: ``obs`` ``(trajectory, time, phase)``, and
      ``increment = obs - states`` when ``states`` is given;
    - ``log_likelihood``: ``obs`` ``(trajectory, time)`` (summed over ``phase``);
    - ``constant_data``: ``generators`` ``(quantity, row, col)`` (rows/cols labelled
      ``q1..pd, 1``), ``states`` and ``noise_scale`` where available;
    - ``predictions`` / ``predictions_constant_data``: ``rollout`` / ``rollout_truth``
      ``(trajectory, step, phase)`` when ``rollouts`` is given (the rollouts start from the
      first ``R`` trajectories, so they keep those trajectories' labels).

    Args:
        draws: from :func:`posterior_predictive` (needs ``"obs"``).
        observed: ``(T, n, M)`` observed next states.
        generators: ``(K, M+1, M+1)`` generators of the conserved quantities, or ``None``.
        coords: coordinate values overriding the defaults (``trajectory``/``time``/``step``/
            ``quantity``: integer indices; ``phase``: ``q1..qd, p1..pd``).
        states: ``(T, n, M)`` states before each transition.
        rollouts: ``(S_r, R, K+1, M)`` from :func:`rollout_predictive`.
        rollout_truth: ``(R, K+1, M)`` true trajectories for the rollouts.
        attrs: extra attributes stored on every group.

    Returns:
        The ``InferenceData``; save it with :func:`save_netcdf`.
    """
    if not isinstance(draws, Mapping) or "obs" not in draws:
        raise ValueError("draws must be a dict with an 'obs' entry (see posterior_predictive)")
    obs = _array(draws["obs"], "draws['obs']")
    if obs.ndim != 4:
        raise ValueError(f"draws['obs'] must have shape (S, T, n, M), got {obs.shape}")
    S, T, n, M = obs.shape
    check_phase_dim(M)
    y = _finite(_array(observed, "observed"), "observed")
    if y.shape != (T, n, M):
        raise ValueError(f"observed must have shape {(T, n, M)} to match the draws, got {y.shape}")
    default_coords: dict[str, Sequence] = {
        "trajectory": np.arange(T),
        "time": np.arange(n),
        "phase": phase_labels(M),
    }
    data_dims = ["trajectory", "time", "phase"]
    dims: dict[str, list[str]] = {"obs": data_dims, "mean": data_dims, "increment": data_dims}
    posterior: dict[str, np.ndarray] = {}
    constant: dict[str, np.ndarray] = {}
    noise_scale = None
    for key, value in draws.items():
        a = _array(value, f"draws[{key!r}]")
        if key in ("obs", "log_likelihood"):
            continue
        if key == "noise_scale":
            noise_scale = float(a.reshape(()))
        elif key == "mean":
            if a.shape != obs.shape:
                raise ValueError(f"draws['mean'] must have shape {obs.shape}, got {a.shape}")
            posterior["mean"] = a[None]
        elif a.ndim >= 1 and a.shape[0] == S:
            posterior[key] = a[None]
            dims[key] = [f"{key}_dim{i}" for i in range(a.ndim - 1)]
            if key.startswith("weight") and a.ndim == 3:
                dims[key] = [f"{key}_row", f"{key}_col"]
        else:
            raise ValueError(f"draws[{key!r}] must have a leading dimension of {S} draws")
    predictive = {"obs": obs[None]}
    observed_data = {"obs": y}
    if states is not None:
        x = _finite(_array(states, "states"), "states")
        if x.shape != (T, n, M):
            raise ValueError(f"states must have shape {(T, n, M)}, got {x.shape}")
        predictive["increment"] = (obs - x)[None]
        observed_data["increment"] = y - x
        constant["states"] = x
        dims["states"] = data_dims
    log_likelihood = None
    if "log_likelihood" in draws:
        ll = _array(draws["log_likelihood"], "draws['log_likelihood']")
        if ll.shape != (S, T, n):
            raise ValueError(f"draws['log_likelihood'] must have shape {(S, T, n)}, got {ll.shape}")
        log_likelihood = {"obs": ll[None]}
        dims["log_likelihood"] = ["trajectory", "time"]
    if generators is not None:
        G = _finite(_array(generators, "generators"), "generators")
        if G.ndim != 3 or G.shape[1:] != (M + 1, M + 1):
            raise ValueError(
                f"generators must have shape (K, {M + 1}, {M + 1}) for phase dimension {M}, "
                f"got {G.shape}"
            )
        constant["generators"] = G
        dims["generators"] = ["quantity", "row", "col"]
        default_coords.update(
            quantity=np.arange(G.shape[0]), row=_homogeneous_labels(M), col=_homogeneous_labels(M)
        )
    predictions = predictions_constant = None
    # the rollouts start from the first R trajectories of the data: same "trajectory" labels
    pred_dims = {"rollout": ["trajectory", "step", "phase"],
                 "rollout_truth": ["trajectory", "step", "phase"]}
    if rollouts is not None:
        r = _array(rollouts, "rollouts")
        if r.ndim != 4 or r.shape[-1] != M:
            raise ValueError(f"rollouts must have shape (S, R, K+1, {M}), got {r.shape}")
        predictions = {"rollout": r[None]}
        R = r.shape[1]
        pred_coords = {**default_coords, **dict(coords or {}), "step": np.arange(r.shape[2])}
        pred_coords["trajectory"] = np.asarray(pred_coords["trajectory"])[:R]
        if rollout_truth is not None:
            truth = _array(rollout_truth, "rollout_truth")
            if truth.shape != r.shape[1:]:
                raise ValueError(f"rollout_truth must have shape {r.shape[1:]}, got {truth.shape}")
            predictions_constant = {"rollout_truth": truth}
    all_coords = {**default_coords, **dict(coords or {})}
    # log_likelihood's dims are named per variable: "obs" there is (trajectory, time)
    ll_dims = {"obs": ["trajectory", "time"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_dict(
            posterior=posterior,
            posterior_predictive=predictive,
            observed_data=observed_data,
            constant_data=constant or None,
            coords=all_coords,
            dims={k: v for k, v in dims.items() if k != "log_likelihood"},
        )
        if log_likelihood is not None:
            ll_data = az.from_dict(log_likelihood=log_likelihood, coords=all_coords, dims=ll_dims)
            idata.add_groups(log_likelihood=ll_data.log_likelihood)
        if predictions is not None:
            pred = az.from_dict(
                predictions=predictions,
                predictions_constant_data=predictions_constant,
                coords=pred_coords,
                pred_coords=pred_coords,
                pred_dims=pred_dims,
            )
            idata.extend(pred)
        if noise_scale is not None:  # a 0-d variable (from_dict would give it a dimension)
            if "constant_data" not in idata.groups():
                idata.add_groups(constant_data=xr.Dataset())
            idata.constant_data["noise_scale"] = xr.DataArray(noise_scale)
    for group in idata.groups():
        dataset = idata[group]
        dataset.attrs.update({"draws_from": "pyro-razor posterior predictive"})
        for k, v in dict(attrs or {}).items():
            dataset.attrs[str(k)] = v
    return idata


def save_netcdf(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write ``idata`` to netCDF atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        idata.to_netcdf(tmp)
    return path


def load_netcdf(path: str | os.PathLike) -> az.InferenceData:
    """Read an ``InferenceData`` written by :func:`save_netcdf` (fully into memory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no InferenceData file at {path}")
    idata = az.from_netcdf(path)
    for group in idata.groups():
        idata[group].load()
    return idata


# ---------------------------------------------------------------------------- summaries


def coverage(
    draws: np.ndarray, observed: np.ndarray, levels: Sequence[float] = DEFAULT_LEVELS
) -> dict[float, float]:
    r"""Empirical coverage of central predictive intervals.

    For each level ``l``, the interval at a point is ``[Q_{(1-l)/2}, Q_{(1+l)/2}]`` of the draws
    at that point (``numpy.quantile``, linear interpolation), and the coverage is the fraction
    of observed values inside it (ends included). For a calibrated predictive and independent
    points it is ``l`` up to a binomial error ``sqrt(l (1-l) / N)``, plus ``l (1-l) / S`` in
    variance from the finite number of draws ``S``.

    Args:
        draws: ``(S, ...)`` predictive draws, ``S >= 2``.
        observed: ``(...)`` observed values.
        levels: nominal levels in ``(0, 1)``.

    Returns:
        ``{level: empirical coverage}``.
    """
    d = _finite(_array(draws, "draws"), "draws")
    y = _finite(_array(observed, "observed"), "observed")
    if d.ndim < 1 or d.shape[0] < 2 or d.shape[1:] != y.shape:
        raise ValueError(
            f"draws must have shape (S >= 2, *observed.shape) = (S, {', '.join(map(str, y.shape))})"
            f", got {d.shape}"
        )
    if y.size == 0:
        raise ValueError("observed is empty")
    lv = _check_levels(levels)
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
    lv = np.round(np.arange(1, 20) * 0.05, 10) if levels is None else _check_levels(levels)
    cov = coverage(draws, observed, lv)
    return np.asarray(list(cov.keys())), np.asarray(list(cov.values()))


def pointwise_log_predictive_density(loglik: np.ndarray) -> np.ndarray:
    r"""``lpd_i = log (1/S) sum_s p(y_i | theta_s) = logsumexp_s(loglik[s, i]) - log S``.

    Args:
        loglik: ``(S, ...)`` pointwise log-likelihoods of ``S`` posterior draws.

    Returns:
        ``(...)`` Monte-Carlo estimates of ``log p(y_i | data)``.
    """
    ll = _array(loglik, "loglik")
    if ll.ndim < 1 or ll.shape[0] < 1:
        raise ValueError(f"loglik must have shape (S, ...) with S >= 1, got {ll.shape}")
    if np.isnan(ll).any() or np.isposinf(ll).any():
        raise ValueError("loglik contains NaN or +inf values")
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])


def mean_log_predictive_density(loglik: np.ndarray) -> float:
    """Mean over points of :func:`pointwise_log_predictive_density`: the ``elpd`` per point
    (per transition here) when the points are held out."""
    return float(pointwise_log_predictive_density(loglik).mean())


def _log_likelihood_array(idata: az.InferenceData) -> np.ndarray:
    """``(S, points)`` log-likelihood of ``obs`` with chains and draws stacked."""
    if "log_likelihood" not in idata.groups():
        raise ValueError("the InferenceData has no log_likelihood group")
    ll = idata.log_likelihood["obs"]
    ll = ll.stack(__sample__=("chain", "draw")).transpose("__sample__", ...)
    return ll.values.reshape(ll.shape[0], -1)


def loo_summary(idata: az.InferenceData) -> dict[str, object]:
    """PSIS-LOO of the ``obs`` log-likelihood with its Pareto-``k`` reliability check.

    ``az.loo`` estimates ``elpd_loo = sum_i log p(y_i | y_{-i})`` by Pareto-smoothed importance
    sampling of the draws. Its Pareto shape ``k_i`` per point says whether that estimate is
    trustworthy: ``k > 0.7`` never is, and ArviZ's sample-size threshold ``good_k =
    min(1 - 1/log10 S, 0.7)`` is stricter for few draws. The result is flagged ``reliable`` only
    if no ``k_i`` exceeds ``good_k``. (With a variational posterior a large ``k`` also signals
    that ``q`` is far from the exact posterior.)

    Returns:
        ``elpd_loo``, ``se``, ``p_loo``, ``elpd_loo_per_point``, ``n_points``, ``n_samples``,
        ``pareto_k_max``, ``share_k_gt_0.7``, ``good_k``, ``share_k_gt_good_k``, ``reliable``,
        ``note``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True, var_name="obs")
    k = np.asarray(loo.pareto_k).reshape(-1)
    good_k = float(getattr(loo, "good_k", PARETO_K_LIMIT))
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
        "elpd_loo": float(loo.elpd_loo),
        "se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "elpd_loo_per_point": float(loo.elpd_loo) / n,
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
    idatas: Mapping[str, az.InferenceData],
    loo_idatas: Mapping[str, az.InferenceData] | None = None,
) -> dict[str, object]:
    r"""Compare variants by predictive performance.

    *Held-out* (``idatas``, log-likelihoods of test data under posteriors fitted without it):
    per variant the mean log predictive density ``mlpd`` per transition (the test ``elpd`` per
    point), its standard error over points, the total, and the paired difference to the best
    variant with its standard error (``sqrt(N) * sd(lpd_i - lpd_best,i) / N``, the points
    being the same test transitions). This is the primary comparison.

    *In-sample LOO* (``loo_idatas``, log-likelihoods of the training data, optional): per
    variant :func:`loo_summary` and ``az.compare`` (ranks, ``elpd_diff``, stacking weights).
    They are reported only with their Pareto-``k`` diagnostics: ``loo_reliable`` is false (and
    ``loo_note`` says why) when any variant's PSIS approximation is unreliable.

    Args:
        idatas: variant name to ``InferenceData`` with a ``log_likelihood`` group (same points).
        loo_idatas: variant name to training-data ``InferenceData`` (same names), or ``None``.

    Returns:
        A JSON-ready dict: ``test`` (per variant), ``best_test``, ``loo`` (per variant),
        ``loo_compare`` (``az.compare`` table rows, or ``None``), ``loo_reliable``,
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
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = az.compare(dict(loo_idatas), ic="loo", var_name="obs")
            rows = {}
            for name, row in table.iterrows():
                rows[str(name)] = {
                    "rank": int(row["rank"]),
                    "elpd_loo": float(row["elpd_loo"]),
                    "p_loo": float(row["p_loo"]),
                    "elpd_diff": float(row["elpd_diff"]),
                    "weight": float(row["weight"]),
                    "se": float(row["se"]),
                    "dse": float(row["dse"]),
                    "reliable": bool(loo[str(name)]["reliable"]),
                }
            result["loo_compare"] = rows
    return result


# ---------------------------------------------------------------------------- figures


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight", dpi=DPI)
    return fig


def plot_ppc_phases(
    idata: az.InferenceData,
    path: str | os.PathLike | None = None,
    var_name: str = "obs",
    num_pp_samples: int = 50,
    seed: int = 0,
    title: str | None = None,
) -> Figure:
    """``az.plot_ppc`` of ``var_name`` with one panel per phase coordinate.

    Each panel overlays the KDE of the observed values (over all trajectories and times) with
    the KDEs of ``num_pp_samples`` posterior predictive replicates and their mean.
    """
    M = idata.observed_data.sizes["phase"]
    fig = Figure(figsize=(3.6 * min(M, 4), 3.0 * math.ceil(M / 4)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(math.ceil(M / 4), min(M, 4), squeeze=False).ravel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_ppc(
            idata, var_names=[var_name], flatten=["trajectory", "time"],
            num_pp_samples=min(num_pp_samples, idata.posterior_predictive.sizes["draw"]),
            random_seed=seed, ax=axes[:M], legend=True, textsize=9,
        )
    for ax in axes[1:M]:  # one legend (ArviZ draws one per panel, at different sizes)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if axes[0].get_legend() is not None:
        for text in axes[0].get_legend().get_texts():
            text.set_fontsize(8)
    for ax in axes[M:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


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
        rollouts: ``(S, R, K+1, M)`` from :func:`rollout_predictive`.
        truth: ``(R, K+1, M)`` true trajectories.
        times: ``(K+1,)`` time of each step (default the step index).
        labels: ``M`` coordinate names (default ``q1..pd``).
    """
    r = _array(rollouts, "rollouts")
    x = _array(truth, "truth")
    if r.ndim != 4 or x.shape != r.shape[1:]:
        raise ValueError(f"rollouts (S, R, K+1, M) and truth (R, K+1, M) disagree: "
                         f"{r.shape} vs {x.shape}")
    _check_levels([interval])
    S, R, P, M = r.shape
    t = np.arange(P) if times is None else _array(times, "times")
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
    return _save(fig, path)


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
    return _save(fig, path)


def plot_loo_pit(
    idata: az.InferenceData, path: str | os.PathLike | None = None, title: str | None = None
) -> Figure:
    """``az.plot_loo_pit`` of ``obs``: the LOO probability integral transform per coordinate.

    The PSIS weights come from the per-transition log-likelihood (leave out a whole
    transition) and are shared by its ``M`` coordinates. For a calibrated model the LOO-PIT
    values are uniform; only meaningful where :func:`loo_summary` says the PSIS-LOO is
    reliable.
    """
    ll = idata.log_likelihood["obs"].stack(__sample__=("chain", "draw"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log_weights, _ = az.psislw(-ll)
        y_hat = idata.posterior_predictive["obs"].stack(__sample__=("chain", "draw"))
        log_weights = log_weights.broadcast_like(y_hat).transpose(*y_hat.dims)
        fig = Figure(figsize=(4.5, 3.4), layout="constrained")
        ax = fig.subplots()
        az.plot_loo_pit(idata, y="obs", log_weights=log_weights, ax=ax, legend=True)
    ax.set_xlabel("LOO-PIT value", fontsize=9)
    ax.set_title(title or "LOO-PIT of the next states (all coordinates)", fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------- runs


def _clean(obj):
    """JSON-safe copy: non-finite floats become ``None``, NumPy scalars Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v) for v in list(obj)]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _variants_of(run_dir: Path, variant: str | None) -> list[str]:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; {RUN_HINT}")
    if variant is not None:
        ckpt = run_dir / variant / "checkpoint.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(
                f"no checkpoint for variant {variant!r}: {ckpt} is missing; {RUN_HINT} "
                "(or finish it with `pyro-razor run CONFIG --resume`)"
            )
        return [variant]
    found = sorted(p.parent.name for p in run_dir.glob("*/checkpoint.pt"))
    if not found:
        raise FileNotFoundError(
            f"no trained variant in {run_dir} (no {run_dir}/<variant>/checkpoint.pt); {RUN_HINT}"
        )
    order = ["vanilla", "learned", "oracle"]
    return sorted(found, key=lambda v: (order.index(v) if v in order else len(order), v))


def _coverage_json(cov: Mapping[float, float]) -> dict[str, float]:
    return {f"{round(100 * k):d}%": v for k, v in cov.items()}


def run_ppc(
    run_dir: str | os.PathLike,
    variant: str | None = None,
    samples: int = 100,
    horizon: int | None = None,
    *,
    rollout_trajectories: int = 3,
    seed: int = 0,
    tau_samples: int | None = None,
    device: str | None = None,
    verbose: bool = True,
) -> dict[str, object]:
    """Posterior predictive checks of a finished run (:func:`pyro_razor.experiment.run_experiment`).

    For each variant (default: every ``<run_dir>/<variant>/checkpoint.pt``):

    1. :func:`~pyro_razor.experiment.load_variant`;
    2. one-step PPC on the *test* transitions (:func:`posterior_predictive`, ``samples`` draws)
       and on the *training* transitions (for PSIS-LOO);
    3. rollouts of the first ``rollout_trajectories`` test trajectories over ``horizon`` steps
       (default: the test trajectories' length; longer horizons are compared with the exact
       solution from :func:`~pyro_razor.systems.simulate`);
    4. writes ``<variant>/ppc.nc`` (test set + rollouts), ``<variant>/ppc_train.nc``,
       ``<variant>/ppc.json`` (coverage at 50/80/90/95% one step and along the rollouts,
       test ``mlpd`` per transition, LOO diagnostics, figure paths) and figures
       ``figures/ppc_<variant>_{obs,increment,rollout,calibration[,loo_pit]}.png`` (LOO-PIT
       only where PSIS-LOO is reliable).

    Finally writes ``ppc_comparison.json`` (:func:`compare_variants` over every variant of the
    run that has PPC files, including ones from earlier calls) and prints a summary.

    Args:
        run_dir: the run directory.
        variant: one variant, or ``None`` for all trained ones.
        samples: posterior draws ``S`` (one step and rollouts).
        horizon: rollout steps (default ``test_points - 1``).
        rollout_trajectories: test trajectories rolled out.
        seed: RNG seed of the draws.
        tau_samples: symmetrisation samples per model call (default: the training
            estimator's ``model.tau_samples``, since the cost grows with ``samples x
            tau_samples``; pass ``evaluation.tau_samples`` for a less noisy ``H_hat``).
        device: where to evaluate (default: the run's device, or the CPU).
        verbose: print the summary.

    Returns:
        ``{"variants": {name: ppc.json contents}, "comparison": ...}``.

    Raises:
        FileNotFoundError: no run directory or no checkpoint (run ``pyro-razor run CONFIG``).
    """
    from pyro_razor.experiment import load_variant
    from pyro_razor.systems import simulate, transitions

    run_dir = Path(run_dir)
    variants = _variants_of(run_dir, variant)
    _check_count(samples, "samples", 2)
    _check_count(rollout_trajectories, "rollout_trajectories")
    if horizon is not None:
        _check_count(horizon, "horizon")
    fig_dir = run_dir / "figures"
    results: dict[str, dict] = {}
    fresh: dict[str, dict[str, az.InferenceData]] = {}
    for name in variants:
        config, data, model, guide = load_variant(run_dir, name, device)
        dev, dtype = model.noise.variance.device, config.torch_dtype
        taus = config.model.tau_samples if tau_samples is None else tau_samples
        M, dt = data.phase_dim, float(data.spec.dt)
        labels = phase_labels(M)
        sets = {}
        for which, traj in (("test", data.test), ("train", data.train)):
            s, ns = transitions(traj.to(device=dev, dtype=dtype))
            draws = posterior_predictive(
                model, guide, s.contiguous(), ns.contiguous(), samples, seed, tau_samples=taus
            )
            sets[which] = (s, ns, draws)

        R = min(rollout_trajectories, data.test.shape[0])
        K = data.test.shape[1] - 1 if horizon is None else horizon
        x0 = data.test[:R, 0]
        if K + 1 <= data.test.shape[1]:
            truth = data.test[:R, : K + 1]
        else:
            truth = simulate(data.spec.make_system(), x0, K + 1, dt)
        rollouts = rollout_predictive(
            model, guide, x0.to(device=dev, dtype=dtype), K, samples, seed + 1, tau_samples=taus
        )
        finite = np.isfinite(rollouts).all(axis=(1, 2, 3))
        generators = model.generators()
        attrs = {"variant": name, "dt": dt, "seed": seed, "tau_samples": taus}
        idatas = {}
        for which, (s, ns, draws) in sets.items():
            extra = {"rollouts": rollouts, "rollout_truth": truth} if which == "test" else {}
            idatas[which] = to_inference_data(
                draws, ns, None if generators is None else generators.detach(), states=s,
                attrs={**attrs, "data": which}, **extra,
            )
        vdir = run_dir / name
        save_netcdf(idatas["test"], vdir / "ppc.nc")
        save_netcdf(idatas["train"], vdir / "ppc_train.nc")
        fresh[name] = idatas

        s, ns, draws = sets["test"]
        y = ns.detach().cpu().double().numpy()
        n_points = y.size
        one_step = coverage(draws["obs"], y)
        curves = {"one step (test)": calibration_curve(draws["obs"], y)}
        rollout_cov = None
        if finite.sum() >= 2:
            r_ok, t_np = rollouts[finite][:, :, 1:], _array(truth, "truth")[:, 1:]
            rollout_cov = coverage(r_ok, t_np)
            curves[f"rollouts, {K} steps"] = calibration_curve(r_ok, t_np)
        loo = loo_summary(idatas["train"])
        mlpd = mean_log_predictive_density(draws["log_likelihood"])
        figures = {}
        prefix = f"ppc_{name}"
        figures["obs"] = fig_dir / f"{prefix}_obs.png"
        plot_ppc_phases(idatas["test"], figures["obs"], "obs",
                        title=f"{name}: one-step posterior predictive of the next state (test)")
        figures["increment"] = fig_dir / f"{prefix}_increment.png"
        plot_ppc_phases(idatas["test"], figures["increment"], "increment",
                        title=f"{name}: one-step predictive of the increment x(t+dt) - x(t) (test)")
        figures["rollout"] = fig_dir / f"{prefix}_rollout.png"
        plot_rollout_bands(rollouts[finite] if finite.any() else rollouts, truth,
                           figures["rollout"], times=np.arange(K + 1) * dt, labels=labels,
                           title=f"{name}: predictive rollouts ({int(finite.sum())}/{samples} "
                                 "draws finite)")
        figures["calibration"] = fig_dir / f"{prefix}_calibration.png"
        plot_calibration(curves, figures["calibration"], n_points=n_points,
                         title=f"{name}: calibration of central intervals")
        if loo["reliable"]:
            figures["loo_pit"] = fig_dir / f"{prefix}_loo_pit.png"
            plot_loo_pit(idatas["train"], figures["loo_pit"],
                         title=f"{name}: LOO-PIT on the training data")
        record = {
            "variant": name,
            "samples": samples,
            "seed": seed,
            "tau_samples": taus,
            "noise_scale": float(draws["noise_scale"]),
            "test": {
                "n_transitions": int(s.shape[0] * s.shape[1]),
                "n_values": int(n_points),
                "coverage": _coverage_json(one_step),
                "mlpd_per_transition": mlpd,
                "mse_predictive_mean": float(((draws["mean"].mean(0) - y) ** 2).mean()),
            },
            "rollout": {
                "trajectories": R,
                "horizon_steps": K,
                "horizon_time": K * dt,
                "finite_draws": int(finite.sum()),
                "coverage": None if rollout_cov is None else _coverage_json(rollout_cov),
            },
            "loo_train": loo,
            "files": {"netcdf": f"{name}/ppc.nc", "netcdf_train": f"{name}/ppc_train.nc"},
            "figures": {k: str(v.relative_to(run_dir)) for k, v in figures.items()},
        }
        _write_json(vdir / "ppc.json", record)
        results[name] = record

    test_idatas, train_idatas = {}, {}
    for path in sorted(run_dir.glob("*/ppc.nc")):  # this call's variants and earlier ones
        other, train_path = path.parent.name, path.parent / "ppc_train.nc"
        if other in fresh:
            test_idatas[other], train_idatas[other] = fresh[other]["test"], fresh[other]["train"]
        elif train_path.is_file():
            test_idatas[other], train_idatas[other] = load_netcdf(path), load_netcdf(train_path)
    comparison = compare_variants(test_idatas, train_idatas)
    _write_json(run_dir / "ppc_comparison.json", comparison)
    if verbose:
        print(_summary_text(results, comparison))
    return {"variants": results, "comparison": comparison}


def _summary_text(results: Mapping[str, dict], comparison: Mapping[str, object]) -> str:
    lines = ["posterior predictive checks (test set; coverage of central intervals):"]
    for name, r in results.items():
        cov = r["test"]["coverage"]
        rc = r["rollout"]["coverage"] or {}
        loo = r["loo_train"]
        lines.append(
            f"  {name:8s} mlpd/transition {r['test']['mlpd_per_transition']:9.3f}   "
            f"one-step 50%/90%: {cov['50%']:.2f}/{cov['90%']:.2f}   "
            f"rollout 50%/90%: {rc.get('50%', float('nan')):.2f}/{rc.get('90%', float('nan')):.2f}"
            f"   train PSIS-LOO {'ok' if loo['reliable'] else 'UNRELIABLE'} "
            f"({100 * loo['share_k_gt_good_k']:.0f}% k>{loo['good_k']:.2f}, "
            f"{100 * loo['share_k_gt_0.7']:.0f}% k>0.7)"
        )
    lines.append(f"  best held-out mlpd: {comparison['best_test']}; {comparison['loo_note']}")
    return "\n".join(lines)
