r"""Exact trajectory data: integrate Hamilton's equations to high accuracy, split and cache.

:func:`simulate` integrates ``x' = J grad H(x)`` (paper eq. 1) for a batch of initial
conditions as ONE ODE on the flattened state with scipy's ``DOP853`` (8th-order Dormand-Prince,
adaptive), evaluating the right-hand side batched in torch float64 through
:meth:`HamiltonianSystem.vector_field`. Points are reported every ``dt`` by the solver's dense
output. scipy measures the local error as an RMS over all ``n M`` components, so one
trajectory's error may exceed the tolerance by up to ``sqrt(n)``; with the default
``rtol = atol = 1e-12`` that still leaves errors far below anything the models resolve
(the energy drift of every built-in system stays below 1e-8 relative; see the tests).

A dataset is described by a frozen :class:`DatasetSpec` and built by :func:`make_dataset`,
reproducibly from ``spec.seed`` and cached on disk under :func:`default_cache_dir`.

Counting convention: ``*_points`` counts states per trajectory, so a trajectory of
``P`` points has ``P - 1`` transitions. The paper's "simulated 4 data points" / "50 data
points" are steps in the reference code (it returns ``steps + 1`` states, giving the
``N = 7 x 4 = 28`` and ``N = 200 x 50 = 10,000`` transitions of DESIGN.md section 4), so
:func:`paper_dataset_spec` uses 5, 21 and 51 points.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp

from pyro_razor.atomic import atomic_path

from .base import HamiltonianSystem
from .builtin import SYSTEMS, is_import_path, make_system

__all__ = [
    "DATA_FORMAT_VERSION",
    "DatasetSpec",
    "TrajectoryData",
    "default_cache_dir",
    "make_dataset",
    "paper_dataset_spec",
    "simulate",
    "transitions",
]

DATA_FORMAT_VERSION = 1
"""Bumped whenever generated data would change for the same spec; part of every cache key."""


# ---------------------------------------------------------------------------- simulation


def simulate(
    system: HamiltonianSystem,
    x0: torch.Tensor,
    n_points: int,
    dt: float,
    rtol: float = 1e-12,
    atol: float = 1e-12,
) -> torch.Tensor:
    r"""Integrate ``x' = J grad H(x)`` from each initial condition, sampling every ``dt``.

    All trajectories form one ODE on the flattened ``(n M,)`` state, solved by scipy
    ``solve_ivp(method="DOP853")``; the right-hand side is one batched call of
    ``system.vector_field`` on an ``(n, M)`` float64 CPU tensor.

    Args:
        system: the Hamiltonian system.
        x0: ``(n, M)`` finite initial conditions (any float dtype/device).
        n_points: states per trajectory (>= 2), at times ``0, dt, ..., (n_points - 1) dt``.
        dt: time between consecutive states (> 0).
        rtol, atol: solver tolerances (> 0).

    Returns:
        ``(n, n_points, M)`` float64 on ``x0``'s device; ``[:, 0]`` equals ``x0``.

    Raises:
        ValueError: bad shapes or arguments, non-finite ``x0``.
        RuntimeError: the solver failed or the solution became non-finite.
    """
    if not isinstance(system, HamiltonianSystem):
        raise TypeError(
            f"simulate: system must be a HamiltonianSystem, got {type(system).__name__}"
        )
    M = system.phase_dim
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"simulate: x0 must be a torch.Tensor, got {type(x0).__name__}")
    if x0.dim() != 2 or x0.shape[1] != M or x0.shape[0] < 1:
        raise ValueError(
            f"simulate: x0 must have shape (n, {M}) with n >= 1 for system {system.name!r} "
            f"(M = {M}), got {tuple(x0.shape)}; use x0[None] for a single initial condition"
        )
    if not x0.is_floating_point() or not bool(torch.isfinite(x0).all()):
        raise ValueError("simulate: x0 must be finite floating point (it contains NaN or inf)")
    if not isinstance(n_points, int) or isinstance(n_points, bool) or n_points < 2:
        raise ValueError(f"simulate: n_points must be an int >= 2, got {n_points!r}")
    for name, value in (("dt", dt), ("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"simulate: {name} must be a positive finite number, got {value!r}")

    n = x0.shape[0]
    start = x0.detach().to(device="cpu", dtype=torch.float64)
    times = np.arange(n_points, dtype=np.float64) * float(dt)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(y).reshape(n, M)
        if not bool(torch.isfinite(x).all()):
            raise _NonFinite(t)
        with torch.no_grad():
            v = system.vector_field(x)
        if not bool(torch.isfinite(v).all()):
            raise _NonFinite(t)
        return v.reshape(-1).numpy()

    try:
        sol = solve_ivp(
            rhs,
            (0.0, float(times[-1])),
            start.reshape(-1).numpy().copy(),
            method="DOP853",
            t_eval=times,
            rtol=rtol,
            atol=atol,
        )
    except _NonFinite as err:
        raise RuntimeError(
            f"simulate: the state or vector field of system {system.name!r} became non-finite "
            f"at t = {err.t:.6g} (the trajectory blows up); use a shorter horizon or check H"
        ) from None
    if not sol.success or sol.y.shape[1] != n_points:
        raise RuntimeError(
            f"simulate: the ODE solver failed for system {system.name!r}: {sol.message} "
            f"(reached {sol.y.shape[1]} of {n_points} points)"
        )
    out = torch.from_numpy(sol.y.T.copy()).reshape(n_points, n, M).transpose(0, 1).contiguous()
    if not bool(torch.isfinite(out).all()):
        raise RuntimeError(f"simulate: the solution of system {system.name!r} is non-finite")
    out[:, 0] = start
    return out.to(x0.device)


class _NonFinite(Exception):
    def __init__(self, t: float) -> None:
        super().__init__(t)
        self.t = t


def transitions(trajectories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split trajectories into consecutive pairs ``(x_t, x_{t+dt})``.

    Args:
        trajectories: ``(T, P, M)`` with ``P >= 2``.

    Returns:
        ``(states, next_states)``, each ``(T, P-1, M)`` (views, no copy).
    """
    if not isinstance(trajectories, torch.Tensor) or trajectories.dim() != 3:
        shape = tuple(trajectories.shape) if isinstance(trajectories, torch.Tensor) else None
        raise ValueError(f"transitions: expected trajectories of shape (T, P, M), got {shape}")
    if trajectories.shape[1] < 2:
        raise ValueError(
            f"transitions: need at least 2 points per trajectory, got shape "
            f"{tuple(trajectories.shape)}"
        )
    return trajectories[:, :-1], trajectories[:, 1:]


