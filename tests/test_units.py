"""Tests for :mod:`pyro_razor.systems.units` (float64 unless stated)."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_razor.symmetry import (
    apply_flow,
    generator_matrix,
    quadratic_value,
    symmetric_from_unconstrained,
    symplectic_matrix,
)
from pyro_razor.systems import HamiltonianSystem, gaussian_initial, simulate
from pyro_razor.systems.units import PhaseSpaceScaling, fit_scaling, identity_scaling

DT = torch.float64

# A badly scaled 2-dof system: natural canonical coordinates u = x / UNITS, with
# q1 ~ 1e3, p1 ~ 1e-3, q2 ~ 10, p2 ~ 0.1 (each pair's units multiply to 1, so it is canonical).
UNITS = torch.tensor([1e3, 10.0, 1e-3, 0.1], dtype=DT)
A_NATURAL = torch.tensor(
    [[1.0, 0.3, 0.0, 0.0], [0.3, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
    dtype=DT,
)
B_NATURAL = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=DT)
# The energy as a quadratic in original units: H(x) = 1/2 x^T A x + b^T x, e.g.
# A_q1q1 = 1e-6 and A_p1p1 = 1e6, i.e. H = q1^2 / (2e6) + 1e6 p1^2 / 2 + 3e-5 q1 q2 + ...
A_ORIGINAL = A_NATURAL / (UNITS[:, None] * UNITS[None, :])
B_ORIGINAL = B_NATURAL / UNITS


def badly_scaled_system(quartic: float) -> HamiltonianSystem:
    """Coupled oscillators with a linear force (so the mean state is not 0) and ``quartic Q1^4``."""

    def hamiltonian(x: torch.Tensor) -> torch.Tensor:
        u = x / UNITS.to(x)
        quadratic = quadratic_value(A_NATURAL.to(x), B_NATURAL.to(x), u)
        return quadratic + quartic * u[..., 0] ** 4

    return HamiltonianSystem("badly-scaled", 4, hamiltonian, gaussian_initial(4))


def badly_scaled_data(quartic: float, n_points: int = 201, dt: float = 0.01) -> torch.Tensor:
    """``(4, n_points, 4)`` exact trajectories; atol 1e-18 because p1 ~ 1e-3 (see the module)."""
    u0 = 2.0 * torch.randn(4, 4, dtype=DT, generator=torch.Generator().manual_seed(0))
    return simulate(badly_scaled_system(quartic), u0 * UNITS, n_points, dt, atol=1e-18)


def random_scaling(seed: int, M: int = 4) -> PhaseSpaceScaling:
    """Shift ~ 100, position scales over 3 decades, ``c = 0.37``."""
    g = torch.Generator().manual_seed(seed)
    a = 10.0 ** (3 * torch.rand(M // 2, dtype=DT, generator=g) - 1.5)
    c = 0.37
    return PhaseSpaceScaling(100.0 * torch.randn(M, dtype=DT, generator=g), a, c / a)


def central_velocity(x: torch.Tensor, dt: float) -> torch.Tensor:
    """4th-order central differences along axis 1; drops two points at each end."""
    return (-x[:, 4:] + 8 * x[:, 3:-1] - 8 * x[:, 1:-3] + x[:, :-4]) / (12 * dt)


# ----------------------------------------------------------------------------- construction


def test_identity_scaling_changes_nothing():
    scaling = identity_scaling(6)
    x = torch.randn(5, 6, dtype=DT, generator=torch.Generator().manual_seed(1))
    assert scaling.hamiltonian_scale == 1.0 and scaling.phase_dim == 6
    assert torch.equal(scaling.to_scaled(x), x) and torch.equal(scaling.to_original(x), x)


def test_products_must_be_equal():
    """Products equal to 1e-12 relative are accepted, 1e-6 relative are refused."""
    a = torch.tensor([2.0, 5.0], dtype=DT)
    ok = PhaseSpaceScaling(torch.zeros(4), a, torch.tensor([1.5, 0.6 * (1 + 1e-12)], dtype=DT))
    assert math.isclose(ok.hamiltonian_scale, 3.0, rel_tol=1e-11)
    with pytest.raises(ValueError, match="must all be equal"):
        PhaseSpaceScaling(torch.zeros(4), a, torch.tensor([1.5, 0.6 * (1 + 1e-6)], dtype=DT))
    with pytest.raises(ValueError, match="> 0"):
        PhaseSpaceScaling(torch.zeros(4), -a, torch.tensor([-1.5, -0.6], dtype=DT))
    with pytest.raises(ValueError, match="M = 2d"):
        PhaseSpaceScaling(torch.zeros(3), a, a)
    with pytest.raises(ValueError, match="NaN or inf"):
        PhaseSpaceScaling(torch.tensor([0.0, float("nan"), 0.0, 0.0]), a, 1 / a)


def test_state_round_trip_and_dtype():
    """``to_original(to_scaled(x)) = x`` to 1e-12 relative; float32 stays float32."""
    scaling = random_scaling(2)
    x = torch.randn(3, 7, 4, dtype=DT, generator=torch.Generator().manual_seed(3)) * 1e3
    x_scaled = scaling.to_scaled(x)
    D = scaling.scale()
    assert torch.allclose(x_scaled * D + scaling.shift, x, rtol=1e-12, atol=0)
    assert torch.allclose(scaling.to_original(x_scaled), x, rtol=1e-12, atol=1e-12 * 1e3)
    x32 = scaling.to_scaled(x.float())
    assert x32.dtype == torch.float32
    assert torch.allclose(x32.double(), x_scaled, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        scaling.to_scaled(torch.zeros(3, 6, dtype=DT))
    with pytest.raises(ValueError, match="finite"):
        scaling.to_original(torch.full((2, 4), float("inf"), dtype=DT))


def test_json_round_trip_is_exact():
    scaling = random_scaling(4)
    back = PhaseSpaceScaling.from_json(scaling.to_json())
    for name in ("shift", "position_scale", "momentum_scale"):
        assert torch.equal(getattr(back, name), getattr(scaling, name))
    with pytest.raises(ValueError, match="keys"):
        PhaseSpaceScaling.from_json('{"shift": [0, 0]}')


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scaling_on_cuda():
    scaling = random_scaling(5)
    x = torch.randn(10, 4, dtype=DT, device="cuda")
    assert scaling.to_scaled(x).device.type == "cuda"
    assert torch.allclose(scaling.to_original(scaling.to_scaled(x)), x, atol=1e-10)
    A = symmetric_from_unconstrained(torch.randn(4, 4, dtype=DT, device="cuda"))
    b = torch.randn(4, dtype=DT, device="cuda")
    A_back, b_back = scaling.quantities_to_original(*scaling.quantities_to_scaled(A, b))
    assert A_back.device.type == "cuda" and torch.allclose(A_back, A, atol=1e-10)


# ----------------------------------------------------------------------------- fitting


def test_fit_scaling_statistics():
    """``mu`` = mean, ``a b = c``, ``a / b = sigma_q / sigma_p``; scaled pairs have equal
    spreads with geometric mean 1, and the scaled mean is 0 (all to 1e-10 relative)."""
    data = badly_scaled_data(quartic=0.0, n_points=51, dt=0.1)
    scaling = fit_scaling(data)
    states = data.reshape(-1, 4)
    sigma = states.std(dim=0, correction=0)
    a, b, c = scaling.position_scale, scaling.momentum_scale, scaling.hamiltonian_scale
    assert torch.allclose(scaling.shift, states.mean(dim=0), rtol=1e-12)
    assert torch.allclose(a * b, torch.full_like(a, c), rtol=1e-12)
    assert torch.allclose(a / b, sigma[:2] / sigma[2:], rtol=1e-12)
    scaled = scaling.to_scaled(data).reshape(-1, 4)
    s = scaled.std(dim=0, correction=0)
    assert torch.allclose(s[:2], s[2:], rtol=1e-10)
    assert math.isclose(float(s[:2].log().mean().exp()), 1.0, rel_tol=1e-10)
    assert float(scaled.mean(dim=0).abs().max()) < 1e-10


def test_fit_scaling_errors_name_the_coordinate():
    data = torch.randn(3, 10, 4, dtype=DT, generator=torch.Generator().manual_seed(6))
    flat = data.clone()
    flat[..., 3] = 7.25
    with pytest.raises(ValueError, match=r"coordinate 3 \(p2\) has zero spread"):
        fit_scaling(flat)
    with pytest.raises(ValueError, match="coordinate 'py' \\(index 3\\) has zero spread"):
        fit_scaling(flat, names=["x", "y", "px", "py"])
    broken = data.clone()
    broken[1, 4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"coordinate 1 \(q2\) contains NaN or inf"):
        fit_scaling(broken)
    with pytest.raises(ValueError, match="M = 3 must be even"):
        fit_scaling(data[..., :3])
    with pytest.raises(ValueError, match="at least two states"):
        fit_scaling(data[:1, :1])


# ----------------------------------------------------------------------------- dynamics


def test_scaled_dynamics_are_hamiltonian_with_scaled_energy():
    """The scaled trajectory's velocity equals ``J grad H'(x')``, ``H' = H(D x' + mu) / c``,
    to 1e-7 absolute (scaled velocities reach ~4; the finite-difference error is ~1e-8 at
    dt = 0.005 and falls as dt^4); without the ``1/c`` it is off by O(1)."""
    dt = 0.005
    data = badly_scaled_data(quartic=0.02, dt=dt)
    scaling = fit_scaling(data)
    c = scaling.hamiltonian_scale
    assert abs(c - 1.0) > 0.5  # the factor 1/c matters for this data
    scaled = scaling.to_scaled(data)
    velocity = central_velocity(scaled, dt)
    H_scaled = scaling.scaled_hamiltonian(badly_scaled_system(quartic=0.02).hamiltonian)
    field = HamiltonianSystem("scaled", 4, H_scaled, gaussian_initial(4)).vector_field
    expected = field(scaled[:, 2:-2])
    assert float(velocity.abs().max()) > 0.5
    assert float((velocity - expected).abs().max()) < 1e-7
    assert float((velocity - c * expected).abs().max()) > 0.1


def test_conserved_quantity_maps_between_units():
    """The energy, a known quadratic conserved quantity, maps to scaled units (where it is
    ``c H'`` up to a constant and conserved along the scaled trajectory to 1e-9 relative)
    and back to the same ``(A, b)`` to 1e-10 relative."""
    data = badly_scaled_data(quartic=0.0)
    x = data.reshape(-1, 4)
    energy = badly_scaled_system(0.0).hamiltonian(x)
    assert torch.allclose(quadratic_value(A_ORIGINAL, B_ORIGINAL, x), energy, rtol=1e-12)
    scaling = fit_scaling(data)
    A_s, b_s = scaling.quantities_to_scaled(A_ORIGINAL, B_ORIGINAL)
    scaled = scaling.to_scaled(data)
    values = quadratic_value(A_s, b_s, scaled)  # (B, n)
    drift = (values - values[:, :1]).abs().max()
    assert float(drift) < 1e-9 * float(values.abs().max())
    H_scaled = scaling.scaled_hamiltonian(badly_scaled_system(0.0).hamiltonian)(scaled)
    offset = values - scaling.hamiltonian_scale * H_scaled
    assert float((offset - offset[0, 0]).abs().max()) < 1e-10 * float(values.abs().max())
    A_back, b_back = scaling.quantities_to_original(A_s, b_s)
    assert torch.allclose(A_back, A_ORIGINAL, rtol=1e-10, atol=0)
    # b = D^-1 b' - A mu cancels; each entry is exact to 1e-10 of |b| + |A| |mu|.
    b_scale = B_ORIGINAL.abs() + A_ORIGINAL.abs() @ scaling.shift.abs()
    assert bool(((b_back - B_ORIGINAL).abs() <= 1e-10 * b_scale).all())


def test_quantity_values_agree_up_to_a_constant():
    """``C(x) - C'(x')`` is the same at 100 random points (1e-10 relative), batch of 3."""
    scaling = random_scaling(7)
    g = torch.Generator().manual_seed(8)
    A = symmetric_from_unconstrained(torch.randn(3, 4, 4, dtype=DT, generator=g))
    b = torch.randn(3, 4, dtype=DT, generator=g)
    A_s, b_s = scaling.quantities_to_scaled(A, b)
    x = 100.0 * torch.randn(100, 4, dtype=DT, generator=g)
    for k in range(3):
        original = quadratic_value(A[k], b[k], x)
        gap = original - quadratic_value(A_s[k], b_s[k], scaling.to_scaled(x))
        assert float((gap - gap[0]).abs().max()) < 1e-10 * float(original.abs().max())


def test_generator_conjugation_identity():
    """``G = (1/c) T G' T^{-1}`` and ``G' = c T^{-1} G T`` (1e-12 relative), and the flow of ``C``
    seen in scaled units is the flow of ``C' / c``."""
    scaling = random_scaling(9)
    g = torch.Generator().manual_seed(10)
    A_s = symmetric_from_unconstrained(torch.randn(2, 4, 4, dtype=DT, generator=g))
    b_s = torch.randn(2, 4, dtype=DT, generator=g)
    G_s = generator_matrix(A_s, b_s)
    T, c = scaling.homogeneous_matrix(), scaling.hamiltonian_scale
    G = scaling.generators_to_original(G_s)
    conjugated = T @ G_s @ torch.linalg.inv(T) / c
    assert torch.allclose(G, conjugated, rtol=1e-12, atol=1e-12 * float(G.abs().max()))
    G_back = scaling.generators_to_scaled(G)
    assert torch.allclose(G_back, G_s, rtol=1e-12, atol=1e-12 * float(G_s.abs().max()))
    x = scaling.to_original(torch.randn(20, 4, dtype=DT, generator=g))
    flowed = apply_flow(torch.linalg.matrix_exp(0.7 * G[0]), x)
    flowed_scaled = apply_flow(torch.linalg.matrix_exp(0.7 * G_s[0] / c), scaling.to_scaled(x))
    assert torch.allclose(scaling.to_scaled(flowed), flowed_scaled, atol=1e-10)
    assert not torch.allclose(
        scaling.to_scaled(flowed),
        apply_flow(torch.linalg.matrix_exp(0.7 * G_s[0]), scaling.to_scaled(x)),
        atol=1e-3,
    )
    J = symplectic_matrix(4, dtype=DT)
    assert torch.allclose(G[0, :4, :4], J @ scaling.quantities_to_original(A_s, b_s)[0][0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 5, 5\)"):
        scaling.generators_to_original(torch.zeros(2, 4, 4, dtype=DT))
