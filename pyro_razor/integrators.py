r"""Differentiable one-step integrators for autonomous ODEs ``x' = f(x)`` (paper section 2.2).

A *vector field* is any callable ``f`` mapping a ``(..., M)`` tensor to a ``(..., M)`` tensor,
e.g. the Hamiltonian field ``x -> J grad H(x)`` with ``x = (q, p)``, positions first
(DESIGN.md section 1). Every step function has the signature ``step(f, x, h) -> x_next`` with
``x`` and ``x_next`` of shape ``(..., M)`` and is built from out-of-place tensor arithmetic only,
so gradients flow through it to ``x``, to ``h`` (when it is a tensor) and to any parameters
inside ``f``. All leading dimensions are batch dimensions; device and dtype follow ``x``.

The paper's likelihood ``x_{t+dt} ~ N(ODESolve(J grad H, x_t, dt), sigma^2 I)`` (section 2.2;
the experiments of appendix C use 20 explicit Euler sub-steps per ``dt``); :func:`integrate`
does that with ``method="euler", steps=20`` and offers the higher-order and symplectic steps
below as drop-in replacements. Global orders of accuracy (the error at a fixed time after
steps of size ``h`` is ``O(h^order)``) and costs:

- ``"euler"`` -- :func:`euler_step`: order 1, 1 evaluation of ``f`` per step, not symplectic.
- ``"rk4"`` -- :func:`rk4_step`: order 4, 4 evaluations, not symplectic.
- ``"leapfrog"`` -- :func:`leapfrog_step`: order 2, 3 evaluations, symplectic **only for
  separable** ``H(q, p) = T(p) + V(q)``.
- ``"midpoint"`` -- :func:`implicit_midpoint_step`: order 2, ``iterations + 1`` evaluations,
  symplectic for any ``H`` once its fixed-point iteration has converged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from pyro_razor.checks import check_int

__all__ = [
    "METHODS",
    "StepFunction",
    "VectorField",
    "euler_step",
    "implicit_midpoint_step",
    "integrate",
    "leapfrog_step",
    "rk4_step",
    "rollout",
]

VectorField = Callable[[torch.Tensor], torch.Tensor]
"""``f: (..., M) -> (..., M)``."""

StepFunction = Callable[[VectorField, torch.Tensor, "float | torch.Tensor"], torch.Tensor]
"""``step(f, x, h) -> x_next``, all of shape ``(..., M)``."""


def euler_step(f: VectorField, x: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
    r"""One explicit (forward) Euler step ``x' = x + h f(x)``.

    Local error ``O(h^2)``, global order 1. Not symplectic: on the harmonic oscillator the
    energy grows by the factor ``1 + h^2`` every step.

    Args:
        f: vector field ``(..., M) -> (..., M)``.
        x: ``(..., M)`` current states.
        h: step size, a float or a tensor broadcastable against ``x``.

    Returns:
        ``(..., M)`` states after one step.
    """
    return x + h * f(x)


def rk4_step(f: VectorField, x: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
    r"""One classic fourth-order Runge--Kutta step.

    .. math::
        k_1 = f(x),\ k_2 = f(x + \tfrac{h}{2} k_1),\ k_3 = f(x + \tfrac{h}{2} k_2),\
        k_4 = f(x + h k_3),\qquad x' = x + \tfrac{h}{6}(k_1 + 2 k_2 + 2 k_3 + k_4).

    Local error ``O(h^5)``, global order 4. Not symplectic (energy drifts slowly).

    Args:
        f: vector field ``(..., M) -> (..., M)``.
        x: ``(..., M)`` current states.
        h: step size, a float or a tensor broadcastable against ``x``.

    Returns:
        ``(..., M)`` states after one step.
    """
    k1 = f(x)
    k2 = f(x + (0.5 * h) * k1)
    k3 = f(x + (0.5 * h) * k2)
    k4 = f(x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _split_halves(x: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(..., M)`` phase-space points into positions and momenta ``(..., M/2)`` each."""
    M = x.shape[-1]
    if M % 2 != 0:
        raise ValueError(
            f"{who} needs an even phase dimension M = 2d (positions then momenta), got M = {M}"
        )
    d = M // 2
    return x[..., :d], x[..., d:]