# ---------------------------------------------------------------------------- specs


def _freeze_value(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze_value(v) for v in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(
        f"system parameter values must be numbers, strings, None or sequences of them "
        f"(so that specs hash stably), got {type(value).__name__}"
    )


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a dataset; frozen, hashable and validated.

    Attributes:
        system: registered system name (see :data:`~pyro_razor.systems.SYSTEMS`).
        system_params: parameters for :func:`~pyro_razor.systems.make_system`. Pass a dict or
            ``(key, value)`` pairs; it is stored as a tuple of pairs sorted by key, lists
            turned into tuples (``{"n": 3}`` -> ``(("n", 3),)``).
        n_train, train_points: training trajectories and states per trajectory (>= 1, >= 2).
        n_test, test_points: the same for the test set and for every extra test set.
        dt: time between stored states (> 0).
        seed: non-negative int; train, test and each extra set draw from their own
            ``torch.Generator`` stream derived from it.
        extra_test_sets: names of the system's extra test samplers (e.g. ``"moved"``).
        rtol, atol: tolerances of :func:`simulate`.
    """

    system: str
    system_params: tuple[tuple[str, object], ...] = ()
    n_train: int = 200
    train_points: int = 51
    n_test: int = 100
    test_points: int = 51
    dt: float = 0.3
    seed: int = 0
    extra_test_sets: tuple[str, ...] = ()
    rtol: float = 1e-12
    atol: float = 1e-12

    def __post_init__(self) -> None:
        params = self.system_params
        if isinstance(params, Mapping):
            items: Iterable = params.items()
        else:
            try:
                items = [tuple(pair) for pair in params]
            except TypeError:
                raise TypeError(
                    "system_params must be a mapping or a sequence of (key, value) pairs"
                ) from None
        pairs = []
        for pair in items:
            if len(pair) != 2 or not isinstance(pair[0], str):
                raise TypeError(f"system_params entries must be (str, value) pairs, got {pair!r}")
            pairs.append((pair[0], _freeze_value(pair[1])))
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"system_params has repeated keys: {keys}")
        object.__setattr__(self, "system_params", tuple(sorted(pairs)))
        object.__setattr__(self, "extra_test_sets", tuple(self.extra_test_sets))

        for name in ("n_train", "n_test"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"DatasetSpec: {name} must be a positive int, got {value!r}")
        for name in ("train_points", "test_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ValueError(f"DatasetSpec: {name} must be an int >= 2, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"DatasetSpec: seed must be a non-negative int, got {self.seed!r}")
        for name in ("dt", "rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"DatasetSpec: {name} must be positive and finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.system not in SYSTEMS and not is_import_path(self.system):
            raise ValueError(
                f"DatasetSpec: unknown system {self.system!r}; known systems: {sorted(SYSTEMS)}"
                ", or a user's system as 'package.module:function'"
            )
        system = self.make_system()  # validates the parameters
        for name in self.extra_test_sets:
            if name not in system.test_initial:
                raise ValueError(
                    f"DatasetSpec: system {self.system!r} has no test set {name!r}; "
                    f"available: {system.test_sets}"
                )
        if len(set(self.extra_test_sets)) != len(self.extra_test_sets):
            raise ValueError(f"DatasetSpec: repeated extra test sets {self.extra_test_sets}")

    def make_system(self) -> HamiltonianSystem:
        """The system this spec describes: ``make_system(system, **system_params)``."""
        return make_system(self.system, **dict(self.system_params))

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON description of every field (``system_params`` as a dict)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["system_params"] = dict(self.system_params)
        return _jsonable(out)  # type: ignore[return-value]

    def key(self) -> str:
        """Stable 16-hex-digit hash of every field and :data:`DATA_FORMAT_VERSION`.

        The system parameters enter with their defaults filled in (the built system's
        ``params``), so ``{}`` and ``{"n": 3}`` for ``"oscillators"`` share a key.
        """
        description = self.to_dict()
        description["system_params"] = _jsonable(dict(self.make_system().params))
        description["format_version"] = DATA_FORMAT_VERSION
        text = json.dumps(description, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrajectoryData:
    """A generated dataset (all tensors float64).

    Attributes:
        spec: the spec that made it.
        train: ``(n_train, train_points, M)`` training trajectories.
        test: ``(n_test, test_points, M)`` in-distribution test trajectories.
        extra: extra test sets by name, each ``(n_test, test_points, M)``.
    """

    spec: DatasetSpec
    train: torch.Tensor
    test: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def phase_dim(self) -> int:
        """``M``."""
        return self.train.shape[-1]

    @property
    def n_transitions(self) -> int:
        """``N = n_train * (train_points - 1)``: the divisor of the per-transition figures."""
        return self.train.shape[0] * (self.train.shape[1] - 1)


# ---------------------------------------------------------------------------- generation


def default_cache_dir() -> Path:
    """Where :func:`make_dataset` caches data when no ``cache_dir`` is given.

    ``$PYRO_RAZOR_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/pyro-razor``, else
    ``~/.cache/pyro-razor``. Never inside the package.
    """
    explicit = os.environ.get("PYRO_RAZOR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pyro-razor"


def _stream_seed(seed: int, stream: str) -> int:
    """Independent 63-bit seed for a named stream (``"train"``, ``"test"``, ``"extra:moved"``)."""
    digest = hashlib.sha256(f"pyro-razor/{seed}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generate(spec: DatasetSpec) -> TrajectoryData:
    system = spec.make_system()

    def build(stream: str, which: str, count: int, points: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(_stream_seed(spec.seed, stream))
        x0 = system.sample(count, generator, which)
        return simulate(system, x0, points, spec.dt, spec.rtol, spec.atol)

    train = build("train", "train", spec.n_train, spec.train_points)
    test = build("test", "train", spec.n_test, spec.test_points)
    extra = {
        name: build(f"extra:{name}", name, spec.n_test, spec.test_points)
        for name in spec.extra_test_sets
    }
    return TrajectoryData(spec, train, test, extra)


def _load(path: Path, spec: DatasetSpec, key: str) -> TrajectoryData:
    """Load and check a cache file; raises on any mismatch."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format_version") != DATA_FORMAT_VERSION or blob.get("key") != key:
        raise ValueError("cache key or format version does not match the spec")
    M = spec.make_system().phase_dim
    expected = {"train": (spec.n_train, spec.train_points, M)}
    expected["test"] = (spec.n_test, spec.test_points, M)
    extra = blob["extra"]
    if set(extra) != set(spec.extra_test_sets):
        raise ValueError("cached extra test sets do not match the spec")
    tensors = {"train": blob["train"], "test": blob["test"]}
    for name in spec.extra_test_sets:
        tensors[f"extra:{name}"] = extra[name]
        expected[f"extra:{name}"] = expected["test"]
    for name, tensor in tensors.items():
        if (
            not isinstance(tensor, torch.Tensor)
            or tuple(tensor.shape) != expected[name]
            or tensor.dtype != torch.float64
            or not bool(torch.isfinite(tensor).all())
        ):
            raise ValueError(f"cached tensor {name!r} has the wrong shape, dtype or values")
    return TrajectoryData(
        spec, blob["train"], blob["test"], {n: extra[n] for n in spec.extra_test_sets}
    )


