"""Trajectories as discovery takes them: ``(B, n, M)`` or ``B`` arrays ``(n_b, M)`` of any lengths.

:func:`as_trajectory_list` checks them once, with one clear line per problem, and returns
float64 CPU tensors; every discovery function calls it first.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_trajectory_list"]


def _as_tensor(x, caller: str, b: int) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x,
                                       dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{caller}: trajectory {b} is not a numeric array ({exc})") from None
    if t.dim() != 2:
        raise ValueError(f"{caller}: trajectory {b} has shape {tuple(t.shape)}; each must be "
                         "(n_b, M): points by phase coordinates")
    return t


def as_trajectory_list(trajectories, caller: str) -> list[torch.Tensor]:
    """``B`` float64 CPU tensors ``(n_b, M)`` from a ``(B, n, M)`` array or a sequence of them.

    Raises:
        ValueError: fewer than 2 trajectories, a trajectory with fewer than 2 points, unequal or
            odd ``M``, or NaN / inf (the first offending trajectory is named).
    """
    if isinstance(trajectories, (torch.Tensor, np.ndarray)):
        if trajectories.ndim != 3:
            raise ValueError(f"{caller}: need trajectories of shape (B, n, M), got "
                             f"{tuple(trajectories.shape)}; for one trajectory add a leading "
                             "axis, for unequal lengths pass a list of (n_b, M) arrays")
        trajectories = list(trajectories)
    xs = [_as_tensor(x, caller, b) for b, x in enumerate(trajectories)]
    if len(xs) < 2:
        raise ValueError(f"{caller}: need at least 2 trajectories to tell conserved from "
                         f"constant, got {len(xs)}")
    M = xs[0].shape[1]
    for b, x in enumerate(xs):
        if x.shape[1] != M:
            raise ValueError(f"{caller}: trajectory {b} has {x.shape[1]} coordinates, "
                             f"trajectory 0 has {M}; all must share the phase space")
        if x.shape[0] < 2:
            raise ValueError(f"{caller}: trajectory {b} has {x.shape[0]} point(s); each needs "
                             "at least 2 (drop it or give longer ones)")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{caller}: trajectory {b} contains NaN or inf; remove or repair "
                             "those states first")
    if M == 0 or M % 2:
        raise ValueError(f"{caller}: phase dimension M = {M} must be even (d positions then "
                         "d momenta)")
    return xs
