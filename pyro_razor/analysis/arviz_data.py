r"""Posterior predictive draws as ArviZ ``InferenceData``, and its netCDF files.

:func:`to_inference_data` wraps the output of
:func:`pyro_razor.inference.posterior_predictive` (and optional rollouts from
:func:`pyro_razor.inference.predictive_rollout`); the draws get a ``chain`` dimension of size 1
since they are independent. Groups: ``posterior`` (predictive means, chosen weights),
``posterior_predictive`` / ``observed_data`` (``obs``: next states; ``increment``:
``x_{t+dt} - x_t``), ``log_likelihood`` (``obs``), ``constant_data`` (the conserved quantities'
generators ``(quantity, row, col)``, the input states, ``sigma_data``) and, for rollouts,
``predictions`` / ``predictions_constant_data``. Dimensions are named ``trajectory``, ``time``
(transition index ``t``: ``x_t -> x_{t+1}``) and ``phase`` (``q1..qd, p1..pd`` or the user's
coordinate names).

Shapes: ``P`` draws, ``T`` trajectories, ``n`` transitions, ``M`` phase dimension, ``K``
quantities, ``R`` rollouts of ``h + 1`` steps.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from pyro_razor.atomic import atomic_path
from pyro_razor.symmetry import check_phase_dim, phase_labels

with warnings.catch_warnings():  # ArviZ 0.x announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

__all__ = ["as_float_array", "finite_array", "load_netcdf", "save_netcdf", "to_inference_data"]

DATA_DIMS = ["trajectory", "time", "phase"]


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


def _posterior(draws: Mapping[str, np.ndarray], shape: tuple, dims: dict) -> tuple[dict, float]:
    """The ``posterior`` variables (``mean`` and weights) and ``sigma_data`` of ``draws``."""
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
            posterior["mean"] = a[None]
        elif a.ndim >= 1 and a.shape[0] == shape[0]:
            posterior[key] = a[None]
            dims[key] = [f"{key}_dim{i}" for i in range(a.ndim - 1)]
            if key.startswith("weight") and a.ndim == 3:
                dims[key] = [f"{key}_row", f"{key}_col"]
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


def _rollout_groups(rollouts, rollout_truth, M: int, coords: dict):
    """``predictions`` (and ``predictions_constant_data``) with their coordinates: the rollouts
    start from the first ``R`` trajectories, so they keep those trajectories' labels."""
    r = as_float_array(rollouts, "rollouts")
    if r.ndim != 4 or r.shape[-1] != M:
        raise ValueError(f"rollouts must have shape (P, R, h+1, {M}), got {r.shape}")
    pred_coords = {**coords, "step": np.arange(r.shape[2])}
    pred_coords["trajectory"] = np.asarray(pred_coords["trajectory"])[: r.shape[1]]
    truth = None
    if rollout_truth is not None:
        truth = as_float_array(rollout_truth, "rollout_truth")
        if truth.shape != r.shape[1:]:
            raise ValueError(f"rollout_truth must have shape {r.shape[1:]}, got {truth.shape}")
        truth = {"rollout_truth": truth}
    return {"rollout": r[None]}, truth, pred_coords


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
    """Wrap posterior predictive draws (and optional rollouts) as ``InferenceData``.

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
        The ``InferenceData``; save it with :func:`save_netcdf`.
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
    default_coords = {"trajectory": np.arange(T), "time": np.arange(n), "phase": phase_labels(M)}
    dims = {"obs": DATA_DIMS, "mean": DATA_DIMS, "increment": DATA_DIMS}
    posterior, noise_scale = _posterior(draws, obs.shape, dims)
    predictive, observed_data, constant = {"obs": obs[None]}, {"obs": y}, {}
    if states is not None:
        x = finite_array(as_float_array(states, "states"), "states")
        if x.shape != (T, n, M):
            raise ValueError(f"states must have shape {(T, n, M)}, got {x.shape}")
        predictive["increment"], observed_data["increment"] = (obs - x)[None], y - x
        constant["states"], dims["states"] = x, DATA_DIMS
    log_likelihood = None
    if "log_likelihood" in draws:
        ll = as_float_array(draws["log_likelihood"], "draws['log_likelihood']")
        if ll.shape != (P, T, n):
            raise ValueError(f"draws['log_likelihood'] must have shape {(P, T, n)}, got {ll.shape}")
        log_likelihood = {"obs": ll[None]}
    if generators is not None:
        constant["generators"] = _generators(generators, M)
        dims["generators"] = ["quantity", "row", "col"]
        labels = [str(n) for n in dict(coords or {}).get("phase", phase_labels(M))] + ["1"]
        default_coords.update(quantity=np.arange(constant["generators"].shape[0]), row=labels,
                              col=labels)
    all_coords = {**default_coords, **dict(coords or {})}
    rollout_parts = None
    if rollouts is not None:
        rollout_parts = _rollout_groups(rollouts, rollout_truth, M, all_coords)
    idata = _assemble(posterior, predictive, observed_data, constant, all_coords, dims,
                      log_likelihood, rollout_parts, noise_scale)
    for group in idata.groups():
        idata[group].attrs.update({"draws_from": "pyro-razor posterior predictive"})
        for k, v in dict(attrs or {}).items():
            idata[group].attrs[str(k)] = v
    return idata


def _assemble(posterior, predictive, observed_data, constant, coords, dims, log_likelihood,
              rollout_parts, noise_scale) -> az.InferenceData:
    """``az.from_dict`` of the groups; log-likelihood and predictions added with their own dims."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_dict(posterior=posterior, posterior_predictive=predictive,
                             observed_data=observed_data, constant_data=constant or None,
                             coords=coords, dims=dims)
        if log_likelihood is not None:  # its "obs" is (trajectory, time): summed over phase
            ll = az.from_dict(log_likelihood=log_likelihood, coords=coords,
                              dims={"obs": ["trajectory", "time"]})
            idata.add_groups(log_likelihood=ll.log_likelihood)
        if rollout_parts is not None:
            predictions, truth, pred_coords = rollout_parts
            pred_dims = {"rollout": ["trajectory", "step", "phase"],
                         "rollout_truth": ["trajectory", "step", "phase"]}
            idata.extend(az.from_dict(predictions=predictions, predictions_constant_data=truth,
                                      coords=pred_coords, pred_coords=pred_coords,
                                      pred_dims=pred_dims))
        if noise_scale is not None:  # a 0-d variable (from_dict would give it a dimension)
            if "constant_data" not in idata.groups():
                idata.add_groups(constant_data=xr.Dataset())
            idata.constant_data["noise_scale"] = xr.DataArray(noise_scale)
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
