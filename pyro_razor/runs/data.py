"""The data set of a run as model tensors: training transitions and every test set."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pyro_razor.systems import TrajectoryData, transitions

__all__ = ["RunData"]


@dataclass
class RunData:
    """Transitions ``(T, n, M)`` on the run's device and dtype.

    Attributes:
        raw: the float64 CPU trajectories it was made from.
        states, next_states: training transitions.
        tests: test sets by name (``""``: the in-distribution test set; n-body also
            ``"moved"``, ``"wider"``), each ``(states, next_states)``.
    """

    raw: TrajectoryData
    states: torch.Tensor
    next_states: torch.Tensor
    tests: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def make(cls, raw: TrajectoryData, device: torch.device, dtype: torch.dtype) -> RunData:
        """Cut every trajectory set of ``raw`` into transitions on ``device`` in ``dtype``."""

        def move(trajectories):
            s, n = transitions(trajectories.to(device=device, dtype=dtype))
            return s.contiguous(), n.contiguous()

        states, next_states = move(raw.train)
        tests = {"": move(raw.test)}
        tests.update({name: move(traj) for name, traj in raw.extra.items()})
        return cls(raw, states, next_states, tests)
