r"""Posterior predictive draws as ArviZ groups (``InferenceData`` / ``DataTree``) and netCDF files.

:func:`to_inference_data` wraps the output of
:func:`pyro_razor.inference.posterior_predictive` (and optional rollouts from
:func:`pyro_razor.inference.predictive_rollout`); the draws get a ``chain`` dimension of size 1
since they are independent. The container is built by :mod:`.arviz_compat`: ``InferenceData``
with ArviZ 0.x, ``xarray.DataTree`` with ArviZ 1.x, with the same contents. Groups:
``posterior`` (predictive means, chosen weights), ``posterior_predictive`` / ``observed_data``
(``obs``: next states; ``increment``: ``x_{t+dt} - x_t``), ``log_likelihood`` (``obs``),
``constant_data`` (the conserved quantities' generators ``(quantity, row, col)``, the input
states, ``sigma_data``) and, for rollouts, ``predictions`` / ``predictions_constant_data``.
Dimensions are named ``trajectory``, ``time`` (transition index ``t``: ``x_t -> x_{t+1}``) and
``phase`` (``q1..qd, p1..pd`` or the user's coordinate names).

Shapes: ``P`` draws, ``T`` trajectories, ``n`` transitions, ``M`` phase dimension, ``K``
quantities, ``R`` rollouts of ``h + 1`` steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from pyro_razor.analysis import arviz_compat as compat
from pyro_razor.atomic import atomic_path
from pyro_razor.symmetry import check_phase_dim, phase_labels

__all__ = ["as_float_array", "finite_array", "load_netcdf", "save_netcdf", "to_inference_data"]

SAMPLE_DIMS = ["chain", "draw"]
DATA_DIMS = ["trajectory", "time", "phase"]
ROLLOUT_DIMS = ["trajectory", "step", "phase"]


def as_float_array(x, name: str) -> np.ndarray:
    """Float64 NumPy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array or tensor of numbers, got {type(x)}") from None


