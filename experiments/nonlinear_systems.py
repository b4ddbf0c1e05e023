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
- :func:`kepler`: planar Kepler, ``H = |p|^2/2 - 1/|q|`` (``M = 4``), bound orbits. Its laws
  (:func:`kepler_laws`): the energy (with ``1/r``), the angular momentum ``L = x p_y - y p_x``
  (quadratic: the system's one ground-truth quadratic quantity) and the Laplace–Runge–Lenz
  vector (cubic with ``x/r``, ``y/r``).
- :func:`toda`: the periodic 3-particle Toda lattice, ``H = |p|^2/2 + sum_i exp(q_i - q_{i+1})``
  (``M = 6``). Its laws (:func:`toda_laws`): the momentum ``P = p_1 + p_2 + p_3`` (linear: the
  ground-truth quadratic-family quantity), the energy and a cubic invariant, both with
  exponentials.
"""

from __future__ import annotations

import math

import torch

from pyro_razor.symmetry import QuadraticQuantity
from pyro_razor.systems import HamiltonianSystem, gaussian_initial

__all__ = ["energy_shell", "henon_heiles", "henon_heiles_energy", "kepler", "kepler_energy",
           "kepler_laws", "kepler_orbits", "pendulum", "pendulum_energy", "quartic",
           "quartic_energy", "toda", "toda_energy", "toda_exponentials", "toda_laws"]

F64 = torch.float64


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


def kepler_energy(x: torch.Tensor) -> torch.Tensor:
    """``H = |p|^2/2 - 1/|q|`` (``GM = m = 1``): ``(..., 4)`` ``(x, y, p_x, p_y)`` -> ``(...)``."""
    return 0.5 * (x[..., 2] ** 2 + x[..., 3] ** 2) - 1.0 / x[..., :2].norm(dim=-1)


def kepler_laws(x: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` -> ``(..., 4)``: the energy, ``L``, ``A_x``, ``A_y`` (the Laplace–Runge–Lenz
    vector ``A = p x L - q/r``)."""
    q, p = x[..., :2], x[..., 2:]
    r = q.norm(dim=-1)
    L = q[..., 0] * p[..., 1] - q[..., 1] * p[..., 0]
    Ax = p[..., 1] * L - q[..., 0] / r
    Ay = -p[..., 0] * L - q[..., 1] / r
    return torch.stack([kepler_energy(x), L, Ax, Ay], -1)


def kepler_orbits(n: int, g: torch.Generator) -> torch.Tensor:
    """Bound orbits ``(n, 4)`` started at perihelion ``r_p`` uniform in [0.8, 1.2], eccentricity
    uniform in [0.1, 0.7], orientation uniform (periods about 6-30 time units)."""
    u = torch.rand(n, 3, generator=g, dtype=F64)
    rp, e, angle = 0.8 + 0.4 * u[:, 0], 0.1 + 0.6 * u[:, 1], 2 * math.pi * u[:, 2]
    v = ((1 + e) / rp).sqrt()
    radial = torch.stack([angle.cos(), angle.sin()], -1)
    tangent = torch.stack([-angle.sin(), angle.cos()], -1)
    return torch.cat([radial * rp[:, None], tangent * v[:, None]], -1)


def kepler() -> HamiltonianSystem:
    """Planar Kepler orbits (:func:`kepler_orbits`); ground truth: the angular momentum
    ``L = x p_y - y p_x``, the one quadratic law."""
    A = torch.zeros(4, 4, dtype=F64)
    A[0, 3] = A[3, 0] = 1.0
    A[1, 2] = A[2, 1] = -1.0
    L = QuadraticQuantity("L", A, torch.zeros(4, dtype=F64))
    return HamiltonianSystem("kepler", 4, kepler_energy, kepler_orbits, conserved_quantities=(L,))


def toda_exponentials(q: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` positions -> ``(..., 3)``: ``exp(q_i - q_{i+1})``, cyclic."""
    return torch.exp(q - torch.roll(q, -1, dims=-1))


def toda_energy(x: torch.Tensor) -> torch.Tensor:
    """The periodic Toda energy: ``(..., 6)`` ``(q_1..q_3, p_1..p_3)`` -> ``(...)``."""
    return 0.5 * (x[..., 3:] ** 2).sum(-1) + toda_exponentials(x[..., :3]).sum(-1)


def toda_laws(x: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` -> ``(..., 3)``: ``P = sum p``, the energy and
    ``I_3 = sum p^3/3 + sum (p_i + p_{i+1}) exp(q_i - q_{i+1})``."""
    q, p = x[..., :3], x[..., 3:]
    e = toda_exponentials(q)
    I3 = (p**3).sum(-1) / 3 + ((p + torch.roll(p, -1, dims=-1)) * e).sum(-1)
    return torch.stack([p.sum(-1), toda_energy(x), I3], -1)


def toda(std: float = 0.5) -> HamiltonianSystem:
    """The periodic 3-particle Toda lattice, ``x ~ N(0, std^2 I_6)``; ground truth: the total
    momentum ``P`` (linear), the one law of the quadratic family."""
    b = torch.cat([torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)])
    P = QuadraticQuantity("P", torch.zeros(6, 6, dtype=F64), b)
    return HamiltonianSystem("toda", 6, toda_energy, gaussian_initial(6, std),
                             conserved_quantities=(P,), params={"std": float(std)})
