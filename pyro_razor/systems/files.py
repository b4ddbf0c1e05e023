"""Trajectory files: read, validate, write and split user-supplied trajectory data.

A file holds ``B`` trajectories of ``n`` states each, sampled every ``dt``, in phase space
``x = (q, p)`` of dimension ``M = 2d``: ``d`` positions first, then their ``d`` momenta.
Default names are ``q1..qd, p1..pd``. Formats, chosen by suffix (case-insensitive):

``.npz`` (``numpy.savez``)
    ``trajectories`` ``(B, n, M)``, required. Optional: ``dt`` (scalar), ``names`` (``M``
    strings), ``times`` (``(n,)`` or ``(B, n)``), ``test_trajectories`` ``(B_test, n_test, M)``
    (a held-out test set with the same ``dt``).
``.npy`` (``numpy.save``)
    The ``(B, n, M)`` array alone: ``dt`` must be given by the caller (``--dt`` or
    ``dt = ...`` in the config); no names, no test set.
``.csv``
    Long format, a header line then one row per state, e.g.::

        trajectory,time,x,y,px,py
        0,0.0,1.0,0.0,0.0,1.0
        0,0.1,0.995,0.0998,-0.0998,0.995

    A trajectory id column (``trajectory``, ``traj`` or ``id``; any case), a time column
    (``time`` or ``t``), and as phase columns every other column in file order, positions
    first (or the columns ``names`` selects). Rows may come in any order: they are sorted by id
    (numerically if all ids are numbers) then time. Every trajectory needs the same number of
    rows; ``dt`` is the step of the time column. No test set. Values are written with ``repr``
    (full precision).
``.nc`` (netCDF, read with xarray)
    Variable ``trajectories`` with dims ``(trajectory, time, phase)``; coordinate ``phase``
    holds the names, coordinate ``time`` the times; ``dt`` a global attribute or a scalar
    variable (optional with ``time``). Optional variable ``test_trajectories`` with dims
    ``(test_trajectory, test_time, phase)``.

Times must increase regularly: every step within ``STEP_RTOL = 1e-4`` (relative) of its
trajectory's mean step, and the mean steps of all trajectories (and test times) equal within
``DT_RTOL = 1e-6``. The file's dt (stored, or the step of its times) and a ``dt`` given by the
caller must agree within ``DT_RTOL``; a file without one uses the caller's; none is an error.

``names`` passed to :func:`read_trajectories` select and reorder the columns of a file that
names them (``.csv``, ``.npz`` with ``names``, ``.nc`` with ``phase``), else name its ``M``
columns. :func:`write_trajectories` writes every format atomically; reading back gives the same
float64 values, ``dt`` and names. Every problem raises :class:`DataFileError` (a ``ValueError``)
with one line naming the file, what is wrong and how to fix it, before any data is returned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pyro_razor.atomic import atomic_path
from pyro_razor.symmetry import check_phase_dim, phase_labels
from pyro_razor.systems.file_formats import (
    READERS,
    WRITERS,
    Contents,
    DataFileError,
    check_names,
    check_selected,
)

__all__ = [
    "DT_RTOL",
    "STEP_RTOL",
    "SUFFIXES",
    "DataFileError",
    "TrajectoryFile",
    "read_trajectories",
    "split_trajectories",
    "write_trajectories",
]

SUFFIXES = (".npz", ".npy", ".csv", ".nc")
DT_RTOL = 1e-6  # time steps: file vs caller, between trajectories, stored dt vs times
STEP_RTOL = 1e-4  # each single step vs its trajectory's mean step


@dataclass
class TrajectoryFile:
    """Validated contents of a trajectory file.

    Attributes:
        trajectories: ``(B, n, M)`` float64 states, positions then momenta.
        dt: time between consecutive states (> 0).
        names: ``M`` column names.
        test: ``(B_test, n_test, M)`` float64 test trajectories if the file holds a test set.
        path: the file it came from.
    """

    trajectories: torch.Tensor
    dt: float
    names: tuple[str, ...]
    test: torch.Tensor | None = None
    path: str = ""

    @property
    def phase_dim(self) -> int:
        """The phase dimension ``M``."""
        return self.trajectories.shape[-1]

    @property
    def n_transitions(self) -> int:
        """The number of transitions ``B (n - 1)`` in :attr:`trajectories`."""
        B, n, _ = self.trajectories.shape
        return B * (n - 1)


# ------------------------------------------------------------------------------ reading


def read_trajectories(
    path: str | os.PathLike, *, dt: float | None = None, names: Sequence[str] | None = None
) -> TrajectoryFile:
    """Read and validate a trajectory file; the format is chosen by suffix (module docstring).

    Args:
        path: a ``.npz``, ``.npy``, ``.csv`` or ``.nc`` file.
        dt: time step; required if the file has none, else it must agree with the file's.
        names: phase columns to select, in this order (files with names), or the names of
            the ``M`` columns (files without).

    Returns:
        A :class:`TrajectoryFile`: ``(B, n, M)`` float64 trajectories, dt, names, test set.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataFileError(f"{path}: no such file; check the path")
    suffix = _suffix(path)
    names = None if names is None else check_names(path, names, "the names given")
    return _validate(path, READERS[suffix](path, names), dt, names)


