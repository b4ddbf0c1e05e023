"""Per-format readers and writers of trajectory files (``.npz``, ``.npy``, ``.csv``, ``.nc``).

The formats are described in :mod:`pyro_razor.systems.files`, the public API, which validates
what a reader returns and what a writer is given. To avoid an import cycle, ``files`` imports
this module and never the reverse, so :class:`DataFileError` (re-exported by ``files``),
:class:`Contents` and the name checks the CSV reader needs are defined here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: importing files at run time would be a cycle
    from pyro_razor.systems.files import TrajectoryFile

__all__ = [
    "ID_COLUMNS",
    "READERS",
    "TIME_COLUMNS",
    "WRITERS",
    "Contents",
    "DataFileError",
    "check_names",
    "check_selected",
]

ID_COLUMNS = ("trajectory", "traj", "id")
TIME_COLUMNS = ("time", "t")


class DataFileError(ValueError):
    """An unusable trajectory file; the one-line message names the file, problem and fix."""


@dataclass
class Contents:
    """What a reader found in a file (numpy arrays), before any check."""

    trajectories: np.ndarray
    names: tuple[str, ...] | None = None
    dt: object = None
    times: np.ndarray | None = None
    test: np.ndarray | None = None
    test_times: np.ndarray | None = None
    ids: list[str] | None = None  # CSV trajectory ids, for messages


def check_names(path: str, names, where: str) -> tuple[str, ...]:
    """``names`` as a tuple of distinct non-empty strings; ``where`` says whose, in messages."""
    if isinstance(names, str) or not all(isinstance(name, str) and name for name in names):
        raise DataFileError(f"{path}: {where} must be a sequence of non-empty strings")
    names = tuple(names)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataFileError(f"{path}: {where} repeat {', '.join(repeated)}; make names distinct")
    return names


def check_selected(path: str, names, available) -> None:
    """Check that every one of ``names`` is among the ``available`` column names."""
    missing = [name for name in names if name not in available]
    if missing:
        raise DataFileError(
            f"{path}: no column named {', '.join(missing)}; the file has {', '.join(available)}"
        )


# ------------------------------------------------------------------------------ reading


def _unreadable(path: str, kind: str, error: Exception, fix: str) -> DataFileError:
    reason = (str(error).strip().splitlines() or [""])[0]
    return DataFileError(
        f"{path}: not a readable {kind} file ({type(error).__name__}: {reason}); it may be "
        f"truncated or corrupt: {fix}"
    )


def _np_load(path: str, magic: bytes):
    """``numpy.load`` without pickles, after checking the file starts with ``magic``."""
    with open(path, "rb") as f:
        if f.read(len(magic)) != magic:
            raise ValueError(f"it does not start with the signature {magic!r}")
    return np.load(path, allow_pickle=False)


def _read_npz(path: str, names) -> Contents:
    try:
        with _np_load(path, b"PK") as archive:  # a zip archive
            data = {key: archive[key] for key in archive.files}
    except Exception as e:
        raise _unreadable(path, ".npz", e, "write it again with numpy.savez") from None
    if "trajectories" not in data:
        raise DataFileError(
            f"{path}: no array 'trajectories' (the archive has {', '.join(sorted(data)) or 'none'})"
            "; save the (B, n, M) array under that key"
        )
    file_names = None if "names" not in data else tuple(map(str, np.ravel(data["names"])))
    test = data.get("test_trajectories")
    return Contents(data["trajectories"], file_names, data.get("dt"), data.get("times"), test)


def _read_npy(path: str, names) -> Contents:
    try:
        array = _np_load(path, b"\x93NUMPY")
    except Exception as e:
        raise _unreadable(path, ".npy", e, "write it again with numpy.save") from None
    return Contents(array)


def _read_nc(path: str, names) -> Contents:
    import xarray as xr  # here: only netCDF needs it, and it is slow to import

    try:
        ds = xr.load_dataset(path, engine="netcdf4", decode_times=False, decode_timedelta=False)
    except Exception as e:
        raise _unreadable(path, "netCDF", e, "write it again with xarray's to_netcdf") from None
    if "trajectories" not in ds.data_vars:
        raise DataFileError(
            f"{path}: no variable 'trajectories' (the file has "
            f"{', '.join(map(str, ds.data_vars)) or 'none'}); store the (B, n, M) array under it"
        )
    da = _nc_array(path, ds["trajectories"], ("trajectory", "time", "phase"))
    test, test_times = ds.get("test_trajectories"), None
    if test is not None:
        test = _nc_array(path, test, ("test_trajectory", "test_time", "phase"))
        test_times = test["test_time"].values if "test_time" in test.coords else None
    return Contents(
        da.values,
        names=tuple(map(str, da["phase"].values)) if "phase" in da.coords else None,
        dt=ds["dt"].values if "dt" in ds.variables else ds.attrs.get("dt"),
        times=da["time"].values if "time" in da.coords else None,
        test=None if test is None else test.values,
        test_times=test_times,
    )


def _nc_array(path: str, da, dims: tuple[str, str, str]):
    if set(da.dims) != set(dims):
        raise DataFileError(
            f"{path}: variable '{da.name}' has dims ({', '.join(map(str, da.dims))}); "
            f"expected the 3 dims ({', '.join(dims)}); rename or add them"
        )
    return da.transpose(*dims)


def _read_csv(path: str, names) -> Contents:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as e:
        raise _unreadable(path, "CSV text", e, "save it as UTF-8 text") from None
    if not rows:
        raise DataFileError(f"{path}: empty file; add a header line, e.g. trajectory,time,q1,p1")
    header = [c.strip() for c in rows[0][1]]
    id_col, time_col, phase_cols = _csv_columns(path, header, names)
    ids, times, values = _csv_values(path, rows[1:], header, id_col, time_col, phase_cols)
    return _csv_group(path, ids, times, values, tuple(header[j] for j in phase_cols))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_column(path: str, header: list[str], choices: tuple[str, ...], what: str) -> int:
    lower = [c.lower() for c in header]
    for choice in choices:
        if choice in lower:
            return lower.index(choice)
    raise DataFileError(
        f"{path}: no {what} column (named {' or '.join(choices)}); the columns are "
        f"{', '.join(header)}; rename the right one"
    )


def _csv_columns(path: str, header: list[str], names) -> tuple[int, int, list[int]]:
    """Indices of the id, time and phase columns (those in ``names``, else all others)."""
    if all(_is_number(c) for c in header):
        raise DataFileError(
            f"{path}: no header line (the first line holds numbers); add a first line naming "
            "the columns, e.g. trajectory,time,q1,p1"
        )
    check_names(path, header, "the header's columns")
    id_col = _csv_column(path, header, ID_COLUMNS, "trajectory id")
    time_col = _csv_column(path, header, TIME_COLUMNS, "time")
    others = [j for j in range(len(header)) if j not in (id_col, time_col)]
    if names is None:
        return id_col, time_col, others
    check_selected(path, names, [header[j] for j in others])
    return id_col, time_col, [header.index(name) for name in names]


def _csv_values(path: str, rows, header, id_col, time_col, phase_cols):
    """Ids (str), times ``(N,)`` and values ``(N, M)`` of the ``N`` data rows."""
    ids, times, values = [], [], []
    for number, (line, row) in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataFileError(
                f"{path}: row {number} (line {line}) has {len(row)} fields, the header "
                f"{len(header)}; give every row one value per column"
            )
        bad = [j for j in (time_col, *phase_cols) if not _is_number(row[j])]
        if bad:
            raise DataFileError(
                f"{path}: row {number} (line {line}): {header[bad[0]]} = {row[bad[0]]!r} is "
                "not a number; fix or remove that row"
            )
        ids.append(row[id_col].strip())
        times.append(float(row[time_col]))
        values.append([float(row[j]) for j in phase_cols])
    if not ids:
        raise DataFileError(f"{path}: a header but no data rows; add one row per state")
    values = np.array(values, dtype=np.float64).reshape(len(ids), len(phase_cols))
    return ids, np.array(times, dtype=np.float64), values


def _csv_group(path: str, ids, times, values, names) -> Contents:
    """Sort rows by id then time into ``(B, n, M)`` states and ``(B, n)`` times."""
    keys = np.array([float(i) for i in ids] if all(map(_is_number, ids)) else ids)
    order = np.lexsort((times, keys))
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if counts.min() != counts.max():
        short, long = ids[first[counts.argmin()]], ids[first[counts.argmax()]]
        raise DataFileError(
            f"{path}: trajectories have unequal lengths (id {short}: {counts.min()} points, "
            f"id {long}: {counts.max()}); trim them to a common length"
        )
    B, n = len(counts), int(counts[0])
    labels = [ids[order[b * n]] for b in range(B)]
    states, times = values[order].reshape(B, n, -1), times[order].reshape(B, n)
    return Contents(states, names, times=times, ids=labels)


READERS = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv, ".nc": _read_nc}


# ------------------------------------------------------------------------------ writing


def _write_npz(tmp, f: TrajectoryFile) -> None:
    arrays = {"trajectories": f.trajectories.numpy(), "dt": np.float64(f.dt)}
    arrays["names"] = np.array(f.names)
    if f.test is not None:
        arrays["test_trajectories"] = f.test.numpy()
    with open(tmp, "wb") as out:  # a file object: numpy adds no suffix to the name
        np.savez(out, **arrays)


def _write_npy(tmp, f: TrajectoryFile) -> None:
    with open(tmp, "wb") as out:
        np.save(out, f.trajectories.numpy())


def _write_csv(tmp, f: TrajectoryFile) -> None:
    times = (np.arange(f.trajectories.shape[1]) * f.dt).tolist()
    with open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["trajectory", "time", *f.names])
        for b, trajectory in enumerate(f.trajectories.tolist()):
            for t, state in zip(times, trajectory, strict=True):
                writer.writerow([b, repr(t), *map(repr, state)])  # repr: full precision


def _write_nc(tmp, f: TrajectoryFile) -> None:
    import xarray as xr

    data = {"trajectories": (("trajectory", "time", "phase"), f.trajectories.numpy())}
    coords = {"phase": list(f.names), "time": np.arange(f.trajectories.shape[1]) * f.dt}
    if f.test is not None:
        data["test_trajectories"] = (("test_trajectory", "test_time", "phase"), f.test.numpy())
        coords["test_time"] = np.arange(f.test.shape[1]) * f.dt
    xr.Dataset(data, coords=coords, attrs={"dt": f.dt}).to_netcdf(tmp, engine="netcdf4")


WRITERS = {".npz": _write_npz, ".npy": _write_npy, ".csv": _write_csv, ".nc": _write_nc}
