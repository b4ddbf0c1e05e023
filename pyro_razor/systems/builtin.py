r"""The paper's systems with their ground-truth conserved quantities (appendix B).

- :func:`simple_harmonic_oscillator`: ``H = (q^2 + p^2)/2`` on ``R^2``; its only generator is
  ``H`` itself (SO(2)), appendix B.1.
- :func:`harmonic_oscillators`: ``n`` uncoupled unit oscillators, ``H = |p|^2/2 + |q|^2/2``;
  the ``n^2`` quantities ``H_i, R_ij, F_ij`` span the Lie algebra of U(n), appendix B.2.
- :func:`n_body`: ``n`` gravitating bodies in ``D`` dimensions with softening; the
  quantities ``T_d, RABS_dd', RCOM_dd', P_d, Q_dd'`` of appendix B.3 (7 for D = 2, 15 for D = 3).

Every quantity is a :class:`~pyro_razor.symmetry.QuadraticQuantity`
``C(x) = 1/2 x^T A x + b^T x`` with ``A`` and ``b`` written down exactly in float64. A product
of two linear forms ``(u.x)(v.x)`` has ``A = u v^T + v u^T``.

Names use 1-based indices (``"H_1"``, ``"R_12"``, ``"RABS_12"``); with 10 or more indices an
underscore separates the pair (``"R_3_10"``).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Sequence

import torch

from pyro_razor.checks import check_int
from pyro_razor.symmetry import QuadraticQuantity

from .base import HamiltonianSystem, gaussian_initial

__all__ = [
    "NBODY_MOVED_OFFSET",
    "NBODY_WIDER_STD",
    "SYSTEMS",
    "harmonic_oscillators",
    "make_system",
    "n_body",
    "simple_harmonic_oscillator",
]

NBODY_MOVED_OFFSET = 6.0
"""Common translation added to every position coordinate by the n-body ``"moved"`` test set.

Twice the default ``shift_std = 3``: the test centres of mass sit about two standard
deviations away from the training ones, out of distribution but not absurdly far."""

NBODY_WIDER_STD = 2.0
"""Standard deviation of the per-body positions in the n-body ``"wider"`` test set (train: 1)."""

_F64 = torch.float64


def _pair_label(i: int, j: int, count: int) -> str:
    """1-based label of an index pair, e.g. ``"12"``; ``"3_10"`` once indices reach 10."""
    return f"{i + 1}{j + 1}" if count < 10 else f"{i + 1}_{j + 1}"


def _unit(M: int, k: int) -> torch.Tensor:
    e = torch.zeros(M, dtype=_F64)
    e[k] = 1.0
    return e


def _product(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``A`` such that ``1/2 x^T A x = (u.x)(v.x)``."""
    return torch.outer(u, v) + torch.outer(v, u)


def _check_float(
    value: object, name: str, minimum: float | None = None, strict: bool = False
) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (out < minimum or (strict and out == minimum)):
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {value!r}")
    return out


# ---------------------------------------------------------------------------- oscillators


def _sho_hamiltonian(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x * x).sum(-1)


def simple_harmonic_oscillator() -> HamiltonianSystem:
    """Simple harmonic oscillator ``H(q, p) = (q^2 + p^2)/2`` (``m = k = 1``), ``M = 2``.

    Initial conditions ``x ~ N(0, I_2)`` (paper C.1). Ground truth: one quantity, ``"H"``
    itself (``A = I``, ``b = 0``), whose flow is the SO(2) rotation of phase space.
    """
    H = QuadraticQuantity("H", torch.eye(2, dtype=_F64), torch.zeros(2, dtype=_F64))
    return HamiltonianSystem(
        name="sho",
        phase_dim=2,
        hamiltonian=_sho_hamiltonian,
        sample_initial=gaussian_initial(2),
        conserved_quantities=(H,),
        params={},
    )


