"""Tests for :mod:`pyro_razor.integrators` (float64 throughout unless stated)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from pyro_razor.integrators import (
    METHODS,
    euler_step,
    implicit_midpoint_step,
    integrate,
    leapfrog_step,
    rk4_step,
    rollout,
)
from pyro_razor.symmetry import symplectic_matrix

DT = torch.float64


def pendulum(x: torch.Tensor) -> torch.Tensor:
    """``H = p^2/2 - cos q``: ``q' = p``, ``p' = -sin q`` (separable, nonlinear)."""
    q, p = x[..., :1], x[..., 1:]
    return torch.cat([p, -torch.sin(q)], dim=-1)


def sho(x: torch.Tensor) -> torch.Tensor:
    """Harmonic oscillator ``H = (q^2 + p^2)/2``."""
    return torch.cat([x[..., 1:], -x[..., :1]], dim=-1)


def henon_heiles(x: torch.Tensor) -> torch.Tensor:
    """``H = |p|^2/2 + (q1^2 + q2^2)/2 + q1^2 q2 - q2^3/3`` (separable, M = 4)."""
    q1, q2, p1, p2 = x.unbind(-1)
    return torch.stack([p1, p2, -(q1 + 2 * q1 * q2), -(q2 + q1**2 - q2**2)], dim=-1)


def linear_field(L: torch.Tensor):
    return lambda x: x @ L.T


X0_PENDULUM = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [2.0, 0.0]], dtype=DT)
T_PENDULUM = 2.0


@pytest.fixture(scope="module")
def pendulum_reference() -> torch.Tensor:
    """Pendulum states at ``T = 2`` from DOP853 with ``rtol = atol = 1e-13``."""
    rows = []
    for y0 in X0_PENDULUM.numpy():
        sol = solve_ivp(
            lambda t, y: [y[1], -np.sin(y[0])],
            (0.0, T_PENDULUM),
            y0,
            method="DOP853",
            rtol=1e-13,
            atol=1e-13,
        )
        rows.append(sol.y[:, -1])
    return torch.tensor(np.stack(rows), dtype=DT)


# ----------------------------------------------------------------------------- orders


@pytest.mark.parametrize(
    "method, steps, lo, hi",
    [
        ("euler", [200, 400, 800], 1.8, 2.2),  # order 1: ratio 2 (measured 2.003, 2.002)
        ("rk4", [10, 20, 40], 14.0, 18.0),  # order 4: ratio 16 (measured 16.06, 16.10)
        ("leapfrog", [20, 40, 80], 3.5, 4.5),  # order 2: ratio 4 (measured 4.005, 4.001)
        ("midpoint", [20, 40, 80], 3.5, 4.5),  # order 2: ratio 4 (measured 3.999, 4.000)
    ],
)
def test_convergence_order_on_pendulum(pendulum_reference, method, steps, lo, hi):
    """Halving the step divides the global error at ``T = 2`` by ``2^order``."""
    errors = [
        (integrate(pendulum, X0_PENDULUM, T_PENDULUM, n, method) - pendulum_reference)
        .abs()
        .max()
        .item()
        for n in steps
    ]
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    for r in ratios:
        assert lo <= r <= hi, f"{method}: errors {errors}, ratios {ratios}"


def test_leapfrog_is_first_order_on_non_separable_hamiltonian():
    """Documented limitation: ``H = (q^2 + p^2)/2 + q^2 p^2 / 2`` is not separable, and
    leapfrog drops to order 1 there (ratio ~2, measured 2.02), while midpoint keeps order 2."""

    def f(x):
        q, p = x[..., :1], x[..., 1:]
        return torch.cat([p + q * q * p, -(q + q * p * p)], dim=-1)

    sol = solve_ivp(
        lambda t, y: [y[1] + y[0] ** 2 * y[1], -(y[0] + y[0] * y[1] ** 2)],
        (0.0, 2.0),
        [0.7, 0.4],
        method="DOP853",
        rtol=1e-13,
        atol=1e-13,
    )
    ref = torch.tensor(sol.y[:, -1], dtype=DT)
    x0 = torch.tensor([0.7, 0.4], dtype=DT)

    def ratio(method):
        e1 = (integrate(f, x0, 2.0, 40, method) - ref).abs().max()
        e2 = (integrate(f, x0, 2.0, 80, method) - ref).abs().max()
        return (e1 / e2).item()

    assert 1.8 <= ratio("leapfrog") <= 2.2
    assert 3.5 <= ratio("midpoint") <= 4.5


# ----------------------------------------------------------------------------- single steps


def _random_linear(M: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(M, M, dtype=DT, generator=g)


def test_euler_and_rk4_steps_are_taylor_polynomials_on_linear_fields():
    """For ``f(x) = L x`` one Euler step is ``(I + hL) x`` and one RK4 step is
    ``sum_{k<=4} (hL)^k / k! x`` (the degree-4 Taylor polynomial of ``expm(hL)``)."""
    L = _random_linear(4, 0)
    x = torch.randn(5, 4, dtype=DT, generator=torch.Generator().manual_seed(1))
    h = 0.3
    f = linear_field(L)
    eye = torch.eye(4, dtype=DT)
    hL = h * L
    taylor4 = eye + hL + hL @ hL / 2 + hL @ hL @ hL / 6 + hL @ hL @ hL @ hL / 24
    torch.testing.assert_close(euler_step(f, x, h), x @ (eye + hL).T, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(rk4_step(f, x, h), x @ taylor4.T, rtol=1e-13, atol=1e-13)


def test_implicit_midpoint_is_cayley_transform_on_linear_fields():
    """For ``f(x) = L x`` the midpoint rule is ``x' = (I - hL/2)^{-1} (I + hL/2) x``."""
    L = _random_linear(4, 2)
    x = torch.randn(3, 4, dtype=DT, generator=torch.Generator().manual_seed(3))
    h = 0.1  # h * ||L||_2 / 2 < 0.25: the fixed point contracts by > 4x per iteration
    eye = torch.eye(4, dtype=DT)
    cayley = torch.linalg.solve(eye - 0.5 * h * L, eye + 0.5 * h * L)
    out = implicit_midpoint_step(linear_field(L), x, h, iterations=40)
    torch.testing.assert_close(out, x @ cayley.T, rtol=1e-13, atol=1e-13)