def leapfrog_step(f: VectorField, x: torch.Tensor, h: float | torch.Tensor) -> torch.Tensor:
    r"""One Stoermer--Verlet (leapfrog, kick-drift-kick) step, written in terms of ``f`` only.

    For a *separable* Hamiltonian ``H(q, p) = T(p) + V(q)`` the field ``f = J grad H`` splits as
    ``f_q = dT/dp`` (depends on ``p`` only) and ``f_p = -dV/dq`` (depends on ``q`` only), and

    .. math::
        p_{1/2} = p + \tfrac{h}{2} f_p(q, p),\quad
        q' = q + h f_q(q, p_{1/2}),\quad
        p' = p_{1/2} + \tfrac{h}{2} f_p(q', p_{1/2}).

    For separable ``H`` this is the composition of exact flows of ``V`` and ``T``, hence
    symplectic, time-reversible and of global order 2, with a bounded energy error over
    exponentially long times. **For a non-separable ``H`` it is only a consistent
    first-order method, neither symplectic nor second order**; use
    :func:`implicit_midpoint_step` there. A learned neural Hamiltonian is in general not
    separable.

    Uses three evaluations of ``f`` per step (only one half of each result is used).

    Args:
        f: vector field ``(..., M) -> (..., M)`` with ``x = (q, p)``, positions first.
        x: ``(..., M)`` current states, ``M`` even.
        h: step size, a float or a tensor broadcastable against ``x[..., :M/2]``.

    Returns:
        ``(..., M)`` states after one step.

    Raises:
        ValueError: if ``M`` is odd.
    """
    q, p = _split_halves(x, "leapfrog_step")
    d = q.shape[-1]
    p_half = p + (0.5 * h) * f(x)[..., d:]
    q_new = q + h * f(torch.cat([q, p_half], dim=-1))[..., :d]
    p_new = p_half + (0.5 * h) * f(torch.cat([q_new, p_half], dim=-1))[..., d:]
    return torch.cat([q_new, p_new], dim=-1)


