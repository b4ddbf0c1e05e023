r"""Polynomial conserved quantities with non-linear flows (issue 24, point 2).

``K`` quantities from the polynomials of degree ``<= D`` (``D`` in 2..4) without constant term,

.. math:: C_k(x) = \sum_{f=1}^{F} \eta_{kf}\, \phi_f(x), \qquad
          \phi_f(x) = \prod_{i=1}^{M} x_i^{e_{fi}}, \quad 1 \le \sum_i e_{fi} \le D,

over the ``F = binom(M + D, D) - 1`` monomials (ordered by degree, then lexicographically with
the first coordinate's exponent highest: for ``M = 2``, ``q, p, q^2, q p, p^2, q^3, ...``).
``eta (K, F)`` is a ``pyro.param`` of the model (empirical Bayes), like the quadratic ``W, b``.

Values and gradients are closed-form monomial arithmetic, differentiable in ``x`` and ``eta``:
``d phi_f / d x_j = e_fj x_j^{e_fj - 1} prod_{i != j} x_i^{e_fi}`` is ``e_fj`` times a monomial
``psi_g`` of degree ``0..D-1``, so ``grad C(x) = L(c) psi(x)`` with a ``(M, F')`` matrix
``L(c)`` linear in the coefficients ``c`` (``F' = binom(M + D - 1, D - 1)``): a flow computes
``L(c)`` once per symmetry time and then costs ``F'`` monomials and an ``M x F'`` product per
point and evaluation.

**Flow.** The symmetry of times ``tau in R^K`` is the time-1 flow of ``C_tau = sum_k tau_k
C_k``, ``x' = J grad C_tau(x)``; for ``D > 2`` it has no closed form and is integrated with
``n = flow_steps`` sub-steps of the **implicit midpoint rule** (:meth:`PolynomialQuantities.
flow`), ``y = x + h J grad C_tau((x + y) / 2)``, ``h = 1/n``, solved by an explicit-Euler
predictor and ``flow_iterations`` fixed-point corrections. Implicit midpoint is symplectic,
symmetric (time-reversible: ``Phi^{-tau} = (Phi^{tau})^{-1}``), of order 2, and conserves every
quadratic ``C_tau`` exactly (for a degree-2 quantity it is the Cayley transform of ``h tau G``).
With a fixed number of corrections these properties hold up to the fixed-point residual, which
shrinks by the factor ``h ||tau Hess C|| / 2`` per correction, so the map stays smooth and
differentiable; it converges only where that factor is below 1, and an optional speed limit
(:meth:`PolynomialQuantities.flow_field`) keeps every point finite where it is not. Measured
accuracy (tests): order 2 against the exact expm flow of quadratics; the quartic energy's
``C_tau`` kept to a relative 1.4e-2 with 8 sub-steps for ``|tau| <= 1``, ``x ~ N(0, 0.7^2)``,
but only to ~1 with 4 sub-steps for ``|tau| <= pi``, ``x ~ N(0, 1)`` (stiff there). Cost per
flow: ``n (1 + iterations)`` gradient evaluations of ``C_tau``.
"""

from __future__ import annotations

import math
from itertools import combinations_with_replacement

import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from pyro_razor.models import polynomial_flow
from pyro_razor.models.flow_hamiltonian import FlowSymmetrisedHamiltonian
from pyro_razor.symmetry import check_phase_dim

__all__ = [
    "MAX_DEGREE",
    "PolynomialQuantities",
    "monomial_exponents",
    "monomial_names",
    "quadratic_coefficients",
]

MAX_DEGREE = 4
"""The highest polynomial degree offered."""


def monomial_exponents(phase_dim: int, degree: int) -> torch.Tensor:
    """``(F, M)`` exponents of the monomials of degree ``1..degree`` in ``M`` variables, by
    degree, then with the first coordinate's exponent highest (``M = 2``: ``q, p, q^2, q p, p^2,
    q^3, ...``); ``F = binom(M + degree, degree) - 1``."""
    check_phase_dim(phase_dim)
    if not 1 <= degree <= MAX_DEGREE:
        raise ValueError(f"degree must be in 1..{MAX_DEGREE}, got {degree}")
    rows = []
    for d in range(1, degree + 1):
        for combo in combinations_with_replacement(range(phase_dim), d):
            e = [0] * phase_dim
            for i in combo:
                e[i] += 1
            rows.append(e)
    return torch.tensor(rows, dtype=torch.long)


