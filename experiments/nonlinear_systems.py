"""Hamiltonian systems whose conserved quantities are not quadratic, for the non-linear-flow
razor (issue 24, point 2). Configs name them by import path with this folder on the path:
``system = "nonlinear_systems:quartic"`` and ``PYTHONPATH=experiments pyro-razor run ...``.

- :func:`quartic`: the quartic oscillator ``H = p^2/2 + q^4/4`` (``M = 2``). Its only
  conserved quantity is ``H`` (any function of it), a degree-4 polynomial: no quadratic
  quantity is conserved, so the quadratic razor has nothing exact to find.
"""

from __future__ import annotations

import torch

from pyro_razor.systems import HamiltonianSystem, gaussian_initial

__all__ = ["quartic", "quartic_energy"]


def quartic_energy(x: torch.Tensor) -> torch.Tensor:
    """``H(q, p) = p^2/2 + q^4/4``: ``(..., 2)`` -> ``(...)``."""
    return 0.5 * x[..., 1] ** 2 + 0.25 * x[..., 0] ** 4


def quartic(std: float = 1.0) -> HamiltonianSystem:
    """The quartic oscillator, initial conditions ``x ~ N(0, std^2 I_2)``; no quadratic
    ground-truth quantities (so no oracle variant)."""
    return HamiltonianSystem("quartic", 2, quartic_energy, gaussian_initial(2, std),
                             params={"std": float(std)})