def _suffix(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise DataFileError(f"{path}: unknown file type '{suffix}'; use {', '.join(SUFFIXES)}")
    return suffix


# --------------------------------------------------------------------------- validation


def _validate(path: str, c: Contents, dt, names) -> TrajectoryFile:
    """Check shapes, names, phase dimension, finiteness and dt of ``c``; build the result."""
    trajectories = _check_array(path, "trajectories", c.trajectories)
    M = trajectories.shape[-1]
    test = None if c.test is None else _check_array(path, "test_trajectories", c.test)
    if test is not None and test.shape[-1] != M:
        raise DataFileError(
            f"{path}: test_trajectories have {test.shape[-1]} columns, trajectories {M}; "
            "store both with the same phase columns"
        )
    file_names = None if c.names is None else check_names(path, c.names, "the file's names")
    if file_names is not None and len(file_names) != M:
        raise DataFileError(
            f"{path}: the file has {len(file_names)} names for M = {M} columns; store one each"
        )
    if names is not None and file_names is not None:
        check_selected(path, names, file_names)
        index = [file_names.index(name) for name in names]
    elif names is not None and len(names) != M:
        raise DataFileError(f"{path}: {len(names)} names given for M = {M} columns; give {M}")
    else:
        names, index = names or file_names, list(range(M))
    _check_phase(path, len(index), names, selectable=file_names is not None)
    trajectories = np.ascontiguousarray(trajectories[..., index])
    _check_finite(path, "trajectories", trajectories, c.ids)
    if test is not None:
        test = np.ascontiguousarray(test[..., index])
        _check_finite(path, "test_trajectories", test, None)
    dt = _resolve_dt(path, c, dt, trajectories.shape, None if test is None else test.shape)
    names = tuple(names or phase_labels(len(index)))
    test = None if test is None else torch.from_numpy(test)
    return TrajectoryFile(torch.from_numpy(trajectories), dt, names, test, path)


def _check_array(path: str, what: str, array) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise DataFileError(f"{path}: {what} has dtype {array.dtype}; store real numbers")
    if array.ndim != 3:
        raise DataFileError(
            f"{path}: {what} has {array.ndim} dimensions (shape {array.shape}); expected 3, "
            "(B trajectories, n points, M phase coordinates): add an axis for one trajectory"
        )
    B, n, _ = array.shape
    if B < 1:
        raise DataFileError(f"{path}: {what} holds no trajectories; store at least one")
    if n < 2:
        raise DataFileError(
            f"{path}: {what} have {n} point per trajectory; at least 2 states are needed for a "
            "transition"
        )
    return array.astype(np.float64)


def _check_phase(path: str, M: int, names, selectable: bool) -> None:
    try:
        check_phase_dim(M)
    except ValueError:
        columns = f" ({', '.join(names)})" if names else ""
        raise DataFileError(
            f"{path}: phase dimension M = {M}{columns} is {'odd' if M % 2 else 'zero'}; columns "
            "must be d positions then d momenta (M = 2d): add the missing ones"
            + (" or choose the phase columns by name (--names X,Y,...)" if selectable else "")
        ) from None


def _label(b: int, ids) -> str:
    return f"trajectory {b} (id {ids[b]})" if ids else f"trajectory {b}"


def _check_finite(path: str, what: str, array: np.ndarray, ids) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        rows = bad.any(axis=(1, 2))
        raise DataFileError(
            f"{path}: {what} contain {int(bad.sum())} NaN/inf values in {int(rows.sum())} "
            f"trajectories, first {_label(int(rows.argmax()), ids)} (0-based); remove or repair"
        )


def _check_dt(path: str, value, what: str) -> float:
    array = np.asarray(value)
    number = float(array.reshape(())) if array.size == 1 and array.dtype.kind in "iuf" else None
    if number is None or not (number > 0 and math.isfinite(number)):
        shown = array.tolist()
        raise DataFileError(f"{path}: {what} is {shown!r}; dt must be a positive finite number")
    return number


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= DT_RTOL * max(abs(a), abs(b))


def _resolve_dt(path: str, c: Contents, dt, shape, test_shape) -> float:
    """The file's time step (stored, times and test times all agreeing), checked against dt."""
    found = []  # (value, where)
    if c.dt is not None:
        found.append((_check_dt(path, c.dt, "the dt stored in the file"), "the stored dt"))
    if c.times is not None:
        found.append((_dt_from_times(path, "times", c.times, shape[:2], c.ids), "the times"))
    if c.test_times is not None:
        step = _dt_from_times(path, "test times", c.test_times, test_shape[:2], None)
        found.append((step, "the test times"))
    for value, where in found[1:]:
        if not _close(value, found[0][0]):
            raise DataFileError(
                f"{path}: the step {value!r} of {where} disagrees with {found[0][1]} "
                f"{found[0][0]!r}; make them agree"
            )
    file_dt = found[0][0] if found else None
    if dt is not None:
        dt = _check_dt(path, dt, "the dt given")
        if file_dt is not None and not _close(dt, file_dt):
            raise DataFileError(
                f"{path}: the dt given ({dt!r}) disagrees with the file's dt ({file_dt!r}); "
                "pass the file's dt or none"
            )
    if file_dt is None and dt is None:
        raise DataFileError(f"{path}: no dt in the file; pass --dt or dt = ... in the config")
    return file_dt if file_dt is not None else dt


def _dt_from_times(path: str, what: str, times, shape: tuple[int, int], ids) -> float:
    """Time step of ``(n,)`` or ``(B, n)`` times: increasing, regular, equal across rows."""
    B, n = shape
    t = np.asarray(times)
    if t.dtype.kind not in "iuf" or t.shape not in ((n,), (B, n)):
        raise DataFileError(
            f"{path}: {what} have dtype {t.dtype} and shape {t.shape}; store numbers of shape "
            f"({n},) or ({B}, {n}) to match the trajectories"
        )
    t = t.astype(np.float64).reshape(-1, n)
    ids = ids if len(t) == B else None
    steps = np.diff(t, axis=1)
    if not (steps > 0).all():  # also catches NaN and inf
        b, k = np.argwhere(~(steps > 0))[0]
        raise DataFileError(
            f"{path}: {what} are not finite and increasing ({_label(b, ids)}, from "
            f"{float(t[b, k])!r} to {float(t[b, k + 1])!r}); sort them, remove duplicates or "
            "fix the values"
        )
    mean = (t[:, -1] - t[:, 0]) / (n - 1)
    deviation = np.abs(steps / mean[:, None] - 1)
    b, k = np.unravel_index(deviation.argmax(), deviation.shape)
    if deviation[b, k] > STEP_RTOL:
        raise DataFileError(
            f"{path}: irregular time steps, largest deviation {deviation[b, k]:.3g} (relative) "
            f"in {_label(b, ids)}: step {float(steps[b, k])!r} at time {float(t[b, k])!r}, "
            f"mean step {float(mean[b])!r}; resample at one fixed dt"
        )
    b = int(np.abs(mean / mean[0] - 1).argmax())
    if not _close(mean[b], mean[0]):
        raise DataFileError(
            f"{path}: time steps differ between trajectories: {_label(0, ids)} has dt "
            f"{float(mean[0])!r}, {_label(b, ids)} {float(mean[b])!r}; sample all with one dt"
        )
    # Times k * dt give back dt exactly as the first step (the mean may be an ulp off).
    first = t[0, 1] - t[0, 0]
    return float(first if abs(first - mean[0]) <= 1e-12 * mean[0] else mean[0])


# ------------------------------------------------------------------------------ writing


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_trajectories(
    path: str | os.PathLike,
    trajectories: torch.Tensor | np.ndarray,
    dt: float,
    names: Sequence[str] | None = None,
    test: torch.Tensor | np.ndarray | None = None,
) -> None:
    """Write trajectories atomically, in the format given by the suffix (module docstring).

    Args:
        path: a ``.npz``, ``.npy``, ``.csv`` or ``.nc`` file, replaced if it exists.
        trajectories: ``(B, n, M)`` finite states, positions then momenta.
        dt: time step (> 0); not stored by ``.npy``.
        names: ``M`` column names (default ``q1..qd, p1..pd``); not for ``.npy``.
        test: ``(B_test, n_test, M)`` test trajectories; ``.npz`` and ``.nc`` only.

    Raises:
        DataFileError: data that reading would reject, or that the format cannot hold;
            nothing is written then.
    """
    path = os.fspath(path)
    suffix = _suffix(path)
    names = None if names is None else check_names(path, names, "the names given")
    test = None if test is None else _numpy(test)
    checked = _validate(path, Contents(_numpy(trajectories), test=test), dt, names)
    if test is not None and suffix in (".npy", ".csv"):
        raise DataFileError(f"{path}: {suffix} cannot hold a test set; use .npz or .nc")
    if names is not None and suffix == ".npy":
        raise DataFileError(f"{path}: .npy cannot store names; use .npz, .csv or .nc")
    if suffix == ".csv" and {"trajectory", "time"} & set(checked.names):
        raise DataFileError(f"{path}: 'trajectory' and 'time' name the CSV id and time columns")
    with atomic_path(path) as tmp:
        WRITERS[suffix](tmp, checked)


# ---------------------------------------------------------------------------- splitting


def split_trajectories(
    trajectories: torch.Tensor, test_fraction: float = 0.2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split whole trajectories at random into train and test sets, reproducibly from ``seed``.

    Args:
        trajectories: ``(B, n, M)`` with ``B >= 2``.
        test_fraction: share of trajectories for testing, in (0, 1); rounded, and clipped so
            that each side gets at least one trajectory.
        seed: seed of the ``torch.Generator`` drawing the permutation.

    Returns:
        ``(train, test)`` of shapes ``(B - B_test, n, M)`` and ``(B_test, n, M)``, each in the
        original order.
    """
    if not isinstance(trajectories, torch.Tensor) or trajectories.ndim != 3:
        raise ValueError("split_trajectories: expected a (B, n, M) tensor")
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"split_trajectories: test_fraction must be in (0, 1), not {test_fraction}"
        )
    B = trajectories.shape[0]
    if B < 2:
        raise ValueError(
            f"split_trajectories: {B} trajectory cannot be split into train and test; "
            "provide at least 2 trajectories or a separate test set"
        )
    n_test = min(max(round(test_fraction * B), 1), B - 1)
    order = torch.randperm(B, generator=torch.Generator().manual_seed(seed))
    order = order.to(trajectories.device)
    return trajectories[order[n_test:].sort().values], trajectories[order[:n_test].sort().values]