def harmonic_oscillators(n: int = 3) -> HamiltonianSystem:
    r"""``n`` uncoupled unit oscillators ``H = |p|^2/2 + |q|^2/2``, ``M = 2n`` (appendix B.2).

    ``x = (q_1..q_n, p_1..p_n)``; initial conditions ``x ~ N(0, I)`` (paper C.2).
    Ground truth, ``n^2`` quantities spanning u(n), in this order:

    - ``H_i = (q_i^2 + p_i^2)/2`` for ``i = 1..n``,
    - ``R_ij = q_i p_j - q_j p_i`` for ``i < j``,
    - ``F_ij = q_i q_j + p_i p_j`` for ``i < j``.
    """
    n = check_int(n, "harmonic_oscillators: n", 1)
    M = 2 * n

    def q(i: int) -> torch.Tensor:
        return _unit(M, i)

    def p(i: int) -> torch.Tensor:
        return _unit(M, n + i)

    zero_b = torch.zeros(M, dtype=_F64)
    quantities = [
        QuadraticQuantity(f"H_{i + 1}", torch.outer(q(i), q(i)) + torch.outer(p(i), p(i)), zero_b)
        for i in range(n)
    ]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in pairs:
        A = _product(q(i), p(j)) - _product(q(j), p(i))
        quantities.append(QuadraticQuantity(f"R_{_pair_label(i, j, n)}", A, zero_b))
    for i, j in pairs:
        A = _product(q(i), q(j)) + _product(p(i), p(j))
        quantities.append(QuadraticQuantity(f"F_{_pair_label(i, j, n)}", A, zero_b))
    return HamiltonianSystem(
        name="oscillators",
        phase_dim=M,
        hamiltonian=_sho_hamiltonian,
        sample_initial=gaussian_initial(M),
        conserved_quantities=tuple(quantities),
        params={"n": n},
    )


# ---------------------------------------------------------------------------- n bodies


