"""Hamiltonian systems whose conserved quantities are not quadratic, for the non-linear-flow
razor (issue 24, point 2). Configs name them by import path with this folder on the path:
``system = "nonlinear_systems:quartic"`` and ``PYTHONPATH=experiments pyro-razor run ...``.

- :func:`quartic`: the quartic oscillator ``H = p^2/2 + q^4/4`` (``M = 2``). Its only
  conserved quantity is ``H`` (any function of it), a degree-4 polynomial: no quadratic
  quantity is conserved, so the quadratic razor has nothing exact to find.
- :func:`pendulum`: ``H = p^2/2 - cos q`` (``M = 2``); its energy is not a polynomial, so a
  polynomial family can only approximate it (``p^2/2 + q^2/2 - q^4/24 + ...``, better at small
  amplitude).
- :func:`henon_heiles`: ``H = (p1^2 + p2^2 + q1^2 + q2^2)/2 + q1^2 q2 - q2^3/3`` (``M = 4``),
  started on an energy shell; non-integrable, so its cubic energy is its only conserved
  quantity (chaotic near the escape energy 1/6, nearly two oscillators at low energy).
"""

from __future__ import annotations

import math

import torch

from pyro_razor.systems import HamiltonianSystem, gaussian_initial

__all__ = ["energy_shell", "henon_heiles", "henon_heiles_energy", "pendulum", "pendulum_energy",
           "quartic", "quartic_energy"]


def quartic_energy(x: torch.Tensor) -> torch.Tensor:
    """``H(q, p) = p^2/2 + q^4/4``: ``(..., 2)`` -> ``(...)``."""
    return 0.5 * x[..., 1] ** 2 + 0.25 * x[..., 0] ** 4


def quartic(std: float = 1.0) -> HamiltonianSystem:
    """The quartic oscillator, initial conditions ``x ~ N(0, std^2 I_2)``; no quadratic
    ground-truth quantities (so no oracle variant)."""
    return HamiltonianSystem("quartic", 2, quartic_energy, gaussian_initial(2, std),
                             params={"std": float(std)})


def henon_heiles_energy(x: torch.Tensor) -> torch.Tensor:
    """The Hénon–Heiles energy: ``(..., 4)`` ``(q1, q2, p1, p2)`` -> ``(...)``."""
    q1, q2, p1, p2 = x.unbind(-1)
    return 0.5 * (p1**2 + p2**2 + q1**2 + q2**2) + q1**2 * q2 - q2**3 / 3


def energy_shell(low: float, high: float):
    """Hénon–Heiles initial conditions ``sample(n, generator) -> (n, 4)`` with energies uniform
    in ``[low, high]``: positions uniform in ``[-0.5, 0.5]^2`` where the potential is below
    0.9 of the energy, momenta of the remaining energy in a uniform direction."""
    def sample(n, g):
        out = []
        dtype = torch.float64
        while len(out) < n:
            E = low + (high - low) * float(torch.rand(1, generator=g, dtype=dtype))
            q = 0.5 * (2 * torch.rand(2, generator=g, dtype=dtype) - 1)
            V = float(henon_heiles_energy(torch.cat([q, torch.zeros(2, dtype=dtype)])))
            if V >= 0.9 * E:
                continue
            angle = 2 * math.pi * float(torch.rand(1, generator=g, dtype=dtype))
            speed = math.sqrt(2 * (E - V))
            out.append(torch.cat([q, torch.tensor([speed * math.cos(angle),
                                                   speed * math.sin(angle)], dtype=dtype)]))
        return torch.stack(out)
    return sample


def henon_heiles(low: float = 0.14, high: float = 0.166) -> HamiltonianSystem:
    """Hénon–Heiles with energies uniform in ``[low, high]`` (below the escape energy 1/6);
    no quadratic ground-truth quantities (no oracle variant)."""
    if not 0 < low <= high < 1 / 6:
        raise ValueError(f"henon_heiles: need 0 < low <= high < 1/6 (bound orbits), got "
                         f"{low}, {high}")
    return HamiltonianSystem("henon_heiles", 4, henon_heiles_energy, energy_shell(low, high),
                             params={"low": float(low), "high": float(high)})


def pendulum_energy(x: torch.Tensor) -> torch.Tensor:
    """``H(q, p) = p^2/2 - cos q``: ``(..., 2)`` -> ``(...)``."""
    return 0.5 * x[..., 1] ** 2 - torch.cos(x[..., 0])


def pendulum(std: float = 1.0) -> HamiltonianSystem:
    """The pendulum, initial conditions ``x ~ N(0, std^2 I_2)`` (with ``std = 1`` most orbits
    librate, a few rotate); no quadratic ground-truth quantities (no oracle variant)."""
    return HamiltonianSystem("pendulum", 2, pendulum_energy, gaussian_initial(2, std),
                             params={"std": float(std)})
