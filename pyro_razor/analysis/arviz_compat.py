r"""One interface to both ArviZ generations: 0.x (``InferenceData``) and 1.x (``DataTree``).

ArviZ 1.x split into ``arviz-base`` / ``arviz-stats`` / ``arviz-plots`` and stores the groups in
an ``xarray.DataTree``; ArviZ 0.x (0.17 - 0.23) keeps them in ``az.InferenceData``. The
generation is detected once, from ``arviz.__version__`` (:data:`ARVIZ_GENERATION`), and every
other module of pyro-razor talks to ArviZ only through the functions here:

- :func:`dataset` / :func:`from_datasets`: the groups, built by xarray the same way on both
  lines (so groups, variables, dims and coordinates are identical), then wrapped;
- :func:`group_names`, :func:`group`, :func:`samples`: read them back;
- :func:`save_netcdf` / :func:`load_netcdf`: one netCDF4 group per ArviZ group (the files are
  readable by either generation and by ``xarray.open_datatree``);
- :func:`loo` (PSIS-LOO with Pareto ``k``), :func:`compare`, :func:`psis_log_weights`,
  :func:`loo_pit`, :func:`kde`: ArviZ's own estimators, with their results as plain numbers.

The draws of pyro-razor are independent (one chain), so the relative efficiency ``r_eff`` is 1,
which is what both generations use for a single chain. Known difference between the lines:
the standard error of ``elpd_loo`` is ``sqrt(N var(elpd_i))`` with ``ddof=0`` in 0.x and
``ddof=1`` in 1.x (a factor ``sqrt(N / (N - 1))``), and the Pareto ``k`` estimates differ a
little (by up to 0.02 on the reference model of ``tests/test_arviz_versions.py``, where the
pointwise ``elpd`` and LOO-PIT values of the two lines agree to 1e-4).

This module imports only NumPy, xarray and ArviZ (no torch, no other pyro-razor module), so it
can be tested in an environment without torch (see ``docs/arviz.md``).

Shapes: ``S`` posterior draws (``chain * draw``), ``...`` the dims of one variable's values.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.special import logsumexp

with warnings.catch_warnings():  # ArviZ 0.x announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

ARVIZ_VERSION: str = str(az.__version__)
"""Version of the installed ``arviz`` package."""

ARVIZ_GENERATION: int = 1 if int(ARVIZ_VERSION.split(".")[0]) >= 1 else 0
"""0: ArviZ 0.x (``InferenceData``); 1: ArviZ 1.x (``xarray.DataTree``)."""

if ARVIZ_GENERATION == 1:
    import arviz_stats
    from arviz_stats.base import array_stats

SAMPLE_DIMS = ("chain", "draw")

__all__ = [
    "ARVIZ_GENERATION",
    "ARVIZ_VERSION",
    "SAMPLE_DIMS",
    "LooResult",
    "compare",
    "dataset",
    "from_datasets",
    "group",
    "group_names",
    "kde",
    "load_netcdf",
    "loo",
    "loo_pit",
    "psis_log_weights",
    "samples",
    "save_netcdf",
]


# ----------------------------------------------------------------------------- groups


def dataset(
    variables: Mapping[str, tuple[Sequence[str], np.ndarray]],
    coords: Mapping[str, Sequence] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """An ``xarray.Dataset`` of ``{name: (dims, values)}``, as ArviZ's ``from_dict`` lays it out.

    Every dimension used gets a coordinate: the one in ``coords``, else ``0 .. size-1``;
    ``coords`` entries for dimensions no variable uses are left out. ``chain`` / ``draw``
    count from 0 unless given.
    """
    coords = dict(coords or {})
    data_vars, sizes = {}, {}
    for name, (dims, values) in variables.items():
        values = np.asarray(values)
        if values.ndim != len(dims):
            raise ValueError(f"{name}: {values.ndim}-d values for dims {tuple(dims)}")
        data_vars[name] = (tuple(dims), values)
        sizes.update(zip(dims, values.shape, strict=True))
    used = {dim: np.asarray(coords[dim]) if dim in coords else np.arange(size)
            for dim, size in sizes.items()}
    return xr.Dataset(data_vars, coords=used, attrs=dict(attrs or {}))


def from_datasets(groups: Mapping[str, xr.Dataset]):
    """The ArviZ container of ``{group name: Dataset}``: ``InferenceData`` (0.x) or a
    ``DataTree`` with one child per group (1.x)."""
    if ARVIZ_GENERATION == 0:
        return az.InferenceData(**dict(groups))
    return xr.DataTree.from_dict({str(name): ds for name, ds in groups.items()})


def group_names(data) -> list[str]:
    """Names of the groups of ``InferenceData`` / ``DataTree`` ``data`` (``"posterior"``, ..)."""
    if ARVIZ_GENERATION == 1:
        return [str(name) for name in data.children]
    return list(data.groups())


def group(data, name: str) -> xr.Dataset:
    """Group ``name`` of ``data`` as an ``xarray.Dataset`` (``KeyError`` if it is missing)."""
    if name not in group_names(data):
        raise KeyError(f"no {name!r} group (groups: {group_names(data)})")
    if ARVIZ_GENERATION == 1:
        return data[name].to_dataset()
    return data[name]


def samples(data, group_name: str, var_name: str) -> np.ndarray:
    """``(S, ...)`` values of ``var_name`` in a sample group, ``chain`` and ``draw`` merged
    (chain-major), the other dims in stored order."""
    da = group(data, group_name)[var_name]
    da = da.transpose(*SAMPLE_DIMS, ...)
    return da.values.reshape(-1, *da.shape[2:])


# ----------------------------------------------------------------------------- netCDF


def save_netcdf(data, path: str | os.PathLike) -> None:
    """Write ``data`` (either container) to ``path``: one netCDF4 group per ArviZ group."""
    data.to_netcdf(Path(path))


def load_netcdf(path: str | os.PathLike):
    """Read a file of :func:`save_netcdf` (of either generation) fully into memory, as this
    generation's container."""
    path = Path(path)
    if ARVIZ_GENERATION == 1:
        return xr.load_datatree(path)
    data = az.from_netcdf(path)
    for name in data.groups():
        data[name].load()
    return data