def finite_array(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` if every entry is finite, else ``ValueError`` (count of bad entries)."""
    if not np.isfinite(a).all():
        raise ValueError(
            f"{name} contains NaN or inf values ({int((~np.isfinite(a)).sum())} entries); "
            "drop diverged draws first"
        )
    return a


def _posterior(draws: Mapping[str, np.ndarray], shape: tuple) -> tuple[dict, float | None]:
    """The ``posterior`` variables (``mean`` and weights) as ``{name: (dims, values)}`` with a
    leading chain of 1, and ``sigma_data`` (``draws["noise_scale"]``) of ``draws``."""
    posterior, noise_scale = {}, None
    for key, value in draws.items():
        a = as_float_array(value, f"draws[{key!r}]")
        if key in ("obs", "log_likelihood"):
            continue
        if key == "noise_scale":
            noise_scale = float(a.reshape(()))
        elif key == "mean":
            if a.shape != shape:
                raise ValueError(f"draws['mean'] must have shape {shape}, got {a.shape}")
            posterior["mean"] = (SAMPLE_DIMS + DATA_DIMS, a[None])
        elif a.ndim >= 1 and a.shape[0] == shape[0]:
            dims = [f"{key}_dim{i}" for i in range(a.ndim - 1)]
            if key.startswith("weight") and a.ndim == 3:
                dims = [f"{key}_row", f"{key}_col"]
            posterior[key] = (SAMPLE_DIMS + dims, a[None])
        else:
            raise ValueError(f"draws[{key!r}] must have a leading dimension of {shape[0]} draws")
    return posterior, noise_scale


def _generators(generators, M: int) -> np.ndarray:
    G = finite_array(as_float_array(generators, "generators"), "generators")
    if G.ndim != 3 or G.shape[1:] != (M + 1, M + 1):
        raise ValueError(
            f"generators must have shape (K, {M + 1}, {M + 1}) for phase dimension {M}, "
            f"got {G.shape}"
        )
    return G


def _rollout_groups(rollouts, rollout_truth, M: int, coords: dict, attrs: dict) -> dict:
    """``predictions`` (and ``predictions_constant_data``): the rollouts start from the first
    ``R`` trajectories, so they keep those trajectories' labels."""
    r = as_float_array(rollouts, "rollouts")
    if r.ndim != 4 or r.shape[-1] != M:
        raise ValueError(f"rollouts must have shape (P, R, h+1, {M}), got {r.shape}")
    pred_coords = {**coords, "step": np.arange(r.shape[2])}
    pred_coords["trajectory"] = np.asarray(pred_coords["trajectory"])[: r.shape[1]]
    groups = {"predictions": compat.dataset(
        {"rollout": (SAMPLE_DIMS + ROLLOUT_DIMS, r[None])}, pred_coords, attrs)}
    if rollout_truth is not None:
        truth = as_float_array(rollout_truth, "rollout_truth")
        if truth.shape != r.shape[1:]:
            raise ValueError(f"rollout_truth must have shape {r.shape[1:]}, got {truth.shape}")
        groups["predictions_constant_data"] = compat.dataset(
            {"rollout_truth": (ROLLOUT_DIMS, truth)}, pred_coords, attrs)
    return groups


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
):
    """Wrap posterior predictive draws (and optional rollouts) as ArviZ groups.

    Args:
        draws: from :func:`pyro_razor.inference.posterior_predictive` (needs ``"obs"``).
        observed: ``(T, n, M)`` observed next states.
        generators: ``(K, M+1, M+1)`` generators of the conserved quantities, or ``None``.
        coords: coordinate values overriding the defaults (``trajectory``/``time``/``step``/
            ``quantity``: integer indices; ``phase``: ``q1..qd, p1..pd``).
        states: ``(T, n, M)`` states before each transition (adds ``increment``).
        rollouts: ``(P, R, h+1, M)`` from :func:`pyro_razor.inference.predictive_rollout`.
        rollout_truth: ``(R, h+1, M)`` true trajectories for the rollouts.
        attrs: extra attributes stored on every group.

    Returns:
        ``az.InferenceData`` with ArviZ 0.x, ``xarray.DataTree`` with ArviZ 1.x (same groups,
        variables, dims and coordinates); save it with :func:`save_netcdf`.
    """
    if not isinstance(draws, Mapping) or "obs" not in draws:
        raise ValueError("draws must be a dict with an 'obs' entry (see posterior_predictive)")
    obs = as_float_array(draws["obs"], "draws['obs']")
    if obs.ndim != 4:
        raise ValueError(f"draws['obs'] must have shape (P, T, n, M), got {obs.shape}")
    P, T, n, M = obs.shape
    check_phase_dim(M)
    y = finite_array(as_float_array(observed, "observed"), "observed")
    if y.shape != (T, n, M):
        raise ValueError(f"observed must have shape {(T, n, M)} to match the draws, got {y.shape}")
    all_coords = {"trajectory": np.arange(T), "time": np.arange(n), "phase": phase_labels(M)}
    posterior, noise_scale = _posterior(draws, obs.shape)
    predictive = {"obs": (SAMPLE_DIMS + DATA_DIMS, obs[None])}
    observed_data, constant = {"obs": (DATA_DIMS, y)}, {}
    if states is not None:
        x = finite_array(as_float_array(states, "states"), "states")
        if x.shape != (T, n, M):
            raise ValueError(f"states must have shape {(T, n, M)}, got {x.shape}")
        predictive["increment"] = (SAMPLE_DIMS + DATA_DIMS, (obs - x)[None])
        observed_data["increment"] = (DATA_DIMS, y - x)
        constant["states"] = (DATA_DIMS, x)
    if generators is not None:
        G = _generators(generators, M)
        constant["generators"] = (["quantity", "row", "col"], G)
        labels = [str(n) for n in dict(coords or {}).get("phase", phase_labels(M))] + ["1"]
        all_coords.update(quantity=np.arange(G.shape[0]), row=labels, col=labels)
    if noise_scale is not None:
        constant["noise_scale"] = ([], np.asarray(noise_scale))
    all_coords.update(dict(coords or {}))
    group_attrs = {"draws_from": "pyro-razor posterior predictive",
                   "arviz_version": compat.ARVIZ_VERSION,
                   **{str(k): v for k, v in dict(attrs or {}).items()}}
    variables = {"posterior": posterior, "posterior_predictive": predictive,
                 "observed_data": observed_data, "constant_data": constant}
    if "log_likelihood" in draws:  # (trajectory, time): summed over phase
        ll = as_float_array(draws["log_likelihood"], "draws['log_likelihood']")
        if ll.shape != (P, T, n):
            raise ValueError(f"draws['log_likelihood'] must have shape {(P, T, n)}, got {ll.shape}")
        variables["log_likelihood"] = {"obs": (SAMPLE_DIMS + DATA_DIMS[:2], ll[None])}
    groups = {name: compat.dataset(v, all_coords, group_attrs)
              for name, v in variables.items() if v}
    if rollouts is not None:
        groups.update(_rollout_groups(rollouts, rollout_truth, M, all_coords, group_attrs))
    return compat.from_datasets(groups)


def save_netcdf(data, path: str | os.PathLike) -> Path:
    """Write ``data`` (``InferenceData`` or ``DataTree``) to netCDF atomically (temporary file,
    then ``os.replace``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        compat.save_netcdf(data, tmp)
    return path


def load_netcdf(path: str | os.PathLike):
    """Read a file written by :func:`save_netcdf` (fully into memory) as the installed ArviZ's
    container (``InferenceData`` for 0.x, ``DataTree`` for 1.x)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no InferenceData file at {path}")
    return compat.load_netcdf(path)
