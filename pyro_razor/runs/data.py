"""The data of a run: from a system (built-in or a user's) or a trajectory file, in the units
the model sees, as transitions on the run's device.

Two sources, chosen by the ``[data]`` section (:class:`~pyro_razor.runs.config.DataConfig`):

- ``system``: exact trajectories of a built-in system (``"sho"``, ...) or of a user's
  ``"package.module:function"`` returning a :class:`~pyro_razor.systems.HamiltonianSystem`,
  made (and cached) by :func:`~pyro_razor.systems.make_dataset`;
- ``file``: a user's trajectories (:mod:`pyro_razor.systems.files`), split by whole
  trajectories into train and test (seeded) when the file holds no test set. There is no true
  system then: no oracle, no exact long-horizon solution, no ground truth.

With ``standardise`` the model works in units that keep the dynamics Hamiltonian
(:func:`~pyro_razor.systems.units.fit_scaling` on the training trajectories, a shift plus
position and momentum scales with equal products, which only rescales H); everything learned
maps back with :attr:`RunData.scaling`.

Shapes: ``B`` trajectories, ``n`` points (``n - 1`` transitions), ``M`` phase dimension.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch

from pyro_razor.symmetry import phase_labels
from pyro_razor.systems import HamiltonianSystem, make_dataset, simulate, transitions
from pyro_razor.systems.files import TrajectoryFile, read_trajectories, split_trajectories
from pyro_razor.systems.units import PhaseSpaceScaling, fit_scaling, identity_scaling

__all__ = ["RunData", "file_split", "read_data_file"]


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime: float, size: int, dt, names) -> TrajectoryFile:
    return read_trajectories(path, dt=dt, names=None if names is None else list(names))


def read_data_file(path: str, dt: float | None = None, names=None) -> TrajectoryFile:
    """:func:`~pyro_razor.systems.files.read_trajectories`, cached by the file's path,
    modification time and size (configs are validated, and copied, more than once)."""
    stat = os.stat(path)
    return _read_cached(str(path), stat.st_mtime, stat.st_size, dt,
                        None if names is None else tuple(names))


def file_split(contents: TrajectoryFile, test_fraction: float, seed: int):
    """``(train, test)`` of a file: its own test set, or a seeded split by trajectories."""
    if contents.test is not None:
        return contents.trajectories, contents.test
    return split_trajectories(contents.trajectories, test_fraction, seed)


@dataclass
class RunData:
    """A run's trajectories (float64, CPU, model units) and transitions (device, dtype).

    Attributes:
        train, test: ``(B, n, M)`` trajectories; ``extra``: further test sets by name.
        dt: time between states.
        names: the ``M`` coordinate names (positions first).
        system: the true system in the user's units, or ``None`` for file data.
        scaling: model units to the user's (identity without standardisation).
        states, next_states: ``(B, n - 1, M)`` training transitions on the device.
        tests: test sets by name (``""``: in distribution), each ``(states, next_states)``.
    """

    train: torch.Tensor
    test: torch.Tensor
    extra: dict[str, torch.Tensor]
    dt: float
    names: tuple[str, ...]
    system: HamiltonianSystem | None
    scaling: PhaseSpaceScaling
    states: torch.Tensor = None
    next_states: torch.Tensor = None
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def phase_dim(self) -> int:
        return self.train.shape[-1]

    @property
    def n_transitions(self) -> int:
        """``N = B (n - 1)`` training transitions: the divisor of every per-transition figure."""
        return self.train.shape[0] * (self.train.shape[1] - 1)

    @classmethod
    def load(cls, data_config, device: torch.device | str, dtype: torch.dtype) -> RunData:
        """Load ``data_config``'s trajectories (generate, read, split, standardise) and cut
        them into transitions on ``device`` in ``dtype``."""
        if data_config.file is not None:
            contents = read_data_file(data_config.file, data_config.dt, data_config.names)
            train, test = file_split(contents, data_config.test_fraction, data_config.seed)
            extra, system, names = {}, None, tuple(contents.names)
        else:
            raw = make_dataset(data_config.spec())
            train, test, extra = raw.train, raw.test, dict(raw.extra)
            system = raw.spec.make_system()
            names = tuple(data_config.names or phase_labels(system.phase_dim))
        scaling = fit_scaling(train) if data_config.standardise else identity_scaling(
            train.shape[-1])
        data = cls(
            train=scaling.to_scaled(train), test=scaling.to_scaled(test),
            extra={k: scaling.to_scaled(v) for k, v in extra.items()}, dt=float(data_config.dt),
            names=names, system=system, scaling=scaling,
        )
        return data.to(device, dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> RunData:
        """Set the model tensors: every trajectory set as transitions on ``device``."""

        def move(trajectories):
            s, n = transitions(trajectories.to(device=device, dtype=dtype))
            return s.contiguous(), n.contiguous()

        self.states, self.next_states = move(self.train)
        self.tests = {"": move(self.test)}
        self.tests.update({name: move(traj) for name, traj in self.extra.items()})
        return self

    def true_trajectories(self, x0: torch.Tensor, n_points: int) -> torch.Tensor | None:
        """Exact trajectories ``(R, n, M)`` from ``x0 (R, M)`` (model units) in model units, or
        ``None`` without a true system."""
        if self.system is None:
            return None
        start = self.scaling.to_original(x0.detach().cpu().double())
        return self.scaling.to_scaled(simulate(self.system, start, n_points, self.dt))