def test_implicit_midpoint_solves_its_equation_with_default_iterations():
    """Residual of ``x' = x + h f((x + x')/2)`` on the pendulum, ``h = 0.1``, default 8
    iterations: < 1e-12 (measured 2e-13); with 1 iteration it is > 1e-6."""
    x = X0_PENDULUM
    h = 0.1
    x1 = implicit_midpoint_step(pendulum, x, h)
    residual = x1 - x - h * pendulum(0.5 * (x + x1))
    assert residual.abs().max().item() < 1e-12
    x1_rough = implicit_midpoint_step(pendulum, x, h, iterations=1)
    rough = x1_rough - x - h * pendulum(0.5 * (x + x1_rough))
    assert rough.abs().max().item() > 1e-6


def test_implicit_midpoint_fixed_point_contracts_by_h_lip_over_two():
    """Documented convergence rate: for the harmonic oscillator (``Lip(f) = 1``, ``f`` a
    rotation) each extra iteration shrinks the residual norm by exactly ``h Lip(f) / 2``."""
    x = torch.tensor([[1.0, 0.5], [-0.2, 0.7]], dtype=DT)
    h = 0.1

    def residual_norm(iterations):
        x1 = implicit_midpoint_step(sho, x, h, iterations=iterations)
        return (x1 - x - h * sho(0.5 * (x + x1))).norm(dim=-1)

    norms = [residual_norm(i) for i in range(1, 5)]
    for a, b in zip(norms[:-1], norms[1:], strict=True):
        torch.testing.assert_close(b / a, torch.full_like(a, h / 2), rtol=1e-6, atol=0)


