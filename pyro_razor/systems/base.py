r"""A Hamiltonian system: an energy function, initial-condition samplers and ground truth.

Conventions (DESIGN.md section 1): phase space ``x = (q, p) in R^M``, ``M = 2d``, positions
first, ``J = [[0, I], [-I, 0]]``, so Hamilton's equations (paper eq. 1) read

.. math:: \dot x = J \nabla H(x), \qquad \dot q = \partial H / \partial p,
          \qquad \dot p = -\partial H / \partial q.

A new system needs no subclass: any differentiable torch function ``H: (..., M) -> (...)`` and
a sampler of initial conditions make one, e.g.::

    pendulum = HamiltonianSystem(
        "pendulum", 2, lambda x: x[..., 1] ** 2 / 2 - torch.cos(x[..., 0]), gaussian_initial(2)
    )

Its known quadratic conserved quantities ``C(x) = 1/2 x^T A x + b^T x`` (paper appendix B) are
optional ground truth for the symmetry analysis; they are never used to generate data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from pyro_razor.checks import check_int
from pyro_razor.symmetry import QuadraticQuantity, check_phase_dim, generators_of

__all__ = ["HamiltonianSystem", "InitialSampler", "gaussian_initial"]

InitialSampler = Callable[[int, torch.Generator], torch.Tensor]
"""``(n, generator) -> (n, M)`` float64 initial conditions drawn with ``generator``."""


def gaussian_initial(M: int, std: float = 1.0) -> InitialSampler:
    """Sampler of initial conditions ``x ~ N(0, std^2 I_M)`` (float64).

    Args:
        M: phase dimension (positive, even).
        std: standard deviation of every coordinate (positive, finite).

    Returns:
        A function ``(n, generator) -> (n, M)`` drawing on ``generator``'s device.
    """
    check_phase_dim(M)
    std = float(std)
    if not (std > 0 and math.isfinite(std)):
        raise ValueError(f"gaussian_initial: std must be positive and finite, got {std}")

    def sample(n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, M, generator=generator, dtype=torch.float64, device=generator.device)
        return std * z

    return sample


@dataclass(frozen=True, eq=False)
class HamiltonianSystem:
    """A Hamiltonian system on ``R^M`` with samplers and (optional) ground-truth symmetries.

    Attributes:
        name: short identifier, e.g. ``"sho"`` (used in cache file names and reports).
        phase_dim: ``M``, positive and even; ``x = (q, p)`` with positions first.
        hamiltonian: differentiable torch function ``(..., M) -> (...)``.
        sample_initial: training initial conditions, ``(n, generator) -> (n, M)`` float64.
        conserved_quantities: ground-truth quadratic conserved quantities (appendix B), each
            with ``A`` of shape ``(M, M)`` and ``b`` of shape ``(M,)``; may be empty.
        test_initial: extra test-set samplers by name (e.g. ``"moved"``, ``"wider"``), with
            the same signature as ``sample_initial``. ``"train"`` is reserved.
        params: the parameters that built the system (for cache keys and reports).
        oracle_quantities: names of the conserved quantities the ``"oracle"`` model variant
            symmetrises over (the paper's fixed group, e.g. SE(2) for the 2d n-body system);
            empty means all of them. The ``"oracle_orbit"`` variant always uses all.

    Systems compare by identity (they hold functions, whose equality means nothing).
    """

    name: str
    phase_dim: int
    hamiltonian: Callable[[torch.Tensor], torch.Tensor]
    sample_initial: InitialSampler
    conserved_quantities: tuple[QuadraticQuantity, ...] = ()
    test_initial: Mapping[str, InitialSampler] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)
    oracle_quantities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"system name must be a non-empty str, got {self.name!r}")
        check_phase_dim(self.phase_dim)
        if not callable(self.hamiltonian):
            raise TypeError(f"system {self.name!r}: hamiltonian must be callable (..., M) -> (...)")
        if not callable(self.sample_initial):
            raise TypeError(
                f"system {self.name!r}: sample_initial must be callable (n, generator) -> (n, M)"
            )
        quantities = tuple(self.conserved_quantities)
        for c in quantities:
            if not isinstance(c, QuadraticQuantity):
                raise TypeError(
                    f"system {self.name!r}: conserved_quantities must be QuadraticQuantity "
                    f"objects, got {type(c).__name__}"
                )
            if c.phase_dim != self.phase_dim:
                raise ValueError(
                    f"system {self.name!r}: conserved quantity {c.name!r} acts on a "
                    f"{c.phase_dim}-dim phase space but the system has M = {self.phase_dim}"
                )
        samplers = dict(self.test_initial)
        for key, fn in samplers.items():
            if not isinstance(key, str) or key == "train":
                raise ValueError(
                    f"system {self.name!r}: test_initial names must be str other than 'train', "
                    f"got {key!r}"
                )
            if not callable(fn):
                raise TypeError(f"system {self.name!r}: test_initial[{key!r}] is not callable")
        known = [c.name for c in quantities]
        unknown = [n for n in self.oracle_quantities if n not in known]
        if unknown:
            raise ValueError(
                f"system {self.name!r}: oracle_quantities {unknown} are not among its conserved "
                f"quantities {known}"
            )
        object.__setattr__(self, "oracle_quantities", tuple(self.oracle_quantities))
        object.__setattr__(self, "conserved_quantities", quantities)
        object.__setattr__(self, "test_initial", MappingProxyType(samplers))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    # ------------------------------------------------------------------ evaluation

    def _check_points(self, x: torch.Tensor, caller: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{self.name}.{caller}: x must be a torch.Tensor, got {type(x).__name__}"
            )
        M = self.phase_dim
        if x.dim() == 0 or x.shape[-1] != M:
            raise ValueError(
                f"{self.name}.{caller}: x must have shape (..., {M}) (phase dimension M = {M}, "
                f"positions then momenta), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{self.name}.{caller}: x must be floating point, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self.name}.{caller}: x contains NaN or inf")
        return x

    def _call_hamiltonian(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.hamiltonian(x)
        if not isinstance(energy, torch.Tensor) or energy.shape != x.shape[:-1]:
            got = tuple(energy.shape) if isinstance(energy, torch.Tensor) else type(energy).__name__
            raise ValueError(
                f"{self.name}: hamiltonian must map (..., M) to (...): for x of shape "
                f"{tuple(x.shape)} it must return {tuple(x.shape[:-1])}, got {got}"
            )
        return energy

    def H(self, x: torch.Tensor) -> torch.Tensor:
        """Energy ``H(x)``: ``x`` of shape ``(..., M)`` (finite) to ``(...)``."""
        return self._call_hamiltonian(self._check_points(x, "H"))

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        r"""Hamilton's vector field ``J \nabla H(x)`` by autograd (paper eq. 1).

        Works when the caller runs under ``torch.no_grad()``. If ``x`` requires grad (and grad
        mode is on) the result is differentiable with respect to ``x``.

        Args:
            x: ``(..., M)`` finite points.

        Returns:
            ``(..., M)``: ``(dH/dp, -dH/dq)``.
        """
        x = self._check_points(x, "vector_field")
        keep_graph = x.requires_grad and torch.is_grad_enabled()
        with torch.enable_grad():
            xin = x if keep_graph else x.detach().requires_grad_(True)
            energy = self._call_hamiltonian(xin)
            (grad,) = torch.autograd.grad(
                energy.sum(), xin, create_graph=keep_graph, allow_unused=True
            )
        if grad is None:  # H does not depend on x
            grad = torch.zeros_like(x)
        d = self.phase_dim // 2
        return torch.cat([grad[..., d:], -grad[..., :d]], dim=-1)

    # ------------------------------------------------------------------ ground truth

    def generators(
        self,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        names: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Ground-truth generators ``G = [[J A, J b], [0, 0]]`` (eq. 4), ``(L, M+1, M+1)``,
        of all conserved quantities or of those named in ``names`` (in that order).

        Raises ``ValueError`` if the system has no known conserved quantities or a name is
        unknown.
        """
        if not self.conserved_quantities:
            raise ValueError(
                f"system {self.name!r} has no ground-truth conserved quantities, so it has no "
                "ground-truth generators; pass conserved_quantities=(...) to define them"
            )
        quantities = self.conserved_quantities
        if names is not None:
            by_name = {c.name: c for c in quantities}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"system {self.name!r} has no conserved quantities {missing}")
            quantities = [by_name[n] for n in names]
        return generators_of(quantities, dtype=dtype, device=device)

    def oracle_generators(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Generators of the ``"oracle"`` variant's fixed group (``oracle_quantities``)."""
        return self.generators(dtype=dtype, names=self.oracle_quantities or None)

    # ------------------------------------------------------------------ sampling

    @property
    def test_sets(self) -> tuple[str, ...]:
        """Names of the extra test-set samplers (keys of ``test_initial``)."""
        return tuple(self.test_initial)

    def sample(self, n: int, generator: torch.Generator, which: str = "train") -> torch.Tensor:
        """Draw ``n`` initial conditions, ``(n, M)`` float64.

        Args:
            n: number of initial conditions (positive).
            generator: the ``torch.Generator`` that makes the draw reproducible.
            which: ``"train"`` uses ``sample_initial``; any other name uses
                ``test_initial[which]``.
        """
        check_int(n, f"{self.name}.sample: n")
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{self.name}.sample: generator must be a torch.Generator, "
                f"got {type(generator).__name__}"
            )
        if which == "train":
            sampler = self.sample_initial
        elif which in self.test_initial:
            sampler = self.test_initial[which]
        else:
            known = ("train", *self.test_initial)
            raise ValueError(
                f"system {self.name!r} has no initial-condition sampler {which!r}; "
                f"choose one of {known}"
            )
        x0 = sampler(n, generator)
        M = self.phase_dim
        if not isinstance(x0, torch.Tensor) or x0.shape != (n, M):
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(
                f"system {self.name!r}: sampler {which!r} must return shape ({n}, {M}), got {got}"
            )
        if not x0.is_floating_point() or not bool(torch.isfinite(x0).all()):
            raise ValueError(
                f"system {self.name!r}: sampler {which!r} returned non-finite or non-float values"
            )
        return x0.to(torch.float64)