def monomial_names(names: list[str], degree: int) -> list[str]:
    """Readable names of the monomials of :func:`monomial_exponents`, e.g. ``"q1^2 p1"``."""
    E = monomial_exponents(len(names), degree)
    return [" ".join(n if k == 1 else f"{n}^{k}"
                     for n, k in zip(names, row.tolist(), strict=True) if k) for row in E]


def quadratic_coefficients(A: torch.Tensor, b: torch.Tensor, degree: int) -> torch.Tensor:
    """``(K, F)`` coefficients of ``C = 1/2 x^T A x + b^T x`` (``A (K, M, M)`` symmetric, ``b (K,
    M)``) in the degree-``degree`` monomial basis: ``b_i`` on ``x_i``, ``A_ii / 2`` on ``x_i^2``,
    ``A_ij`` on ``x_i x_j`` (``i < j``), zero on the higher degrees."""
    K, M = b.shape
    E = monomial_exponents(M, max(degree, 2))
    eta = b.new_zeros(K, E.shape[0])
    for f, row in enumerate(E.tolist()):
        idx = [i for i, k in enumerate(row) for _ in range(k)]
        if len(idx) == 1:
            eta[:, f] = b[:, idx[0]]
        elif len(idx) == 2:
            i, j = idx
            eta[:, f] = 0.5 * A[:, i, i] if i == j else A[:, i, j]
    return eta