def implicit_midpoint_step(
    f: VectorField, x: torch.Tensor, h: float | torch.Tensor, iterations: int = 8
) -> torch.Tensor:
    r"""One implicit midpoint step ``x' = x + h f((x + x') / 2)``, solved by fixed-point iteration.

    Writing ``x' = x + h k``, the slope solves ``k = f(x + h k / 2)``. Starting from the explicit
    Euler guess ``k_0 = f(x)``, we iterate ``k_{i+1} = f(x + h k_i / 2)`` exactly ``iterations``
    times and return ``x + h k``. The loop is unrolled, so the result is differentiable by
    ordinary autograd (no implicit-function trick).

    Convergence: the map ``k -> f(x + h k / 2)`` is a contraction when ``h Lip(f) / 2 < 1``, in
    particular whenever ``h Lip(f) < 1``; the error in ``k`` shrinks by the factor
    ``h Lip(f) / 2`` per iteration (plus roundoff). With too few iterations, or a too large
    ``h``, the returned state does not solve the midpoint equation and loses symplecticity.

    When converged the method is symplectic for *any* Hamiltonian (separable or not),
    time-reversible, conserves every quadratic first integral exactly, and has global order 2.
    Cost: ``iterations + 1`` evaluations of ``f`` per step.

    Args:
        f: vector field ``(..., M) -> (..., M)``.
        x: ``(..., M)`` current states.
        h: step size, a float or a tensor broadcastable against ``x``.
        iterations: number of fixed-point iterations, a positive int.

    Returns:
        ``(..., M)`` states after one step.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(
            f"implicit_midpoint_step needs iterations to be a positive int, got {iterations!r}"
        )
    k = f(x)
    for _ in range(iterations):
        k = f(x + (0.5 * h) * k)
    return x + h * k


METHODS: Mapping[str, StepFunction] = {
    "euler": euler_step,
    "rk4": rk4_step,
    "leapfrog": leapfrog_step,
    "midpoint": implicit_midpoint_step,
}
"""Step functions by name; :func:`integrate` and :func:`rollout` accept these names."""


def _resolve_method(method: str | StepFunction) -> StepFunction:
    if callable(method):
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(
            f"unknown integration method {method!r}; choose one of {sorted(METHODS)} "
            "or pass a step function step(f, x, h)"
        )
    return METHODS[method]


def _check_state(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., M), got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(
            f"{name} must have shape (..., M) with M >= 1 (last dim = phase space), "
            f"got shape {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; integrate only finite states")
    return x


def _check_time(value: float | torch.Tensor, name: str, x: torch.Tensor) -> float | torch.Tensor:
    """Validate a finite time span; tensors are moved to ``x``'s dtype/device (grad kept)."""
    if isinstance(value, torch.Tensor):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite, got {value}")
        return value.to(dtype=x.dtype, device=x.device)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def integrate(
    f: VectorField,
    x: torch.Tensor,
    duration: float | torch.Tensor,
    steps: int = 1,
    method: str | StepFunction = "euler",
) -> torch.Tensor:
    r"""Advance ``x`` by ``duration`` with ``steps`` equal sub-steps of size ``h = duration/steps``.

    This is the ``ODESolve(J grad H, x_t, dt)`` in the paper's likelihood (section 2.2); the
    experiments (appendix C) use ``method="euler", steps=20``. The global error at the end is
    ``O(h^p)`` with ``p`` the method's order (1 Euler, 4 RK4, 2 leapfrog and midpoint).

    Args:
        f: vector field ``(..., M) -> (..., M)``.
        x: ``(..., M)`` initial states (any leading batch dims).
        duration: total time, a finite float or a tensor broadcastable against ``x`` (e.g.
            ``(..., 1)`` for per-row durations); a tensor is cast to ``x``'s dtype and device
            and gradients flow through it. Negative durations integrate backwards.
        steps: number of equal sub-steps, a positive int.
        method: ``"euler"``, ``"rk4"``, ``"leapfrog"`` or ``"midpoint"`` (see :data:`METHODS`),
            or a step function ``step(f, x, h)``, e.g.
            ``functools.partial(implicit_midpoint_step, iterations=20)``.

    Returns:
        ``(..., M)`` states at time ``duration``.

    Raises:
        ValueError: unknown method, ``steps`` not a positive int, non-finite duration or
            state, or ``x`` without a phase-space dimension.
        TypeError: ``x`` not a tensor or ``duration`` not a number/tensor.
    """
    step = _resolve_method(method)
    steps = check_int(steps, "steps")
    x = _check_state(x, "x")
    h = _check_time(duration, "duration", x) / steps
    for _ in range(steps):
        x = step(f, x, h)
    return x


def rollout(
    f: VectorField,
    x0: torch.Tensor,
    dt: float | torch.Tensor,
    n_points: int,
    steps_per_point: int = 1,
    method: str | StepFunction = "euler",
) -> torch.Tensor:
    r"""Trajectory ``x(0), x(dt), ..., x((n_points - 1) dt)`` from ``x(0) = x0``.

    Each interval ``dt`` is covered by ``steps_per_point`` sub-steps (see :func:`integrate`),
    so the trajectory is the same as integrating once for ``(n_points - 1) * steps_per_point``
    steps of size ``dt / steps_per_point`` and recording every ``steps_per_point``-th state.
    Used for long-horizon evaluation of a learned Hamiltonian.

    Args:
        f: vector field ``(..., M) -> (..., M)``.
        x0: ``(..., M)`` initial states.
        dt: finite time between recorded points (float, or tensor broadcastable against ``x0``).
        n_points: number of recorded points including ``x0``, a positive int.
        steps_per_point: sub-steps per recorded interval, a positive int.
        method: as in :func:`integrate`.

    Returns:
        ``(..., n_points, M)`` states; index ``0`` along dim ``-2`` equals ``x0``.
    """
    step = _resolve_method(method)
    n_points = check_int(n_points, "n_points")
    steps_per_point = check_int(steps_per_point, "steps_per_point")
    x = _check_state(x0, "x0")
    h = _check_time(dt, "dt", x) / steps_per_point
    states = [x]
    for _ in range(n_points - 1):
        for _ in range(steps_per_point):
            x = step(f, x, h)
        states.append(x)
    return torch.stack(states, dim=-2)