def _nbody_hamiltonian(
    n: int, dim: int, masses: tuple[float, ...], G: float, softening: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    iu, ju = torch.triu_indices(n, n, offset=1)

    def hamiltonian(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        q = x[..., : n * dim].reshape(*lead, n, dim)
        p = x[..., n * dim :].reshape(*lead, n, dim)
        m = torch.tensor(masses, dtype=x.dtype, device=x.device)
        kinetic = ((p * p).sum(-1) / (2.0 * m)).sum(-1)
        i, j = iu.to(x.device), ju.to(x.device)
        diff = q[..., i, :] - q[..., j, :]
        r = torch.sqrt((diff * diff).sum(-1) + softening**2)
        potential = -(G * m[i] * m[j] / r).sum(-1)
        return kinetic + potential

    return hamiltonian


def _nbody_sampler(
    n: int,
    dim: int,
    position_std: float,
    shift_std: float,
    momentum_std: float,
    offset: float = 0.0,
) -> Callable[[int, torch.Generator], torch.Tensor]:
    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        kw = dict(generator=generator, dtype=_F64, device=generator.device)
        relative = torch.randn(count, n, dim, **kw)
        shift = torch.randn(count, 1, dim, **kw)
        momenta = torch.randn(count, n, dim, **kw)
        q = position_std * relative + shift_std * shift + offset
        p = momentum_std * momenta
        return torch.cat([q.reshape(count, n * dim), p.reshape(count, n * dim)], dim=-1)

    return sample


def _nbody_quantities(n: int, dim: int, masses: tuple[float, ...]) -> list[QuadraticQuantity]:
    M = 2 * n * dim
    zero_A = torch.zeros(M, M, dtype=_F64)
    zero_b = torch.zeros(M, dtype=_F64)
    total_mass = sum(masses)

    def q(i: int, d: int) -> torch.Tensor:
        return _unit(M, i * dim + d)

    def p(i: int, d: int) -> torch.Tensor:
        return _unit(M, n * dim + i * dim + d)

    # T_d = sum_i p_id  and  q_COM,d = sum_i m_i q_id / sum_i m_i, as linear forms on x.
    T = [sum(p(i, d) for i in range(n)) for d in range(dim)]
    com = [sum((masses[i] / total_mass) * q(i, d) for i in range(n)) for d in range(dim)]
    pairs = [(d, e) for d in range(dim) for e in range(d + 1, dim)]

    out = [QuadraticQuantity(f"T_{d + 1}", zero_A.clone(), T[d]) for d in range(dim)]
    for d, e in pairs:
        A = sum(_product(q(i, d), p(i, e)) - _product(q(i, e), p(i, d)) for i in range(n))
        out.append(QuadraticQuantity(f"RABS_{_pair_label(d, e, dim)}", A, zero_b))
    for d, e in pairs:
        A = _product(com[d], T[e]) - _product(com[e], T[d])
        out.append(QuadraticQuantity(f"RCOM_{_pair_label(d, e, dim)}", A, zero_b))
    for d in range(dim):
        out.append(QuadraticQuantity(f"P_{d + 1}", _product(T[d], T[d]), zero_b))
    for d, e in pairs:
        out.append(QuadraticQuantity(f"Q_{_pair_label(d, e, dim)}", _product(T[d], T[e]), zero_b))
    return out


def n_body(
    n: int = 3,
    dim: int = 2,
    masses: Sequence[float] | None = None,
    G: float = 1.0,
    softening: float = 1.0,
    shift_std: float = 3.0,
    momentum_std: float = 0.5,
) -> HamiltonianSystem:
    r"""``n`` gravitating bodies in ``dim`` dimensions with softened potential (appendix B.3).

    .. math:: H = \sum_i \frac{|p_i|^2}{2 m_i}
              - \sum_{i<j} \frac{G m_i m_j}{\sqrt{|q_i - q_j|^2 + \epsilon^2}}

    Layout: ``M = 2 n dim``, ``x = (q_1x, q_1y, q_2x, ..., p_1x, p_1y, p_2x, ...)``.

    Initial conditions (paper C.3): positions ``q_i = r_i + s`` with ``r_i ~ N(0, I)`` per body
    and one common shift ``s ~ N(0, shift_std^2 I)`` per trajectory, shared by all bodies;
    momenta ``p_i ~ N(0, momentum_std^2 I)``. The paper does not state the momentum scale; we
    use 0.5, the reference JAX code's default. With unit-std momenta about 80% of the 2d
    3-body systems have positive energy and fly apart (median body distance from the centre
    of mass about 8 after 15 time units, i.e. 50 steps of 0.3), so most of the data shows
    nearly free motion; with 0.5 over 90% have negative energy and the median distance stays
    about 1, so the data keeps probing the interaction. With the default softening 1 the force is
    bounded, so trajectories stay smooth even through close encounters. Test samplers:

    - ``"moved"``: the same draw plus :data:`NBODY_MOVED_OFFSET` (= 6) in every position
      coordinate;
    - ``"wider"``: per-body positions ``r_i ~ N(0, NBODY_WIDER_STD^2 I)`` (std 2 instead of 1).

    With the same generator state the three samplers make the same underlying draws, so
    ``moved - train`` is exactly the offset and ``wider - train`` is exactly ``r``.

    Ground truth, in this order (``d < d'``; ``P_tot = sum_i p_i``):

    - ``T_d = sum_i p_id`` (linear: ``A = 0``, translation of all bodies along ``d``);
    - ``RABS_dd' = sum_i (q_id p_id' - q_id' p_id)`` (rotation about the origin);
    - ``RCOM_dd' = q_COM,d P_tot,d' - q_COM,d' P_tot,d``, ``q_COM = sum m_i q_i / sum m_i``.
      The paper writes ``q_COM ^ p_COM`` with ``p_COM = sum m_i p_i / sum m_i``, which is
      conserved only for equal masses; with the total momentum it is conserved for any
      masses, and for unit masses it is ``n`` times the paper's quantity (same generator
      direction). ``RREL = RABS - RCOM`` here (the paper's ``RABS - 2 RCOM`` holds for n = 2);
    - ``P_d = T_d^2``;  ``Q_dd' = T_d T_d'``.

    That is ``2 dim + 3 dim(dim-1)/2`` quantities: 7 for ``dim = 2``, 15 for ``dim = 3`` (the
    orbit group a learned model should find). The ``"oracle"`` variant uses SE(dim), the
    translations ``T_d`` and rotations ``RABS_dd'`` (the paper's Table 3 oracle, SE(2) for
    ``dim = 2``); ``"oracle_orbit"`` all of them.

    Args:
        n: number of bodies (>= 2).
        dim: spatial dimension (>= 1).
        masses: ``n`` positive masses; ``None`` means all ones.
        G: gravitational constant (finite).
        softening: ``epsilon >= 0`` (0 gives the singular Newtonian potential).
        shift_std: standard deviation of the common position shift (>= 0).
        momentum_std: standard deviation of every momentum coordinate (>= 0, default 0.5).
    """
    n = check_int(n, "n_body: n", 2)
    dim = check_int(dim, "n_body: dim", 1)
    if masses is None:
        mass_tuple = (1.0,) * n
    else:
        mass_tuple = tuple(_check_float(m, "n_body: every mass", 0.0, strict=True) for m in masses)
        if len(mass_tuple) != n:
            raise ValueError(f"n_body: masses must have n = {n} entries, got {len(mass_tuple)}")
    G = _check_float(G, "n_body: G")
    softening = _check_float(softening, "n_body: softening", 0.0)
    shift_std = _check_float(shift_std, "n_body: shift_std", 0.0)
    momentum_std = _check_float(momentum_std, "n_body: momentum_std", 0.0)

    def sampler(position_std: float, offset: float = 0.0):
        return _nbody_sampler(n, dim, position_std, shift_std, momentum_std, offset)

    return HamiltonianSystem(
        name="nbody",
        phase_dim=2 * n * dim,
        hamiltonian=_nbody_hamiltonian(n, dim, mass_tuple, G, softening),
        sample_initial=sampler(1.0),
        conserved_quantities=tuple(_nbody_quantities(n, dim, mass_tuple)),
        test_initial={
            "moved": sampler(1.0, NBODY_MOVED_OFFSET),
            "wider": sampler(NBODY_WIDER_STD),
        },
        params={
            "n": n,
            "dim": dim,
            "masses": mass_tuple,
            "G": G,
            "softening": softening,
            "shift_std": shift_std,
            "momentum_std": momentum_std,
        },
        # the paper's fixed oracle (Table 3): SE(dim), translations and absolute rotations
        oracle_quantities=tuple(
            c.name for c in _nbody_quantities(n, dim, mass_tuple)
            if c.name.startswith(("T_", "RABS_"))
        ),
    )


# ---------------------------------------------------------------------------- registry

SYSTEMS: dict[str, Callable[..., HamiltonianSystem]] = {
    "sho": simple_harmonic_oscillator,
    "oscillators": harmonic_oscillators,
    "nbody": n_body,
}
"""Built-in system factories by name; :func:`make_system` looks names up here."""


def is_import_path(name: object) -> bool:
    """Whether ``name`` names a user's system factory, ``"package.module:function"``."""
    return isinstance(name, str) and name.count(":") == 1 and all(name.split(":"))


def _imported_factory(name: str) -> Callable[..., HamiltonianSystem]:
    module_name, attribute = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"system {name!r}: cannot import module {module_name!r} ({exc}); check the path "
            "and that the module is importable (installed, or its folder on PYTHONPATH)"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(
            f"system {name!r}: module {module_name!r} has no function {attribute!r} returning "
            "a HamiltonianSystem"
        )
    return factory


def make_system(name: str, **params: object) -> HamiltonianSystem:
    """Build a system by name, e.g. ``make_system("nbody", n=3, dim=2)``, or a user's system
    by import path, ``make_system("mypackage.module:make_system", **params)``: a function
    returning a :class:`HamiltonianSystem` (with or without ground-truth quantities).

    Names: ``"sho"`` (no parameters), ``"oscillators"`` (``n``), ``"nbody"`` (``n, dim,
    masses, G, softening, shift_std, momentum_std``).

    Raises:
        ValueError: unknown name (the message lists the known ones), an import path that
            does not import or does not return a system, or an unknown parameter (the
            message names it and lists the accepted ones).
    """
    if is_import_path(name):
        factory = _imported_factory(name)
    elif not isinstance(name, str) or name not in SYSTEMS:
        raise ValueError(
            f"unknown system {name!r}; known systems: {sorted(SYSTEMS)}, or a user's system "
            "as 'package.module:function'"
        )
    else:
        factory = SYSTEMS[name]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        signature = None
    kinds = [] if signature is None else [p.kind for p in signature.parameters.values()]
    if signature is not None and inspect.Parameter.VAR_KEYWORD not in kinds:
        accepted = list(signature.parameters)
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for system {name!r}; it accepts "
                f"{accepted if accepted else 'no parameters'}"
            )
    try:
        system = factory(**params)
    except TypeError as exc:
        if not is_import_path(name):
            raise
        raise ValueError(f"system {name!r} could not be built with {params}: {exc}") from None
    if not isinstance(system, HamiltonianSystem):
        raise ValueError(
            f"system {name!r} returned {type(system).__name__}, not a HamiltonianSystem"
        )
    return system