def _save_atomic(data: TrajectoryData, path: Path, key: str) -> None:
    """Write to a temporary file in the same directory, then ``os.replace`` it into place."""
    blob = {
        "format_version": DATA_FORMAT_VERSION,
        "key": key,
        "spec": data.spec.to_dict(),
        "train": data.train,
        "test": data.test,
        "extra": dict(data.extra),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def make_dataset(
    spec: DatasetSpec, cache_dir: str | os.PathLike | None = None, use_cache: bool = True
) -> TrajectoryData:
    """Generate (or load from the cache) the dataset described by ``spec``.

    Initial conditions come from independent ``torch.Generator`` streams derived from
    ``spec.seed`` (train, test, and one per extra set), so e.g. changing ``n_test`` leaves the
    training data unchanged. Trajectories come from :func:`simulate`.

    Args:
        spec: the dataset description.
        cache_dir: cache directory; ``None`` means :func:`default_cache_dir`.
        use_cache: if ``False`` the cache is neither read nor written.

    Returns:
        The :class:`TrajectoryData`. With the cache on, the file
        ``<cache_dir>/<system>-<spec.key()>.pt`` is read if present and valid, else written
        atomically. An unreadable or mismatched file triggers a warning and is regenerated;
        an unwritable cache directory triggers a warning only.
    """
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"make_dataset: spec must be a DatasetSpec, got {type(spec).__name__}")
    if not use_cache or is_import_path(spec.system):  # a user's code can change under its name
        return _generate(spec)
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = spec.key()
    path = directory / f"{spec.system}-{key}.pt"
    if path.exists():
        try:
            return _load(path, spec, key)
        except Exception as err:  # corrupt, truncated or foreign file: regenerate
            warnings.warn(
                f"make_dataset: ignoring unreadable cache file {path} ({type(err).__name__}: "
                f"{err}); regenerating it",
                RuntimeWarning,
                stacklevel=2,
            )
    data = _generate(spec)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _save_atomic(data, path, key)
    except OSError as err:
        warnings.warn(
            f"make_dataset: could not write cache file {path} ({err}); continuing without cache",
            RuntimeWarning,
            stacklevel=2,
        )
    return data


