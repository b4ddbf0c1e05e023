"""Tests for pyro_razor.systems.data: exact trajectories, dataset specs, reproducibility, cache.

All numerics in float64. Tolerances are stated at each assertion.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from pyro_razor.systems import (
    DatasetSpec,
    HamiltonianSystem,
    TrajectoryData,
    default_cache_dir,
    gaussian_initial,
    make_dataset,
    make_system,
    paper_dataset_spec,
    simple_harmonic_oscillator,
    simulate,
    transitions,
)
from pyro_razor.systems import data as data_module

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _small(system: str = "sho", **kw) -> DatasetSpec:
    base = dict(n_train=4, train_points=6, n_test=3, test_points=5, dt=0.25, seed=1)
    base.update(kw)
    return DatasetSpec(system, **base)


def _relative_energy_drift(system: HamiltonianSystem, traj: torch.Tensor) -> float:
    """max_t |H(x_t) - H(x_0)| / mean |H(x_0)| over a batch of trajectories."""
    E = system.H(traj)
    return ((E - E[:, :1]).abs().max() / E[:, 0].abs().mean()).item()


# ---------------------------------------------------------------------------- simulate


def test_simulate_matches_exact_sho_solution():
    system = simple_harmonic_oscillator()
    x0 = torch.randn(5, 2, generator=_gen(0), dtype=F64)
    traj = simulate(system, x0, 30, 0.2)
    assert traj.shape == (5, 30, 2) and traj.dtype == F64
    t = 0.2 * torch.arange(30, dtype=F64)[None, :]
    q0, p0 = x0[:, :1], x0[:, 1:]
    exact_q = q0 * torch.cos(t) + p0 * torch.sin(t)
    exact_p = p0 * torch.cos(t) - q0 * torch.sin(t)
    assert torch.equal(traj[:, 0], x0)
    assert (traj[..., 0] - exact_q).abs().max().item() < 1e-9
    assert (traj[..., 1] - exact_p).abs().max().item() < 1e-9


def test_simulate_batch_equals_single_trajectories():
    system = make_system("nbody")
    x0 = system.sample(4, _gen(1))
    batch = simulate(system, x0, 8, 0.3)
    for i in range(4):
        single = simulate(system, x0[i : i + 1], 8, 0.3)
        assert (single[0] - batch[i]).abs().max().item() < 1e-8


def test_simulate_accepts_float32_input_and_returns_float64():
    system = simple_harmonic_oscillator()
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    traj = simulate(system, x0, 3, math.pi / 2)
    assert traj.dtype == F64
    # A quarter period maps (1, 0) to (0, -1) (tolerance 1e-9).
    assert torch.allclose(traj[0, 1], torch.tensor([0.0, -1.0], dtype=F64), atol=1e-9)
    assert torch.allclose(traj[0, 2], torch.tensor([-1.0, 0.0], dtype=F64), atol=1e-9)


def test_simulate_rejects_bad_input():
    system = make_system("oscillators", n=2)
    good = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, 4\).*got \(4,\)"):
        simulate(system, torch.zeros(4, dtype=F64), 5, 0.1)
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, 4\).*got \(3, 2\)"):
        simulate(system, torch.zeros(3, 2, dtype=F64), 5, 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        simulate(system, torch.tensor([[0.0, math.nan, 0.0, 0.0]], dtype=F64), 5, 0.1)
    with pytest.raises(ValueError, match="n_points must be an int >= 2"):
        simulate(system, good, 1, 0.1)
    with pytest.raises(ValueError, match="dt must be a positive finite number"):
        simulate(system, good, 5, 0.0)
    with pytest.raises(ValueError, match="rtol must be a positive"):
        simulate(system, good, 5, 0.1, rtol=-1.0)
    with pytest.raises(TypeError, match="HamiltonianSystem"):
        simulate("sho", good, 5, 0.1)


def test_simulate_reports_blow_up_clearly():
    # H = p^2/2 - q^4/4: q'' = q^3 escapes to infinity in finite time (about 1.85 from q=1).
    system = HamiltonianSystem(
        "unstable", 2, lambda x: x[..., 1] ** 2 / 2 - x[..., 0] ** 4 / 4, gaussian_initial(2)
    )
    x0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    with pytest.raises(RuntimeError, match="ODE solver failed for system 'unstable'"):
        simulate(system, x0, 5, 1.0)


def test_simulate_reports_non_finite_vector_field():
    # Constant force towards q = 2, where a 0 * sqrt(2 - q) term makes the gradient NaN.
    wall = HamiltonianSystem(
        "wall", 2, lambda x: x[..., 1] ** 2 / 2 - x[..., 0] + 0 * torch.sqrt(2 - x[..., 0]),
        gaussian_initial(2),
    )
    x0 = torch.tensor([[0.0, 0.0]], dtype=F64)
    with pytest.raises(RuntimeError, match="system 'wall' became non-finite at t = "):
        simulate(wall, x0, 5, 1.0)
    # Before reaching the wall (q = t^2/2 < 2 for t < 2) the motion is exact.
    ok = simulate(wall, x0, 3, 0.5)
    assert torch.allclose(ok[0, 2], torch.tensor([0.5, 1.0], dtype=F64), atol=1e-10)


def test_transitions_pairs_consecutive_states():
    traj = torch.arange(2 * 4 * 2, dtype=F64).reshape(2, 4, 2)
    states, nxt = transitions(traj)
    assert states.shape == nxt.shape == (2, 3, 2)
    assert torch.equal(states[:, 1:], nxt[:, :-1])
    assert torch.equal(states[:, 0], traj[:, 0]) and torch.equal(nxt[:, -1], traj[:, -1])
    with pytest.raises(ValueError, match=r"shape \(T, P, M\)"):
        transitions(traj[0])
    with pytest.raises(ValueError, match="at least 2 points"):
        transitions(traj[:, :1])


# ---------------------------------------------------------------------------- energy drift


@pytest.mark.parametrize(
    "system, params",
    [
        ("sho", {}),
        ("oscillators", {"n": 1}),
        ("oscillators", {"n": 3}),
        ("oscillators", {"n": 5}),
        ("nbody", {"n": 3, "dim": 2}),
        ("nbody", {"n": 3, "dim": 3}),
    ],
)
def test_generated_data_conserves_energy(system, params, tmp_path):
    spec = DatasetSpec(
        system, params, n_train=12, train_points=51, n_test=4, test_points=11, dt=0.3, seed=2,
        extra_test_sets=("moved", "wider") if system == "nbody" else (),
    )
    data = make_dataset(spec, cache_dir=tmp_path)
    built = spec.make_system()
    for traj in (data.train, data.test, *data.extra.values()):
        assert _relative_energy_drift(built, traj) < 1e-8


def test_user_defined_quartic_oscillator_end_to_end():
    quartic = HamiltonianSystem(
        "quartic", 2, lambda x: x[..., 1] ** 2 / 2 + x[..., 0] ** 4 / 4, gaussian_initial(2)
    )
    x0 = quartic.sample(10, _gen(3))
    traj = simulate(quartic, x0, 40, 0.3)
    assert traj.shape == (10, 40, 2)
    assert _relative_energy_drift(quartic, traj) < 1e-8
    states, nxt = transitions(traj)
    assert states.shape == (10, 39, 2)
    # The data is really moving: q changes appreciably between consecutive points.
    assert (nxt - states).abs().mean().item() > 0.05


def test_user_defined_pendulum_end_to_end():
    pendulum = HamiltonianSystem(
        "pendulum", 2, lambda x: x[..., 1] ** 2 / 2 - torch.cos(x[..., 0]), gaussian_initial(2)
    )
    traj = simulate(pendulum, pendulum.sample(8, _gen(4)), 30, 0.2)
    assert _relative_energy_drift(pendulum, traj) < 1e-8
    # Small-angle check: a pendulum at q0 = 0.01 oscillates with period 2 pi (to 1e-4 relative).
    small = simulate(pendulum, torch.tensor([[0.01, 0.0]], dtype=F64), 2, 2 * math.pi)
    assert torch.allclose(small[0, 1], small[0, 0], atol=1e-6)


# ---------------------------------------------------------------------------- specs


def test_spec_normalises_params_and_validates():
    spec = DatasetSpec("nbody", {"n": 3, "masses": [1, 1, 1]}, extra_test_sets=["moved"])
    assert spec.system_params == (("masses", (1, 1, 1)), ("n", 3))
    assert spec.extra_test_sets == ("moved",)
    assert DatasetSpec("nbody", (("n", 3),)).system_params == (("n", 3),)
    hash(spec)  # frozen and hashable
    with pytest.raises(ValueError, match=r"unknown system 'pendulum'; known systems"):
        DatasetSpec("pendulum")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['k'\] for system 'sho'"):
        DatasetSpec("sho", {"k": 1.0})
    with pytest.raises(ValueError, match="n_train must be a positive int"):
        DatasetSpec("sho", n_train=0)
    with pytest.raises(ValueError, match="test_points must be an int >= 2"):
        DatasetSpec("sho", test_points=1)
    with pytest.raises(ValueError, match="dt must be positive and finite"):
        DatasetSpec("sho", dt=-0.1)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        DatasetSpec("sho", seed=-1)
    with pytest.raises(ValueError, match=r"has no test set 'moved'; available: \(\)"):
        DatasetSpec("sho", extra_test_sets=("moved",))
    with pytest.raises(TypeError, match="parameter values must be numbers"):
        DatasetSpec("oscillators", {"n": object()})


def test_spec_key_is_stable_and_sensitive_to_every_field():
    spec = _small("nbody", extra_test_sets=("moved",))
    key = spec.key()
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == _small("nbody", extra_test_sets=("moved",)).key()
    # Defaults filled in: {} and the explicit defaults share a key.
    explicit = _small("nbody", system_params={"n": 3, "dim": 2}, extra_test_sets=("moved",))
    assert explicit.key() == key
    changes = dict(
        system_params={"n": 4}, n_train=5, train_points=7, n_test=4, test_points=6, dt=0.3,
        seed=2, extra_test_sets=("moved", "wider"), rtol=1e-10, atol=1e-10,
    )
    keys = {key}
    for name, value in changes.items():
        changed = _small("nbody", **{"extra_test_sets": ("moved",), name: value})
        keys.add(changed.key())
    assert len(keys) == len(changes) + 1


def test_paper_specs():
    sho = paper_dataset_spec("sho")
    assert (sho.n_train, sho.train_points, sho.n_test, sho.test_points, sho.dt) == (
        7, 5, 100, 21, 0.2,
    )
    osc = paper_dataset_spec("oscillators")
    assert osc.system_params == (("n", 3),) and osc.dt == 0.3
    assert (osc.n_train, osc.train_points, osc.n_test, osc.test_points) == (200, 51, 100, 51)
    nb = paper_dataset_spec("nbody")
    assert nb.extra_test_sets == ("moved", "wider")
    assert nb.make_system().phase_dim == 12
    # N = trajectories x transitions, as in DESIGN.md section 4.
    assert sho.n_train * (sho.train_points - 1) == 28
    assert nb.n_train * (nb.train_points - 1) == 10_000
    quick = paper_dataset_spec("nbody", n_train=20, seed=5)
    assert quick.n_train == 20 and quick.seed == 5 and quick.dt == 0.3
    with pytest.raises(ValueError, match=r"no paper setup for system 'pendulum'"):
        paper_dataset_spec("pendulum")
    with pytest.raises(ValueError, match=r"unknown DatasetSpec field\(s\) \['n_trains'\]"):
        paper_dataset_spec("sho", n_trains=3)


# ---------------------------------------------------------------------------- datasets


def test_make_dataset_shapes_and_streams(tmp_path):
    spec = _small("nbody", extra_test_sets=("moved", "wider"))
    data = make_dataset(spec, cache_dir=tmp_path)
    assert isinstance(data, TrajectoryData) and data.spec == spec
    assert data.train.shape == (4, 6, 12) and data.test.shape == (3, 5, 12)
    assert set(data.extra) == {"moved", "wider"}
    assert all(t.shape == (3, 5, 12) and t.dtype == F64 for t in data.extra.values())
    assert data.phase_dim == 12 and data.n_transitions == 4 * 5
    # Initial conditions are the system's samplers on their own named streams.
    system = spec.make_system()
    for name, which, tensor in [("train", "train", data.train), ("test", "train", data.test),
                                ("extra:moved", "moved", data.extra["moved"]),
                                ("extra:wider", "wider", data.extra["wider"])]:
        generator = _gen(data_module._stream_seed(spec.seed, name))
        assert torch.equal(tensor[:, 0], system.sample(tensor.shape[0], generator, which))
    # Separate streams: changing the test size leaves the training data unchanged.
    other = make_dataset(_small("nbody", n_test=5), use_cache=False)
    assert torch.equal(other.train, data.train)


def test_make_dataset_is_reproducible_and_seed_dependent(tmp_path):
    a = make_dataset(_small(), use_cache=False)
    b = make_dataset(_small(), use_cache=False)
    c = make_dataset(_small(seed=2), use_cache=False)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert (a.train - c.train).abs().max().item() > 0.1
    assert not torch.equal(a.train[:3, 0], a.test[:, 0])  # train and test streams differ
    assert list(tmp_path.iterdir()) == []  # use_cache=False wrote nothing


def test_cache_round_trip_is_atomic(tmp_path, monkeypatch):
    spec = _small("oscillators", system_params={"n": 2})
    first = make_dataset(spec, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"oscillators-{spec.key()}.pt"]  # no temp files left behind

    def fail(*args, **kwargs):
        raise AssertionError("simulate must not be called when the cache is valid")

    monkeypatch.setattr(data_module, "simulate", fail)
    second = make_dataset(spec, cache_dir=tmp_path)
    assert torch.equal(first.train, second.train) and torch.equal(first.test, second.test)
    assert second.spec == spec


def test_corrupt_cache_is_regenerated_with_warning(tmp_path):
    spec = _small()
    good = make_dataset(spec, cache_dir=tmp_path)
    path = tmp_path / f"sho-{spec.key()}.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.warns(RuntimeWarning, match="unreadable cache file"):
        again = make_dataset(spec, cache_dir=tmp_path)
    assert torch.equal(again.train, good.train)
    # The file was rewritten and loads cleanly now (no warning).
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(make_dataset(spec, cache_dir=tmp_path).test, good.test)
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_cache_with_wrong_contents_is_regenerated(tmp_path):
    spec = _small()
    good = make_dataset(spec, cache_dir=tmp_path)
    path = tmp_path / f"sho-{spec.key()}.pt"
    blob = torch.load(path, weights_only=True)
    blob["train"] = blob["train"][:2]
    torch.save(blob, path)
    with pytest.warns(RuntimeWarning, match="wrong shape"):
        again = make_dataset(spec, cache_dir=tmp_path)
    assert torch.equal(again.train, good.train)


def test_default_cache_dir_respects_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PYRO_RAZOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pyro-razor"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "pyro-razor"
    # The default cache is used when no directory is given.
    monkeypatch.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path / "env"))
    spec = _small()
    make_dataset(spec)
    assert (tmp_path / "env" / f"sho-{spec.key()}.pt").exists()


def test_make_dataset_rejects_non_spec():
    with pytest.raises(TypeError, match="spec must be a DatasetSpec"):
        make_dataset({"system": "sho"})
