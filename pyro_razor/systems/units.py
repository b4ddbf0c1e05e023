r"""Standardising phase-space data without breaking Hamilton's equations.

Real data are rarely O(1): positions may be ``~ 1e3`` and momenta ``~ 1e-3``. Standardising
each coordinate independently destroys the Hamiltonian structure, but a *symplectic-up-to-scale*
change of units keeps it. With ``x = (q, p) in R^M``, ``M = 2d``, write

.. math:: x = D x' + \mu, \qquad D = \mathrm{diag}(a_1, .., a_d, b_1, .., b_d),

positions scaled by ``a_i > 0``, momenta by ``b_i > 0``, shift ``mu in R^M``. If
``x' = J grad H(x)`` then ``x'' = D^{-1} J D^{-1} grad_{x'} [H(D x' + mu)]`` and

.. math:: D^{-1} J D^{-1} = \frac{1}{c} J \quad\Longleftrightarrow\quad a_i b_i = c
          \text{ for all } i,

so exactly when all products ``a_i b_i`` equal one constant ``c`` (the
:attr:`~PhaseSpaceScaling.hamiltonian_scale`) the scaled state follows Hamilton's equations
``x'' = J grad H'(x')`` with

.. math:: H'(x') = H(D x' + \mu) / c.

Quantities. A quadratic ``C(x) = 1/2 x^T A x + b^T x`` read in scaled units is
``C'(x') = C(D x' + mu) = 1/2 x'^T A' x' + b'^T x' + const`` with

.. math:: A' = D A D, \quad b' = D (A \mu + b); \qquad
          A = D^{-1} A' D^{-1}, \quad b = D^{-1} b' - A \mu.

``C`` is conserved by ``H`` iff ``C'`` is conserved by ``H'`` (same function, up to a
constant). Generators. With ``T = [[D, mu], [0, 1]]`` mapping ``(x', 1)`` to ``(x, 1)`` and
``G = [[J A, J b], [0, 0]]``, ``G' = [[J A', J b'], [0, 0]]``:

.. math:: T^{-1} G T = \frac{1}{c} G', \qquad G = \frac{1}{c} T G' T^{-1},

because ``T^{-1} G T = [[D^{-1} J A D, D^{-1} J (A mu + b)], [0, 0]]`` and
``D^{-1} J = J D / c``. In words: the flow of ``C`` in original units, seen in scaled
units, is the flow of ``C' / c``, just as time itself runs with ``H' = H / c``.

:func:`fit_scaling` picks ``mu`` = the mean state and, from the per-coordinate standard
deviations ``sigma``, ``c = (prod_i sigma_qi sigma_pi)^(1/d)`` (geometric mean),
``a_i = sqrt(c sigma_qi / sigma_pi)``, ``b_i = sqrt(c sigma_pi / sigma_qi)``: then
``a_i b_i = c``, ``a_i / b_i = sigma_qi / sigma_pi``, each scaled pair ``(q_i', p_i')``
has equal spreads ``sqrt(sigma_qi sigma_pi / c)`` and their geometric mean is 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from pyro_razor.symmetry import generator_matrix, quantity_from_generator

__all__ = ["PhaseSpaceScaling", "fit_scaling", "identity_scaling"]

_F64 = torch.float64
_PRODUCT_RTOL = 1e-9


def _as_vector(value: object, name: str) -> torch.Tensor:
    """A 1-d finite float64 CPU tensor from a tensor, array or sequence."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to(device="cpu", dtype=_F64)
    else:
        tensor = torch.as_tensor(value, dtype=_F64)
    if tensor.dim() != 1 or tensor.shape[0] == 0:
        raise ValueError(
            f"PhaseSpaceScaling: {name} must be a non-empty vector, got shape {tuple(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"PhaseSpaceScaling: {name} contains NaN or inf; pass finite values")
    return tensor.clone()


@dataclass(frozen=True, eq=False)
class PhaseSpaceScaling:
    """The change of units ``x = D x' + mu`` with ``D = diag(a, b)`` and ``a_i b_i = c``.

    Attributes:
        shift: ``mu``, ``(M,)``.
        position_scale: ``a``, ``(d,)``, positive.
        momentum_scale: ``b``, ``(d,)``, positive, with ``a_i b_i`` equal for all ``i`` to a
            relative ``1e-9`` (otherwise the scaled dynamics would not be Hamiltonian).

    All three are stored as float64 CPU tensors; methods accept any device and float dtype
    and compute in float64. Maps quantities and generators between units (module docstring).
    """

    shift: torch.Tensor
    position_scale: torch.Tensor
    momentum_scale: torch.Tensor

    def __post_init__(self) -> None:
        shift = _as_vector(self.shift, "shift")
        a = _as_vector(self.position_scale, "position_scale")
        b = _as_vector(self.momentum_scale, "momentum_scale")
        if a.shape != b.shape or shift.shape[0] != 2 * a.shape[0]:
            raise ValueError(
                f"PhaseSpaceScaling: need shift (M,), position_scale (d,) and momentum_scale "
                f"(d,) with M = 2d, got {shift.shape[0]}, {a.shape[0]} and {b.shape[0]}"
            )
        if not (bool((a > 0).all()) and bool((b > 0).all())):
            raise ValueError("PhaseSpaceScaling: position_scale and momentum_scale must be > 0")
        products = a * b
        spread = float((products / products.mean() - 1.0).abs().max())
        if spread > _PRODUCT_RTOL:
            raise ValueError(
                f"PhaseSpaceScaling: the products position_scale * momentum_scale "
                f"{products.tolist()} must all be equal (relative {_PRODUCT_RTOL:g}) for the "
                "scaled dynamics to stay Hamiltonian; use fit_scaling or rescale one of them"
            )
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "position_scale", a)
        object.__setattr__(self, "momentum_scale", b)

    # ------------------------------------------------------------------ basics

    @property
    def phase_dim(self) -> int:
        """``M``."""
        return self.shift.shape[0]

    @property
    def hamiltonian_scale(self) -> float:
        """``c = a_i b_i`` (geometric mean over ``i``): ``H'(x') = H(D x' + mu) / c``."""
        return float(torch.log(self.position_scale * self.momentum_scale).mean().exp())

    def scale(self) -> torch.Tensor:
        """The diagonal of ``D``, ``(a_1..a_d, b_1..b_d)``, shape ``(M,)`` float64."""
        return torch.cat([self.position_scale, self.momentum_scale])

    def homogeneous_matrix(self) -> torch.Tensor:
        """``T = [[D, mu], [0, 1]]``, ``(M+1, M+1)`` float64: ``(x, 1) = T (x', 1)``."""
        M = self.phase_dim
        T = torch.zeros(M + 1, M + 1, dtype=_F64)
        T[:M, :M] = torch.diag(self.scale())
        T[:M, M] = self.shift
        T[M, M] = 1.0
        return T

    def _check_states(self, x: torch.Tensor, caller: str) -> None:
        M = self.phase_dim
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != M:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"PhaseSpaceScaling.{caller}: x must have shape (..., {M}), got {got}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise ValueError(f"PhaseSpaceScaling.{caller}: x must be finite floating point")

    def to_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """``x' = D^{-1} (x - mu)``: ``(..., M)`` to ``(..., M)``, same dtype and device."""
        self._check_states(x, "to_scaled")
        mu, D = self.shift.to(x.device), self.scale().to(x.device)
        return ((x.to(_F64) - mu) / D).to(x.dtype)

    def to_original(self, x_scaled: torch.Tensor) -> torch.Tensor:
        """``x = D x' + mu``: ``(..., M)`` to ``(..., M)``, same dtype and device."""
        self._check_states(x_scaled, "to_original")
        mu, D = self.shift.to(x_scaled.device), self.scale().to(x_scaled.device)
        return (x_scaled.to(_F64) * D + mu).to(x_scaled.dtype)

    def scaled_hamiltonian(
        self, hamiltonian: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``H'(x') = H(D x' + mu) / c``, a differentiable ``(..., M) -> (...)`` function."""
        c = self.hamiltonian_scale
        mu, D = self.shift, self.scale()

        def scaled(x_scaled: torch.Tensor) -> torch.Tensor:
            x = x_scaled * D.to(x_scaled) + mu.to(x_scaled)
            return hamiltonian(x) / c

        return scaled

    # ------------------------------------------------------------------ quantities, generators

    def _check_quantities(self, A: torch.Tensor, b: torch.Tensor, caller: str) -> None:
        M = self.phase_dim
        ok = isinstance(A, torch.Tensor) and isinstance(b, torch.Tensor)
        if not ok or A.dim() < 2 or A.shape[-2:] != (M, M) or b.shape != A.shape[:-1]:
            raise ValueError(
                f"PhaseSpaceScaling.{caller}: need A of shape (..., {M}, {M}) and b of shape "
                f"(..., {M}) with the same batch shape"
            )
        if not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(b).all())):
            raise ValueError(f"PhaseSpaceScaling.{caller}: A or b contains NaN or inf")

    def quantities_to_original(
        self, A_scaled: torch.Tensor, b_scaled: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A', b')`` in scaled units to ``(A, b)``: ``C(x) = C'(x')`` up to a constant.

        ``A = D^{-1} A' D^{-1}``, ``b = D^{-1} b' - A mu`` (module docstring).

        Args:
            A_scaled: ``(..., M, M)`` symmetric.
            b_scaled: ``(..., M)``.

        Returns:
            ``(A, b)`` with the same shapes, dtype and device.
        """
        self._check_quantities(A_scaled, b_scaled, "quantities_to_original")
        mu, D = self.shift.to(A_scaled.device), self.scale().to(A_scaled.device)
        A = A_scaled.to(_F64) / (D[:, None] * D[None, :])
        b = b_scaled.to(_F64) / D - A @ mu
        return A.to(A_scaled.dtype), b.to(b_scaled.dtype)

    def quantities_to_scaled(
        self, A: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, b)`` in original units to ``(A', b')``: ``A' = D A D``, ``b' = D (A mu + b)``.

        Args:
            A: ``(..., M, M)`` symmetric.
            b: ``(..., M)``.

        Returns:
            ``(A', b')`` with the same shapes, dtype and device.
        """
        self._check_quantities(A, b, "quantities_to_scaled")
        mu, D = self.shift.to(A.device), self.scale().to(A.device)
        A64 = A.to(_F64)
        A_scaled = A64 * (D[:, None] * D[None, :])
        b_scaled = D * (A64 @ mu + b.to(_F64))
        return A_scaled.to(A.dtype), b_scaled.to(b.dtype)

    def generators_to_original(self, G_scaled: torch.Tensor) -> torch.Tensor:
        """Generator of ``C'`` (scaled units) to the generator of ``C`` (original units).

        Computed through the quantities; equals ``(1/c) T G' T^{-1}`` with ``T`` from
        :meth:`homogeneous_matrix` (module docstring).

        Args:
            G_scaled: ``(..., M+1, M+1)`` generators ``[[J A', J b'], [0, 0]]``.

        Returns:
            ``(..., M+1, M+1)``, same dtype and device.
        """
        self._check_generators(G_scaled, "generators_to_original")
        A, b = self.quantities_to_original(*quantity_from_generator(G_scaled))
        return generator_matrix(A, b)

    def generators_to_scaled(self, G: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`generators_to_original`: ``G' = c T^{-1} G T``.

        Args:
            G: ``(..., M+1, M+1)`` generators ``[[J A, J b], [0, 0]]`` in original units.

        Returns:
            ``(..., M+1, M+1)``, same dtype and device.
        """
        self._check_generators(G, "generators_to_scaled")
        A_scaled, b_scaled = self.quantities_to_scaled(*quantity_from_generator(G))
        return generator_matrix(A_scaled, b_scaled)

    def _check_generators(self, G: torch.Tensor, caller: str) -> None:
        n = self.phase_dim + 1
        if not isinstance(G, torch.Tensor) or G.dim() < 2 or G.shape[-2:] != (n, n):
            got = tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__
            raise ValueError(f"PhaseSpaceScaling.{caller}: G must be (..., {n}, {n}), got {got}")

    # ------------------------------------------------------------------ serialisation

    def to_json(self) -> str:
        """JSON text with ``shift``, ``position_scale``, ``momentum_scale`` (exact floats)."""
        return json.dumps(
            {
                "shift": self.shift.tolist(),
                "position_scale": self.position_scale.tolist(),
                "momentum_scale": self.momentum_scale.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PhaseSpaceScaling:
        """Rebuild from :meth:`to_json` output (validated like the constructor)."""
        data = json.loads(text)
        keys = ("shift", "position_scale", "momentum_scale")
        if not isinstance(data, dict) or sorted(data) != sorted(keys):
            raise ValueError(f"PhaseSpaceScaling.from_json: need exactly the keys {keys}")
        return cls(*(data[k] for k in keys))


def identity_scaling(M: int) -> PhaseSpaceScaling:
    """The scaling that changes nothing: ``mu = 0``, ``D = I`` (``c = 1``), for ``M = 2d``."""
    if not isinstance(M, int) or isinstance(M, bool) or M <= 0 or M % 2 != 0:
        raise ValueError(f"identity_scaling: M must be a positive even int (M = 2d), got {M!r}")
    d = M // 2
    return PhaseSpaceScaling(torch.zeros(M), torch.ones(d), torch.ones(d))


def _coordinate(index: int, names: Sequence[str] | None, d: int) -> str:
    if names is not None:
        return f"coordinate {names[index]!r} (index {index})"
    kind, i = ("q", index) if index < d else ("p", index - d)
    return f"coordinate {index} ({kind}{i + 1})"


def fit_scaling(
    trajectories: torch.Tensor, names: Sequence[str] | None = None
) -> PhaseSpaceScaling:
    """Fit the Hamiltonian-preserving standardisation of a data set (module docstring).

    Args:
        trajectories: ``(B, n, M)`` states (any ``(..., M)`` works: all states are pooled),
            finite, with ``M = 2d`` even and at least two states.
        names: optional ``M`` coordinate names used in error messages.

    Returns:
        The :class:`PhaseSpaceScaling` with ``mu`` = mean state, ``c`` = geometric mean of
        ``sigma_qi sigma_pi`` (population standard deviations), ``a_i = sqrt(c sigma_qi /
        sigma_pi)``, ``b_i = sqrt(c sigma_pi / sigma_qi)``.

    Raises:
        ValueError: odd or zero ``M``, NaN/inf, or a coordinate with zero spread (named).
    """
    x = trajectories
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("fit_scaling: trajectories must be a float tensor of shape (B, n, M)")
    M = x.shape[-1]
    if M == 0 or M % 2 != 0:
        raise ValueError(
            f"fit_scaling: phase dimension M = {M} must be even (d positions then d momenta)"
        )
    if names is not None and len(names) != M:
        raise ValueError(f"fit_scaling: got {len(names)} names for M = {M} coordinates")
    d = M // 2
    states = x.detach().reshape(-1, M).to(_F64)
    if states.shape[0] < 2:
        raise ValueError("fit_scaling: need at least two states to measure spreads")
    finite = torch.isfinite(states).all(dim=0)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise ValueError(
            f"fit_scaling: {_coordinate(i, names, d)} contains NaN or inf; "
            "remove or repair those states first"
        )
    mean = states.mean(dim=0)
    sigma = states.std(dim=0, correction=0)
    flat = (sigma == 0) | (sigma <= 1e-12 * mean.abs())
    if bool(flat.any()):
        i = int(flat.nonzero()[0])
        raise ValueError(
            f"fit_scaling: {_coordinate(i, names, d)} has zero spread (std "
            f"{float(sigma[i]):.3g} around {float(mean[i]):.6g}); it carries no dynamics, "
            "so drop it (with its conjugate) or build PhaseSpaceScaling by hand"
        )
    sq, sp = sigma[:d].cpu(), sigma[d:].cpu()
    c = math.exp(float(torch.log(sq * sp).mean()))
    return PhaseSpaceScaling(mean.cpu(), torch.sqrt(c * sq / sp), torch.sqrt(c * sp / sq))