# ---------------------------------------------------------------------------- paper setups

_PAPER_SPECS: dict[str, dict[str, object]] = {
    # C.1: 7 initial conditions, 4 steps of 0.2 (5 points, N = 28); test 100 x 20 steps.
    "sho": dict(n_train=7, train_points=5, n_test=100, test_points=21, dt=0.2),
    # C.2: 200 x 50 steps of 0.3 (N = 10,000); the paper gives no test set, we use 100 x 50.
    "oscillators": dict(
        system_params=(("n", 3),), n_train=200, train_points=51, n_test=100, test_points=51,
        dt=0.3,
    ),
    # C.3: 2d 3-body, 200 x 50 steps of 0.3; test 100 x 50 in, moved and wider.
    "nbody": dict(
        system_params=(("dim", 2), ("n", 3)), n_train=200, train_points=51, n_test=100,
        test_points=51, dt=0.3, extra_test_sets=("moved", "wider"),
    ),
}


def paper_dataset_spec(system: str, **overrides: object) -> DatasetSpec:
    """The paper's data splits (appendix C, DESIGN.md section 4) as a :class:`DatasetSpec`.

    - ``"sho"``: 7 train x 5 points (4 transitions), ``dt = 0.2``; test 100 x 21 points.
    - ``"oscillators"`` (``n = 3``): 200 x 51 points, ``dt = 0.3`` (the reference script uses
      0.2); test 100 x 51 (the paper does not describe this test set).
    - ``"nbody"`` (3 bodies, 2d): 200 x 51 points, ``dt = 0.3`` (paper; the reference script
      passes 1.0); test 100 x 51 plus the ``"moved"`` and ``"wider"`` sets (their offsets are
      ours: the paper gives none).

    Points count states: "50 data points" in the paper are 50 steps in the reference code, so
    ``N = trajectories x (points - 1)`` matches its 28 and 10,000 transitions. ``seed`` is 0.

    Args:
        system: ``"sho"``, ``"oscillators"`` or ``"nbody"``.
        **overrides: any :class:`DatasetSpec` field, e.g. ``n_train=20, seed=3``.
    """
    if system not in _PAPER_SPECS:
        raise ValueError(
            f"no paper setup for system {system!r}; choose one of {sorted(_PAPER_SPECS)}"
        )
    names = {f.name for f in fields(DatasetSpec)} - {"system"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"paper_dataset_spec: unknown DatasetSpec field(s) {unknown}; fields: {sorted(names)}"
        )
    base = DatasetSpec(system=system, **_PAPER_SPECS[system])  # type: ignore[arg-type]
    return replace(base, **overrides) if overrides else base