# ----------------------------------------------------------------------------- PSIS-LOO


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO of one variable: totals as floats, pointwise values as arrays of the
    log-likelihood's point dims (``(...)``)."""

    elpd: float
    se: float
    p: float
    n_samples: int
    n_points: int
    good_k: float
    elpd_i: np.ndarray
    pareto_k: np.ndarray


def loo(data, var_name: str = "obs") -> LooResult:
    """ArviZ's PSIS-LOO of ``log_likelihood[var_name]`` (``az.loo`` / ``arviz_stats.loo``).

    ``good_k = min(1 - 1/log10 S, 0.7)`` is ArviZ's sample-size threshold on Pareto ``k``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_GENERATION == 0:
            res = az.loo(data, pointwise=True, var_name=var_name)
            elpd, p, elpd_i = res.elpd_loo, res.p_loo, res.loo_i
        else:
            res = arviz_stats.loo(data, pointwise=True, var_name=var_name)
            elpd, p, elpd_i = res.elpd, res.p, res.elpd_i
    return LooResult(
        elpd=float(elpd), se=float(res.se), p=float(p), n_samples=int(res.n_samples),
        n_points=int(res.n_data_points), good_k=float(res.good_k),
        elpd_i=np.asarray(elpd_i, dtype=np.float64),
        pareto_k=np.asarray(res.pareto_k, dtype=np.float64),
    )


def psis_log_weights(log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's Pareto-smoothed importance weights for leaving out each point, ``r_eff = 1``.

    Args:
        log_lik: ``(S, ...)`` pointwise log-likelihoods of ``S`` independent draws.

    Returns:
        ``(log_weights, k)``: ``(S, ...)`` smoothed log weights normalised over the draws
        (``logsumexp`` over axis 0 is 0), and ``(...)`` Pareto shapes.
    """
    ll = np.asarray(log_lik, dtype=np.float64)
    if ll.ndim < 1 or ll.shape[0] < 2:
        raise ValueError(f"log_lik must have shape (S >= 2, ...), got {ll.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_GENERATION == 0:  # takes the log ratios -ll, draws on the last axis
            lw, k = az.psislw(-np.moveaxis(ll, 0, -1), reff=1.0)
        else:  # takes the log-likelihood itself, moves the draws to the last axis
            lw, k = array_stats.psislw(ll, r_eff=1.0, axis=0)
    lw = np.moveaxis(np.asarray(lw, dtype=np.float64), -1, 0)
    return lw - logsumexp(lw, axis=0), np.asarray(k, dtype=np.float64)


def loo_pit(data, var_name: str = "obs") -> np.ndarray:
    """ArviZ's LOO-PIT ``P(y~_i <= y_i | y_{-i})`` of ``observed_data[var_name]``.

    The PSIS weights come from ``log_likelihood[var_name]``, whose point dims may be a prefix
    of the observed dims (here ``(trajectory, time)`` against ``(trajectory, time, phase)``:
    a left-out transition leaves out all its coordinates); they are broadcast over the rest.

    Returns:
        Values in ``[0, 1]`` with the shape and dim order of ``observed_data[var_name]``.
    """
    obs = group(data, "observed_data")[var_name]
    pred = group(data, "posterior_predictive")[var_name].transpose(*SAMPLE_DIMS, *obs.dims)
    ll = group(data, "log_likelihood")[var_name].transpose(*SAMPLE_DIMS, ...)
    lw, k = psis_log_weights(ll.values.reshape(-1, *ll.shape[2:]))
    lw = xr.DataArray(lw.reshape(ll.shape), dims=ll.dims, coords=ll.coords)
    k = xr.DataArray(k, dims=ll.dims[2:], coords={d: ll.coords[d] for d in ll.dims[2:]})
    lw = lw.broadcast_like(pred).transpose(*pred.dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_GENERATION == 0:  # samples on a last "__sample__" axis
            stack = {"__sample__": SAMPLE_DIMS}
            pit = az.loo_pit(y=obs.values, y_hat=pred.stack(stack).values,
                             log_weights=lw.stack(stack).values)
        else:
            pit = arviz_stats.loo_pit(
                data, var_names=var_name, log_weights=xr.Dataset({var_name: lw}),
                pareto_k=xr.Dataset({var_name: k.broadcast_like(obs)}),
            )[var_name].transpose(*obs.dims)
    return np.asarray(pit, dtype=np.float64).reshape(obs.shape)


def compare(datas: Mapping[str, object], var_name: str = "obs") -> dict[str, dict[str, float]]:
    """ArviZ's PSIS-LOO comparison (stacking weights) of two or more models.

    ``elpd_diff`` follows ArviZ 0.x: best minus this model (ArviZ 1.x reports the opposite sign
    and rounds the table unless told not to; both are undone here).

    Returns:
        Model name to ``rank`` (0 = best), ``elpd_loo``, ``p_loo``, ``elpd_diff`` (to the best,
        >= 0), ``weight``, ``se``, ``dse``, in ArviZ's order (best first).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_GENERATION == 0:
            table = az.compare(dict(datas), ic="loo", var_name=var_name)
            elpd, p, sign = "elpd_loo", "p_loo", 1.0
        else:  # unrounded; its elpd_diff is model - best (<= 0)
            table = arviz_stats.compare(dict(datas), var_name=var_name, round_to="none")
            elpd, p, sign = "elpd", "p", -1.0
    rows = {}
    for name, row in table.iterrows():
        rows[str(name)] = {
            "rank": int(row["rank"]), "elpd_loo": float(row[elpd]), "p_loo": float(row[p]),
            "elpd_diff": sign * float(row["elpd_diff"]), "weight": float(row["weight"]),
            "se": float(row["se"]), "dse": float(row["dse"]),
        }
    return rows


# ----------------------------------------------------------------------------- figure data


def kde(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's linear KDE (``"experimental"`` bandwidth, 512 grid points) of all ``values``.

    Returns:
        ``(grid, density)``, each ``(512,)``.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 2 or not np.isfinite(x).all():
        raise ValueError(f"kde needs at least 2 finite values, got {x.size} values")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_GENERATION == 0:
            grid, density = az.kde(x)
        else:
            grid, density, _ = array_stats.kde(x)
    return np.asarray(grid, dtype=np.float64), np.asarray(density, dtype=np.float64)
