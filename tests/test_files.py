"""Tests for pyro_razor.systems.files: reading, validating, writing and splitting trajectories."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import xarray as xr

from pyro_razor.symmetry import phase_labels
from pyro_razor.systems.files import (
    DataFileError,
    TrajectoryFile,
    read_trajectories,
    split_trajectories,
    write_trajectories,
)

DT = 0.1
NAMES = ("x", "y", "px", "py")


def _trajectories(B=3, n=6, M=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(B, n, M, generator=generator, dtype=torch.float64)


def _error(path, match, function=read_trajectories, *args, **kwargs) -> str:
    """Call ``function(path, ...)``, expect a one-line DataFileError naming ``path``."""
    with pytest.raises(DataFileError, match=match) as info:
        function(path, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


def _write_csv(path, header, rows):
    lines = [",".join(header)] + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".nc"])
@pytest.mark.parametrize("names", [None, NAMES])
def test_round_trip_gives_the_same_arrays_dt_and_names(tmp_path, suffix, names):
    path = tmp_path / f"data{suffix}"
    x = _trajectories()
    write_trajectories(path, x, DT, names=names)
    f = read_trajectories(path)
    assert isinstance(f, TrajectoryFile) and f.path == str(path)
    assert f.trajectories.dtype == torch.float64 and torch.equal(f.trajectories, x)
    assert f.dt == DT and f.test is None
    assert f.names == (names or ("q1", "q2", "p1", "p2"))
    assert f.phase_dim == 4 and f.n_transitions == 3 * 5


@pytest.mark.parametrize("suffix", [".npz", ".nc"])
def test_round_trip_with_a_test_set(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    x, test = _trajectories(), _trajectories(B=2, n=9, seed=1)
    write_trajectories(path, x, DT, names=NAMES, test=test)
    f = read_trajectories(path, dt=DT)
    assert torch.equal(f.trajectories, x) and torch.equal(f.test, test)
    assert f.test.dtype == torch.float64 and f.names == NAMES and f.dt == DT


def test_npy_round_trip_needs_dt_and_names_label_the_columns(tmp_path):
    path = tmp_path / "data.npy"
    x = _trajectories(M=2)
    write_trajectories(path, x, DT)
    f = read_trajectories(path, dt=DT)
    assert torch.equal(f.trajectories, x) and f.dt == DT and f.names == ("q1", "p1")
    assert read_trajectories(path, dt=DT, names=("theta", "L")).names == ("theta", "L")
    _error(path, r"no dt in the file; pass --dt or dt = \.\.\. in the config")


@pytest.mark.parametrize("dt", [0.1, 0.05, 0.2, 0.7])
def test_csv_gives_back_dt_exactly(tmp_path, dt):
    path = tmp_path / "data.csv"
    times = np.arange(7) * dt
    assert times[-1] / 6 != dt  # the mean step is an ulp off for these dt: not good enough
    write_trajectories(path, _trajectories(B=2, n=7), dt)
    assert read_trajectories(path).dt == dt


def test_default_names():
    assert tuple(phase_labels(2)) == ("q1", "p1")
    assert tuple(phase_labels(6)) == ("q1", "q2", "q3", "p1", "p2", "p3")
    with pytest.raises(ValueError, match="even"):
        phase_labels(3)


# ------------------------------------------------------------------------------ CSV layout


def test_csv_rows_in_any_order_are_sorted_by_numeric_id_then_time(tmp_path):
    path = tmp_path / "data.csv"
    ids, n, dt, t0 = [10, 2, 1], 5, 0.25, 5.0
    values = {i: np.arange(2 * n, dtype=float).reshape(n, 2) + 100 * i for i in ids}
    rows = [[i, repr(t0 + k * dt), *values[i][k]] for i in ids for k in range(n)]
    random.Random(0).shuffle(rows)
    _write_csv(path, ["traj", "t", "x", "px"], rows)
    f = read_trajectories(path)
    expected = np.stack([values[1], values[2], values[10]])  # 1 < 2 < 10, not "10" < "2"
    assert torch.equal(f.trajectories, torch.from_numpy(expected))
    assert f.names == ("x", "px") and f.dt == dt


def test_csv_string_ids_and_id_time_header_case(tmp_path):
    path = tmp_path / "data.csv"
    rows = [["b", 0.0, 1, 2], ["a", 0.5, 5, 6], ["b", 0.5, 3, 4], ["a", 0.0, 7, 8]]
    _write_csv(path, ["ID", "Time", "q", "p"], rows)
    f = read_trajectories(path)
    assert f.trajectories.tolist() == [[[7, 8], [5, 6]], [[1, 2], [3, 4]]] and f.dt == 0.5


def test_csv_names_select_and_reorder_columns(tmp_path):
    path = tmp_path / "data.csv"
    header = ["trajectory", "time", "x", "y", "px", "py", "energy"]
    rows = [[0, k * 0.5, k, 10 + k, 20 + k, 30 + k, -1] for k in range(3)]
    _write_csv(path, header, rows)
    f = read_trajectories(path, names=("y", "py"))
    assert f.names == ("y", "py") and f.trajectories[0, :, 1].tolist() == [30, 31, 32]
    f = read_trajectories(path, names=("y", "x", "py", "px"))
    assert f.trajectories[0, 0].tolist() == [10, 0, 30, 20]
    _error(path, r"M = 5 \(x, y, px, py, energy\) is odd.* choose the phase columns by name")
    _error(path, r"no column named z; the file has x, y, px, py, energy", names=("x", "z"))
    _error(path, "no column named time", names=("x", "time"))  # not a phase column


def test_npz_names_select_columns_and_times_give_dt(tmp_path):
    path = tmp_path / "data.npz"
    x = _trajectories(B=2, n=4)
    times = 3.0 + 0.2 * np.arange(4) + np.array([[0.0], [7.0]])  # (B, n), other starts
    np.savez(path, trajectories=x.numpy(), names=np.array(NAMES), times=times)
    f = read_trajectories(path, names=("y", "py"))
    assert torch.equal(f.trajectories, x[..., [1, 3]]) and f.dt == pytest.approx(0.2, rel=1e-12)
    np.savez(path, trajectories=x.numpy(), times=np.arange(4) * 0.2, dt=0.3)
    _error(path, r"the step 0\.2.* of the times disagrees with the stored dt 0\.3")
    np.savez(path, trajectories=x.numpy(), times=np.arange(5) * 0.2)
    _error(path, r"times have dtype float64 and shape \(5,\); store numbers of shape \(4,\)")


def test_nc_dt_from_time_coordinate_and_transposed_dims(tmp_path):
    path = tmp_path / "data.nc"
    x = _trajectories(B=2, n=5)
    da = xr.DataArray(
        x.numpy().transpose(2, 0, 1),
        dims=("phase", "trajectory", "time"),
        coords={"phase": list(NAMES), "time": 0.05 * np.arange(5)},
    )
    xr.Dataset({"trajectories": da}).to_netcdf(path)
    f = read_trajectories(path)
    assert torch.equal(f.trajectories, x) and f.names == NAMES and f.dt == 0.05
    dims = ("trajectory", "time", "phase")
    xr.Dataset({"trajectories": (dims, x.numpy()), "dt": 0.2}).to_netcdf(path)
    f = read_trajectories(path)
    assert f.dt == 0.2 and f.names == ("q1", "q2", "p1", "p2")
    test = (("test_trajectory", "test_time", "phase"), x.numpy())
    ds = xr.Dataset({"trajectories": (dims, x.numpy()), "test_trajectories": test})
    ds.assign_coords(test_time=0.1 * np.arange(5)).assign_attrs(dt=0.2).to_netcdf(path)
    _error(path, r"the step 0\.1 of the test times disagrees with the stored dt 0\.2")


def test_caller_dt_must_agree_with_the_file(tmp_path):
    path = tmp_path / "data.npz"
    write_trajectories(path, _trajectories(), DT)
    assert read_trajectories(path, dt=DT * (1 + 1e-9)).dt == DT  # within 1e-6: the file's
    _error(path, r"the dt given \(0\.2\) disagrees with the file's dt \(0\.1\)", dt=0.2)
    _error(path, r"the dt given is -1\.0; dt must be a positive finite number", dt=-1.0)


# ------------------------------------------------------------------------ unreadable files


def test_missing_file_and_unknown_suffix(tmp_path):
    _error(tmp_path / "nope.npz", "no such file")
    path = tmp_path / "data.txt"
    path.write_text("1 2 3")
    _error(path, r"unknown file type '\.txt'; use \.npz, \.npy, \.csv, \.nc")


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".nc"])
def test_truncated_files(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    write_trajectories(path, _trajectories(B=20, n=50), DT)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _error(path, r"not a readable .* file .*truncated or corrupt: write it again", dt=DT)


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".nc", ".csv"])
def test_random_bytes(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    _error(path, "not a readable .* file .*corrupt")


def test_missing_keys_list_what_exists(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, states=np.zeros((2, 3, 2)), dt=0.1)
    _error(path, r"no array 'trajectories' \(the archive has dt, states\)")
    path = tmp_path / "data.nc"
    xr.Dataset({"states": (("a", "b", "c"), np.zeros((2, 3, 2)))}).to_netcdf(path)
    _error(path, r"no variable 'trajectories' \(the file has states\)")
    xr.Dataset({"trajectories": (("a", "time", "phase"), np.zeros((2, 3, 2)))}).to_netcdf(path)
    _error(path, r"dims \(a, time, phase\); expected the 3 dims \(trajectory, time, phase\)")


def test_csv_structure_errors(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("")
    _error(path, "empty file")
    _write_csv(path, ["0", "0.0", "1.0", "2.0"], [[0, 0.1, 1.0, 2.0]])
    _error(path, "no header line")
    _write_csv(path, ["trajectory", "time", "x", "px"], [])
    _error(path, "no data rows")
    _write_csv(path, ["run", "time", "x", "px"], [[0, 0.0, 1, 2]])
    _error(path, r"no trajectory id column \(named trajectory or traj or id\); the columns are")
    _write_csv(path, ["trajectory", "step", "x", "px"], [[0, 0, 1, 2]])
    _error(path, r"no time column \(named time or t\)")
    _write_csv(path, ["trajectory", "time", "x", "x"], [[0, 0.0, 1, 2]])
    _error(path, "the header's columns repeat x")
    _write_csv(path, ["trajectory", "time", "x", "px"], [[0, 0.0, 1, 2], [0, 0.1, 1]])
    _error(path, r"row 2 \(line 3\) has 3 fields, the header 4")
    _write_csv(path, ["trajectory", "time", "x", "px"], [[0, 0.0, 1, 2], [0, 0.1, 1, "abc"]])
    _error(path, r"row 2 \(line 3\): px = 'abc' is not a number")


def test_csv_unequal_lengths(tmp_path):
    path = tmp_path / "data.csv"
    rows = [[i, k * 0.1, 1, 2] for i, n in ((0, 4), (1, 3), (2, 4)) for k in range(n)]
    _write_csv(path, ["trajectory", "time", "x", "px"], rows)
    _error(path, r"unequal lengths \(id 1: 3 points, id 0: 4\); trim them to a common length")


# ------------------------------------------------------------------------ invalid contents


def test_shape_errors(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((5, 4)))
    _error(path, r"trajectories has 2 dimensions \(shape \(5, 4\)\); expected 3", dt=DT)
    np.save(path, np.zeros((3, 1, 4)))
    _error(path, "1 point per trajectory; at least 2 states", dt=DT)
    np.save(path, np.zeros((0, 5, 4)))
    _error(path, "holds no trajectories", dt=DT)
    np.save(path, np.zeros((2, 5, 3)))
    _error(path, r"phase dimension M = 3 is odd; columns must be d positions then d momenta "
           r"\(M = 2d\): add the missing ones$", dt=DT)  # an .npy has no names to choose by
    np.save(path, np.array([[["a", "b"]] * 2]))
    _error(path, "dtype <U1; store real numbers", dt=DT)
    path = tmp_path / "data.npz"
    np.savez(path, trajectories=np.zeros((2, 5, 4)), test_trajectories=np.zeros((1, 5, 2)))
    _error(path, "different numbers of columns|columns, trajectories 4", dt=DT)


def test_name_errors(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, trajectories=np.zeros((2, 5, 4)), dt=DT, names=np.array(["a", "b", "c"]))
    _error(path, "the file has 3 names for M = 4 columns")
    np.savez(path, trajectories=np.zeros((2, 5, 4)), dt=DT, names=np.array(["a", "b", "a", "c"]))
    _error(path, "the file's names repeat a")
    np.savez(path, trajectories=np.zeros((2, 5, 4)), dt=DT)
    _error(path, "2 names given for M = 4 columns", names=("q", "p"))
    _error(path, "the names given repeat p, q; make names distinct", names=("q", "q", "p", "p"))


def test_nan_and_inf_are_counted_with_the_first_trajectory(tmp_path):
    path = tmp_path / "data.npz"
    x = _trajectories(B=4).numpy()
    x[2, 1, 0], x[2, 3, 3], x[3, 0, 1] = np.nan, np.inf, -np.inf
    np.savez(path, trajectories=x, dt=DT)
    _error(path, r"trajectories contain 3 NaN/inf values in 2 trajectories, first trajectory 2")
    path = tmp_path / "data.csv"
    rows = [[i, k * 0.1, "nan" if (i, k) == (7, 1) else 1.0, 2.0] for i in (3, 7) for k in range(3)]
    _write_csv(path, ["trajectory", "time", "x", "px"], rows)
    _error(path, r"1 NaN/inf values in 1 trajectories, first trajectory 1 \(id 7\)")


def test_time_step_errors(tmp_path):
    path = tmp_path / "data.csv"
    header = ["trajectory", "time", "x", "px"]
    irregular = [0.0, 0.1, 0.2, 0.35, 0.4]
    _write_csv(path, header, [[i, t, 1, 2] for i in (0, 1) for t in irregular])
    message = _error(path, r"irregular time steps, largest deviation 0\.5 \(relative\)")
    assert "at time 0.2" in message and "resample" in message
    rows = [[i, k * (0.1 if i == 0 else 0.2), 1, 2] for i in (0, 1) for k in range(4)]
    _write_csv(path, header, rows)
    _error(path, r"time steps differ between trajectories: trajectory 0 \(id 0\) has dt 0\.1")
    _write_csv(path, header, [[0, t, 1, 2] for t in (0.0, 0.1, 0.1, 0.2)])
    _error(path, r"times are not finite and increasing .*from 0\.1 to 0\.1")
    path = tmp_path / "data.npz"
    np.savez(path, trajectories=np.zeros((2, 5, 4)))
    _error(path, r"no dt in the file; pass --dt or dt = \.\.\. in the config")
    np.savez(path, trajectories=np.zeros((2, 5, 4)), dt=-0.1)
    _error(path, "the dt stored in the file is -0.1; dt must be a positive finite number")


# --------------------------------------------------------------------------------- writing


def test_write_rejects_what_the_format_cannot_hold_and_writes_nothing(tmp_path):
    x = _trajectories()
    _error(tmp_path / "a.csv", "cannot hold a test set", write_trajectories, x, DT, test=x)
    _error(tmp_path / "a.npy", "cannot hold a test set", write_trajectories, x, DT, test=x)
    _error(tmp_path / "a.npy", "cannot store names", write_trajectories, x, DT, names=NAMES)
    _error(tmp_path / "a.nc", "3 names given for M = 4", write_trajectories, x, DT, NAMES[:3])
    _error(tmp_path / "a.txt", "unknown file type", write_trajectories, x, DT)
    names = ("trajectory", "y", "px", "py")
    _error(tmp_path / "a.csv", "name the CSV id and time", write_trajectories, x, DT, names)
    assert list(tmp_path.iterdir()) == []
    path = tmp_path / "data.npz"
    write_trajectories(path, x, DT)
    bad = x.clone()
    bad[1, 2, 3] = float("nan")
    _error(path, "1 NaN/inf values", write_trajectories, bad, DT)
    _error(path, "M = 3 is odd", write_trajectories, x[..., :3], DT)
    _error(path, "positive finite", write_trajectories, x, 0.0)
    assert torch.equal(read_trajectories(path).trajectories, x)  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz"]  # no temporary files


# ------------------------------------------------------------------------------- splitting


def test_split_is_seeded_disjoint_and_covers_every_trajectory():
    B = 10
    x = torch.arange(B, dtype=torch.float64).reshape(B, 1, 1).expand(B, 3, 2).contiguous()
    train, test = split_trajectories(x, test_fraction=0.2, seed=0)
    assert train.shape == (8, 3, 2) and test.shape == (2, 3, 2)
    train_ids, test_ids = train[:, 0, 0].tolist(), test[:, 0, 0].tolist()
    assert sorted(train_ids + test_ids) == list(range(B))  # disjoint and complete
    assert train_ids == sorted(train_ids) and test_ids == sorted(test_ids)
    again = split_trajectories(x, test_fraction=0.2, seed=0)
    assert torch.equal(again[0], train) and torch.equal(again[1], test)
    tests = {tuple(split_trajectories(x, 0.2, seed)[1][:, 0, 0].tolist()) for seed in range(5)}
    assert len(tests) > 1  # the seed changes the split


def test_split_keeps_one_trajectory_on_each_side():
    x = _trajectories(B=3)
    assert [len(part) for part in split_trajectories(x, test_fraction=0.01)] == [2, 1]
    assert [len(part) for part in split_trajectories(x, test_fraction=0.99)] == [1, 2]
    assert [len(part) for part in split_trajectories(x[:2])] == [1, 1]
    with pytest.raises(ValueError, match="1 trajectory cannot be split"):
        split_trajectories(x[:1])
    with pytest.raises(ValueError, match=r"not in \(0, 1\)|must be in \(0, 1\)"):
        split_trajectories(x, test_fraction=1.0)