def test_leapfrog_step_on_harmonic_oscillator_matches_closed_form():
    """Kick-drift-kick on ``H = (q^2 + p^2)/2``:
    ``q' = (1 - h^2/2) q + h p``, ``p' = -h (1 - h^2/4) q + (1 - h^2/2) p``."""
    h = 0.37
    x = torch.tensor([[0.8, -0.2], [0.1, 1.5]], dtype=DT)
    q, p = x[:, 0], x[:, 1]
    expected = torch.stack(
        [(1 - h**2 / 2) * q + h * p, -h * (1 - h**2 / 4) * q + (1 - h**2 / 2) * p], dim=-1
    )
    torch.testing.assert_close(leapfrog_step(sho, x, h), expected, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("method", ["leapfrog", "midpoint"])
def test_symmetric_methods_are_time_reversible(method):
    """Integrating forward by ``T`` then by ``-T`` returns the start (error < 1e-12)."""
    x0 = torch.tensor([[0.3, -0.1, 0.2, 0.4], [0.1, 0.2, -0.3, 0.0]], dtype=DT)
    step = (
        METHODS[method]
        if method == "leapfrog"
        else functools.partial(implicit_midpoint_step, iterations=30)
    )
    xT = integrate(henon_heiles, x0, 3.0, 30, step)
    back = integrate(henon_heiles, xT, -3.0, 30, step)
    assert (back - x0).abs().max().item() < 1e-12


def test_symplecticity_of_step_jacobians():
    """``D^T J D = J`` for the Jacobian ``D`` of one step on Henon-Heiles (``M = 4``, h = 0.1):
    exact (< 1e-13) for leapfrog and converged midpoint, violated at O(h^2) for Euler
    (measured 1.4e-2) and at O(h^5) for RK4 (measured 6.5e-8)."""
    J = symplectic_matrix(4, dtype=DT)
    x = torch.tensor([0.3, -0.2, 0.25, 0.4], dtype=DT)
    h = 0.1
    steps = {
        "euler": euler_step,
        "rk4": rk4_step,
        "leapfrog": leapfrog_step,
        "midpoint": functools.partial(implicit_midpoint_step, iterations=30),
    }
    defect = {}
    for name, step in steps.items():
        D = torch.autograd.functional.jacobian(lambda z, s=step: s(henon_heiles, z, h), x)
        defect[name] = (D.T @ J @ D - J).abs().max().item()
    assert defect["leapfrog"] < 1e-13
    assert defect["midpoint"] < 1e-13
    assert defect["euler"] > 1e-3
    assert defect["rk4"] > 1e-8


# ----------------------------------------------------------------------------- long runs


def test_energy_of_harmonic_oscillator_over_ten_thousand_steps():
    """``h = 0.01``, 10^4 steps (``T = 100``). Relative energy error: leapfrog stays below
    ``h^2/4 (1 + 1e-3) = 2.5e-5`` (bounded: same bound in both halves of the run), midpoint
    conserves the quadratic energy to roundoff (< 1e-12), and Euler's grows exactly like
    ``(1 + h^2)^n - 1``, reaching ``e - 1 = 1.72`` -- about 7e4 times leapfrog's."""
    h, n = 0.01, 10_000
    x0 = torch.tensor([[1.0, 0.0], [0.3, -0.8]], dtype=DT)

    def energy(x):
        return 0.5 * (x**2).sum(-1)

    rel = {}
    for method in ["euler", "leapfrog", "midpoint"]:
        traj = rollout(sho, x0, 100 * h, n // 100 + 1, steps_per_point=100, method=method)
        rel[method] = (energy(traj) - energy(x0)[:, None]).abs() / energy(x0)[:, None]
    bound = h**2 / 4 * (1 + 1e-3)
    assert rel["leapfrog"][:, :51].max().item() < bound
    assert rel["leapfrog"][:, 51:].max().item() < bound
    assert rel["leapfrog"].max().item() < 1e-3
    assert rel["midpoint"].max().item() < 1e-12
    euler_expected = (1 + h**2) ** n - 1
    assert abs(rel["euler"][:, -1].max().item() - euler_expected) < 1e-9 * euler_expected
    assert rel["euler"].max().item() > 10 * rel["leapfrog"].max().item()
    assert rel["euler"].max().item() > 10 * 1e-3


# ----------------------------------------------------------------------------- autograd


def _quartic_field(k: torch.Tensor, a: torch.Tensor):
    """``H = p^2/2 + k q^2/2 + a q^4/4`` with trainable ``k, a``."""

    def f(x):
        q, p = x[..., :1], x[..., 1:]
        return torch.cat([p, -(k * q + a * q**3)], dim=-1)

    return f


@pytest.mark.parametrize("method", sorted(METHODS))
def test_gradcheck_through_integrate(method):
    """Autograd gradients wrt the state, the field's parameters and the duration match
    central finite differences (``torch.autograd.gradcheck``, float64, default tolerances)."""
    x0 = torch.tensor([[0.5, -0.3], [0.2, 0.9]], dtype=DT, requires_grad=True)
    k = torch.tensor(1.3, dtype=DT, requires_grad=True)
    a = torch.tensor(0.4, dtype=DT, requires_grad=True)
    T = torch.tensor(0.7, dtype=DT, requires_grad=True)

    def fn(x0, k, a, T):
        return integrate(_quartic_field(k, a), x0, T, steps=3, method=method)

    assert torch.autograd.gradcheck(fn, (x0, k, a, T))


def test_gradient_of_rollout_wrt_parameter_matches_finite_difference():
    """d/dk of the last rollout point of the SHO with stiffness ``k`` (RK4) matches a
    central difference with step 1e-6 to 1e-8."""
    x0 = torch.tensor([0.5, -0.3], dtype=DT)

    def last(kv):
        return rollout(_quartic_field(kv, torch.tensor(0.0, dtype=DT)), x0, 0.1, 11, 2, "rk4")[-1]

    k = torch.tensor(1.3, dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(last(k).sum(), k)
    eps = 1e-6
    fd = last(torch.tensor(1.3 + eps, dtype=DT)) - last(torch.tensor(1.3 - eps, dtype=DT))
    fd = fd.sum() / (2 * eps)
    assert abs(grad.item() - fd.item()) < 1e-8


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize("method", sorted(METHODS))
def test_batch_equals_rowwise(method):
    """A ``(B, M)`` batch and a ``(2, 3, M)`` batch give the row-by-row results (1e-12)."""
    x = torch.randn(6, 4, dtype=DT, generator=torch.Generator().manual_seed(4)) * 0.4
    batch = integrate(henon_heiles, x, 1.0, 5, method)
    rows = torch.stack([integrate(henon_heiles, r, 1.0, 5, method) for r in x])
    assert (batch - rows).abs().max().item() < 1e-12
    nested = integrate(henon_heiles, x.reshape(2, 3, 4), 1.0, 5, method)
    assert (nested.reshape(6, 4) - rows).abs().max().item() < 1e-12


def test_per_row_duration_tensor():
    """A ``(B, 1)`` duration integrates each row for its own time (1e-12)."""
    x = X0_PENDULUM
    durations = torch.tensor([[0.5], [1.0], [1.5]], dtype=DT)
    out = integrate(pendulum, x, durations, 10, "rk4")
    for i in range(3):
        row = integrate(pendulum, x[i], float(durations[i, 0]), 10, "rk4")
        assert (out[i] - row).abs().max().item() < 1e-12


# ----------------------------------------------------------------------------- rollout


def test_rollout_shape_first_point_and_consistency():
    x0 = torch.randn(3, 5, 4, dtype=DT, generator=torch.Generator().manual_seed(5)) * 0.3
    traj = rollout(henon_heiles, x0, 0.2, 7, steps_per_point=3, method="leapfrog")
    assert traj.shape == (3, 5, 7, 4)
    assert torch.equal(traj[..., 0, :], x0)
    # point i equals integrating for i * dt with 3 i sub-steps
    for i in [1, 6]:
        direct = integrate(henon_heiles, x0, 0.2 * i, 3 * i, "leapfrog")
        assert (traj[..., i, :] - direct).abs().max().item() < 1e-12
    single = rollout(henon_heiles, x0[0, 0], 0.2, 1)
    assert single.shape == (1, 4) and torch.equal(single[0], x0[0, 0])


def test_rollout_of_harmonic_oscillator_tracks_exact_solution():
    """RK4 with ``dt = 0.1`` over 50 points (``T = 4.9``): max error vs the exact
    ``(q0 cos t + p0 sin t, -q0 sin t + p0 cos t)`` is < 6e-6: RK4's phase error per step is
    ``h^5 / 120``, so ``T h^4 / 120 * |x0| = 4.6e-6`` (measured 4.3e-6)."""
    x0 = torch.tensor([1.0, 0.5], dtype=DT)
    traj = rollout(sho, x0, 0.1, 50, method="rk4")
    t = 0.1 * torch.arange(50, dtype=DT)
    exact = torch.stack(
        [x0[0] * torch.cos(t) + x0[1] * torch.sin(t), -x0[0] * torch.sin(t) + x0[1] * torch.cos(t)],
        dim=-1,
    )
    assert (traj - exact).abs().max().item() < 6e-6


# ----------------------------------------------------------------------------- API and errors


def test_methods_mapping():
    assert METHODS == {
        "euler": euler_step,
        "rk4": rk4_step,
        "leapfrog": leapfrog_step,
        "midpoint": implicit_midpoint_step,
    }


def test_custom_step_function_is_accepted():
    """A callable step (here midpoint with 1 iteration) is used as given."""
    rough = functools.partial(implicit_midpoint_step, iterations=1)
    x = X0_PENDULUM
    out = integrate(pendulum, x, 0.5, 2, rough)
    manual = rough(pendulum, rough(pendulum, x, 0.25), 0.25)
    assert torch.equal(out, manual)
    assert (out - integrate(pendulum, x, 0.5, 2, "midpoint")).abs().max().item() > 1e-8


@pytest.mark.parametrize("method", sorted(METHODS))
def test_float32_in_float32_out(method):
    x = X0_PENDULUM.float()
    out = integrate(pendulum, x, torch.tensor(0.5, dtype=DT), 4, method)
    assert out.dtype == torch.float32 and out.device == x.device
    ref = integrate(pendulum, X0_PENDULUM, 0.5, 4, method)
    assert (out.double() - ref).abs().max().item() < 1e-5
    traj = rollout(pendulum, x, 0.1, 3, method=method)
    assert traj.dtype == torch.float32


def test_bad_inputs_raise_clear_errors():
    x = X0_PENDULUM
    with pytest.raises(ValueError, match=r"unknown integration method 'rk45'.*euler.*leapfrog"):
        integrate(pendulum, x, 1.0, 2, "rk45")
    for bad_steps in [0, -3, 2.5, True]:
        with pytest.raises(ValueError, match="steps must be an int >= 1"):
            integrate(pendulum, x, 1.0, bad_steps)
    for bad_duration in [math.inf, math.nan, torch.tensor(math.nan)]:
        with pytest.raises(ValueError, match="duration must be finite"):
            integrate(pendulum, x, bad_duration)
    with pytest.raises(TypeError, match="duration must be a float or a tensor"):
        integrate(pendulum, x, "1.0")
    with pytest.raises(ValueError, match=r"shape \(\.\.\., M\)"):
        integrate(pendulum, torch.tensor(1.0, dtype=DT), 1.0)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        integrate(pendulum, [1.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        integrate(pendulum, torch.tensor([math.nan, 0.0], dtype=DT), 1.0)
    with pytest.raises(ValueError, match="n_points must be an int >= 1"):
        rollout(pendulum, x, 0.1, 0)
    with pytest.raises(ValueError, match="steps_per_point must be an int >= 1"):
        rollout(pendulum, x, 0.1, 3, steps_per_point=0)
    with pytest.raises(ValueError, match="dt must be finite"):
        rollout(pendulum, x, math.inf, 3)
    with pytest.raises(ValueError, match="unknown integration method"):
        rollout(pendulum, x, 0.1, 3, method="verlet")
    with pytest.raises(ValueError, match="even phase dimension"):
        leapfrog_step(lambda z: z, torch.zeros(3, dtype=DT), 0.1)
    with pytest.raises(ValueError, match="iterations to be a positive int"):
        implicit_midpoint_step(pendulum, x, 0.1, iterations=0)