def _lowering(E: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """``(M, F, F')``: ``L[j, f, g] = e_fj`` where ``E_f - delta_j = lower_g``, else 0."""
    M = E.shape[1]
    index = {tuple(row): g for g, row in enumerate(lower.tolist())}
    L = torch.zeros(M, E.shape[0], lower.shape[0])
    for f, row in enumerate(E.tolist()):
        for j in range(M):
            if row[j]:
                shifted = tuple(k - (i == j) for i, k in enumerate(row))
                L[j, f, index[shifted]] = float(row[j])
    return L


class PolynomialQuantities(PyroModule):
    """``K`` learnable polynomial conserved quantities of degree ``<= degree``.

    Args:
        phase_dim: ``M``.
        num_quantities: ``K >= 1``.
        degree: ``D`` in 2..4.
        init_std: the coefficients of degree 1-2 start ``N(0, init_std^2)`` (0: identity
            flow), those of degree 3+ at zero (the flow of a random cubic or quartic, e.g.
            ``q^3 p``, leaves every bounded region in finite time).
        generator: optional ``torch.Generator`` for the initial values.
        init: optional ``(K, F)`` initial coefficients (replaces the random draw), e.g.
            :func:`quadratic_coefficients` of a direct estimate.
        flow_steps: implicit-midpoint sub-steps ``n`` of the time-1 flow.
        flow_iterations: fixed-point corrections per sub-step.
        max_speed: ``v``, a speed limit of the flow (``None``: none), see :meth:`flow_field`.
        compile_flow: run the training step's flows and Jacobians through ``torch.compile``
            (:func:`~pyro_razor.models.polynomial_flow.flow_and_jacobian`; evaluation under
            ``torch.no_grad`` stays eager).
    """

    family = "polynomial"

    def __init__(
        self,
        phase_dim: int,
        num_quantities: int,
        degree: int = 4,
        init_std: float = 0.0,
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
        flow_steps: int = 8,
        flow_iterations: int = 2,
        max_speed: float | None = None,
        compile_flow: bool = False,
    ) -> None:
        super().__init__()
        check_phase_dim(phase_dim)
        if num_quantities < 1:
            raise ValueError(f"num_quantities must be >= 1, got {num_quantities}")
        if not 2 <= degree <= MAX_DEGREE:
            raise ValueError(f"degree must be in 2..{MAX_DEGREE}, got {degree}")
        if not (init_std >= 0 and math.isfinite(init_std)):
            raise ValueError(f"init_std must be >= 0 and finite, got {init_std}")
        if flow_steps < 1 or flow_iterations < 1:
            raise ValueError(f"flow_steps and flow_iterations must be >= 1, got {flow_steps}, "
                             f"{flow_iterations}")
        if max_speed is not None and not (max_speed > 0 and math.isfinite(max_speed)):
            raise ValueError(f"max_speed must be positive and finite or None, got {max_speed}")
        self.max_speed = None if max_speed is None else float(max_speed)
        self.compile_flow = bool(compile_flow)
        M, K = phase_dim, num_quantities
        E = monomial_exponents(M, degree)
        F = E.shape[0]
        self.phase_dim, self.num_quantities, self.degree = M, K, degree
        self.flow_steps, self.flow_iterations = int(flow_steps), int(flow_iterations)
        if init is None:  # random in degrees 1-2 only: a random quartic's flow can blow up
            eta = init_std * torch.randn(K, F, generator=generator) * (E.sum(1) <= 2)
        else:
            eta = torch.as_tensor(init).clone()  # its own floating dtype until the model's .to
            if not eta.is_floating_point():
                eta = eta.to(torch.get_default_dtype())
            if eta.shape != (K, F) or not torch.isfinite(eta).all():
                raise ValueError(f"PolynomialQuantities: init must be finite of shape {(K, F)} "
                                 f"(K quantities x F monomials), got {tuple(eta.shape)}")
        self.eta = PyroParam(eta, constraints.real)
        lower = torch.cat([torch.zeros(1, M, dtype=torch.long), monomial_exponents(M, degree - 1)])
        offset = torch.arange(M) * (degree + 1)  # flat index of x_i^0 in the power table
        self.register_buffer("_exponents", E, persistent=False)
        self.register_buffer("_value_index", E + offset, persistent=False)  # (F, M)
        self.register_buffer("_lower_index", lower + offset, persistent=False)  # (F', M)
        self.register_buffer("_lowering", _lowering(E, lower), persistent=False)  # (M, F, F')
        # d psi_g / d x_j = e_gj psi_g' within the lower monomials themselves: (M, F', F')
        self.register_buffer("_lower_lowering", _lowering(lower, lower), persistent=False)

    @property
    def num_monomials(self) -> int:
        """``F``."""
        return self._exponents.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.eta.dtype

    @property
    def device(self) -> torch.device:
        return self.eta.device

    # ----------------------------------------------------------------- monomials
    def monomials(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)``: ``(..., M)`` points -> ``(..., F)`` monomial values."""
        return polynomial_flow.indexed_monomials(x, self._value_index, self.degree)

    def lower_monomials(self, x: torch.Tensor) -> torch.Tensor:
        """``psi(x)``, the monomials of degree ``0..D-1``: ``(..., M)`` -> ``(..., F')``."""
        return polynomial_flow.indexed_monomials(x, self._lower_index, self.degree)

    def monomial_gradients(self, x: torch.Tensor) -> torch.Tensor:
        """``d phi_f / d x_j``: ``(..., M)`` points -> ``(..., M, F)``."""
        return torch.einsum("...g,jfg->...jf", self.lower_monomials(x),
                            self._lowering.to(x.dtype))

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``C_k(x)``: ``(..., M)`` -> ``(..., K)``."""
        return self.monomials(x) @ self.eta.T

    def gradients(self, x: torch.Tensor) -> torch.Tensor:
        """``grad C_k(x)``: ``(..., M)`` -> ``(..., K, M)``."""
        return torch.einsum("...jf,kf->...kj", self.monomial_gradients(x), self.eta)

    # ----------------------------------------------------------------- flows
    def combined(self, tau: torch.Tensor) -> torch.Tensor:
        """Coefficients ``tau @ eta`` of ``C_tau = sum_k tau_k C_k``: ``(..., K)`` -> ``(...,
        F)``."""
        if tau.shape[-1] != self.num_quantities:
            raise ValueError(f"tau must have shape (..., {self.num_quantities}), got "
                             f"{tuple(tau.shape)}")
        return tau @ self.eta

    def gradient_matrix(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``L(c)`` with ``grad C(x) = L(c) psi(x)`` for ``C = c . phi``: ``(..., F)`` ->
        ``(..., M, F')``."""
        return torch.einsum("...f,jfg->...jg", coefficients, self._lowering.to(coefficients))

    def flow_field(self, x: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
        """``f = J grad C(x) = J L psi(x)``: ``x (..., M)``, ``L (..., M, F')`` (from
        :meth:`gradient_matrix`) broadcastable against ``x``'s batch dims -> ``(..., M)``.

        With ``max_speed = v`` the field is ``f / sqrt(1 + |f|^2 / v^2)``: the same orbits
        (a positive scalar times ``J grad C``, so ``C`` is still conserved exactly by the
        continuous flow), traversed at most at speed ``v``. A cubic or quartic ``C`` can send
        points to infinity in finite time (``C = q^3 p``: ``q' = q^3``); with the limit every
        fixed-point iterate moves a point by at most ``h v`` and stays finite. The limit
        changes the flow only where ``|f|`` approaches ``v`` (relatively by ``|f|^2 / 2v^2``),
        and the flow is no longer symplectic there."""
        return polynomial_flow.flow_field(x, L, self._lower_index, self.degree,
                                          self.max_speed)

    def flow(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """``Phi^tau(x)``, the time-1 flow of ``C_tau`` by ``flow_steps`` implicit-midpoint
        sub-steps (module docstring).

        Args:
            x: ``(..., M)`` points.
            tau: ``(..., K)`` symmetry times, broadcastable against ``x``'s batch dims.

        Returns:
            ``(..., M)`` transformed points (differentiable in ``x``, ``tau`` and ``eta``).
        """
        return self.flow_of(x, self.combined(tau))

    def flow_of(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The time-1 implicit-midpoint flow of ``C = c . phi`` for coefficients ``c (...,
        F)`` broadcastable against ``x (..., M)``'s batch dims -> ``(..., M)``."""
        return polynomial_flow.midpoint_flow(x, self.gradient_matrix(c), self._lower_index,
                                             self.degree, self.max_speed, self.flow_steps,
                                             self.flow_iterations)

    def flow_and_jacobian(self, x: torch.Tensor, tau: torch.Tensor):
        """``(Phi^tau(x), DPhi^tau(x))``: :meth:`flow` (the same operations, the same values)
        and its Jacobian ``(..., M, M)``, ``D[i, j] = d Phi_i / d x_j``, propagated through
        every sub-step and fixed-point correction (tangent-linear: ``Y = T + h Df(m) (T +
        Y) / 2`` beside ``y = x + h f(m)``), so ``grad (F o Phi) = D^T grad F`` needs no
        backward pass through the flow."""
        return self.flow_and_jacobian_of(x, self.combined(tau))

    def flow_and_jacobian_of(self, x: torch.Tensor, c: torch.Tensor):
        """:meth:`flow_and_jacobian` for coefficients ``c (..., F)`` (as :meth:`flow_of`)."""
        L = self.gradient_matrix(c)
        # Hess C(x)[i, j] = sum_h Hc[i, j, h] psi_h(x), from grad C = L psi
        Hc = torch.einsum("...ig,jgh->...ijh", L, self._lower_lowering.to(L))
        return polynomial_flow.flow_and_jacobian(
            x, L, Hc, self._lower_index, self.degree, self.max_speed, self.flow_steps,
            self.flow_iterations, compiled=self.compile_flow)

    def generators(self) -> torch.Tensor:
        """Refused: a polynomial quantity's flow is non-linear and has no generator matrix."""
        raise ValueError(
            "polynomial conserved quantities have non-linear flows and no (M+1)x(M+1) "
            "generator matrices; read their coefficients with model.quantities.eta "
            "(monomials: pyro_razor.models.polynomial_quantities.monomial_names)"
        )

    # ----------------------------------------------------------------- symmetrisation
    def symmetry_elements(self, tau: torch.Tensor) -> torch.Tensor:
        """What the model draws per call: the ``(P, S, K)`` times themselves (the flow depends
        on the point, so nothing can be precomputed once per call as for quadratics)."""
        return tau

    def hamiltonian(self, weights, activation, elements: torch.Tensor | None):
        """``H_hat`` symmetrised over the numerical flows of times ``elements (P, S, K)``."""
        return FlowSymmetrisedHamiltonian(weights, activation, self, elements)
