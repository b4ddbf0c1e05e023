"""Tests for pyro_razor.systems.base and .builtin: systems and their ground-truth symmetries.

All numerics in float64. Tolerances are stated at each assertion.
"""

from __future__ import annotations

import math

import pytest
import torch

from pyro_razor.symmetry import (
    QuadraticQuantity,
    apply_flow,
    flow_matrices,
    generator_from_quantity,
    lie_bracket,
    poisson_bracket,
)
from pyro_razor.systems import (
    NBODY_MOVED_OFFSET,
    NBODY_WIDER_STD,
    SYSTEMS,
    HamiltonianSystem,
    gaussian_initial,
    harmonic_oscillators,
    make_system,
    n_body,
    simple_harmonic_oscillator,
    simulate,
)

F64 = torch.float64

BUILTIN = [
    pytest.param(lambda: simple_harmonic_oscillator(), 1, id="sho"),
    *[pytest.param(lambda n=n: harmonic_oscillators(n), n * n, id=f"osc{n}") for n in range(1, 6)],
    pytest.param(lambda: n_body(3, 2), 7, id="nbody2d"),
    pytest.param(lambda: n_body(3, 3), 15, id="nbody3d"),
    pytest.param(lambda: n_body(3, 2, masses=(1.0, 2.0, 0.5), G=0.7), 7, id="nbody2d-masses"),
    pytest.param(lambda: n_body(4, 3, masses=(1.0, 3.0, 0.5, 2.0)), 15, id="nbody3d-4b"),
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _quantity_fn(c: QuadraticQuantity):
    return lambda x: c(x)


# ---------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("factory, count", BUILTIN)
def test_quantities_conserved_along_trajectories(factory, count):
    system = factory()
    x0 = system.sample(6, _gen(1))
    traj = simulate(system, x0, 20, 0.3)  # (6, 20, M), t up to 5.7
    for c in system.conserved_quantities:
        values = c(traj)
        drift = (values - values[:, :1]).abs().max().item()
        assert drift < 1e-7, f"{c.name} drifts by {drift}"


@pytest.mark.parametrize("factory, count", BUILTIN)
def test_quantities_poisson_commute_with_H(factory, count):
    system = factory()
    x = 2.0 * torch.randn(50, system.phase_dim, generator=_gen(2), dtype=F64)
    for c in system.conserved_quantities:
        bracket = poisson_bracket(_quantity_fn(c), system.H, x)
        assert bracket.abs().max().item() < 1e-9, c.name


@pytest.mark.parametrize("factory, count", BUILTIN)
def test_H_invariant_under_flows(factory, count):
    system = factory()
    G = system.generators(dtype=F64)
    x = system.sample(10, _gen(3))
    H0 = system.H(x)
    # Each generator alone, with tau ~ N(0, 1.5^2) ...
    for k in range(G.shape[0]):
        tau = 1.5 * torch.randn(4, 1, generator=_gen(10 + k), dtype=F64)
        moved = apply_flow(flow_matrices(G[k : k + 1], tau), x)  # (4, 10, M)
        assert (system.H(moved) - H0).abs().max().item() < 1e-6, system.conserved_quantities[k]
    # ... and a random element of the whole group.
    tau = torch.randn(4, G.shape[0], generator=_gen(4), dtype=F64)
    moved = apply_flow(flow_matrices(G, tau), x)
    assert (system.H(moved) - H0).abs().max().item() < 1e-6


@pytest.mark.parametrize("factory, count", BUILTIN)
def test_generators_dimension_rank_and_closure(factory, count):
    system = factory()
    G = system.generators(dtype=F64)
    M = system.phase_dim
    assert G.shape == (count, M + 1, M + 1)
    flat = G.reshape(count, -1)
    assert torch.linalg.matrix_rank(flat).item() == count
    # Closed under the Lie bracket: every commutator is in the span (residual < 1e-9).
    brackets = torch.stack(
        [lie_bracket(G[i], G[j]).reshape(-1) for i in range(count) for j in range(i + 1, count)]
        or [torch.zeros((M + 1) ** 2, dtype=F64)]
    )
    coeffs = torch.linalg.lstsq(flat.T, brackets.T).solution
    residual = (flat.T @ coeffs - brackets.T).abs().max().item()
    assert residual < 1e-9


def test_generator_dtype_and_device_follow_arguments():
    G = harmonic_oscillators(2).generators(dtype=torch.float32, device="cpu")
    assert G.dtype == torch.float32 and G.shape == (4, 5, 5)


def test_sho_quantity_is_H_and_generator_is_rotation():
    system = simple_harmonic_oscillator()
    (c,) = system.conserved_quantities
    x = torch.randn(7, 2, generator=_gen(5), dtype=F64)
    assert torch.allclose(c(x), system.H(x), atol=1e-14)
    # exp(t G) restricted to x is the time-t flow: rotation by -t (q' = p, p' = -q).
    t = torch.tensor([[0.7]], dtype=F64)
    T = flow_matrices(system.generators(), t)[0]
    expected = torch.tensor(
        [[math.cos(0.7), math.sin(0.7)], [-math.sin(0.7), math.cos(0.7)]], dtype=F64
    )
    assert torch.allclose(T[:2, :2], expected, atol=1e-14)
    assert torch.allclose(T[:2, 2], torch.zeros(2, dtype=F64), atol=1e-15)


def test_oscillator_quantities_match_their_formulas():
    n = 3
    system = harmonic_oscillators(n)
    names = [c.name for c in system.conserved_quantities]
    assert names == ["H_1", "H_2", "H_3", "R_12", "R_13", "R_23", "F_12", "F_13", "F_23"]
    x = torch.randn(20, 2 * n, generator=_gen(6), dtype=F64)
    q, p = x[:, :n], x[:, n:]
    by_name = {c.name: c(x) for c in system.conserved_quantities}
    for i in range(n):
        assert torch.allclose(by_name[f"H_{i + 1}"], (q[:, i] ** 2 + p[:, i] ** 2) / 2, atol=1e-13)
        for j in range(i + 1, n):
            R = q[:, i] * p[:, j] - q[:, j] * p[:, i]
            F = q[:, i] * q[:, j] + p[:, i] * p[:, j]
            assert torch.allclose(by_name[f"R_{i + 1}{j + 1}"], R, atol=1e-13)
            assert torch.allclose(by_name[f"F_{i + 1}{j + 1}"], F, atol=1e-13)
    # The sum of the H_i is the Hamiltonian.
    total = sum(by_name[f"H_{i + 1}"] for i in range(n))
    assert torch.allclose(total, system.H(x), atol=1e-13)


def test_labels_use_separator_from_ten_indices():
    names = [c.name for c in harmonic_oscillators(10).conserved_quantities]
    assert "R_1_10" in names and "F_9_10" in names and len(names) == 100


@pytest.mark.parametrize("dim", [2, 3])
def test_nbody_quantity_matrices_match_formulas(dim):
    """A, b written by hand equal the autograd Hessian/gradient of the textbook formulas."""
    n, masses = 3, (1.0, 2.0, 0.5)
    system = n_body(n, dim, masses=masses)
    m = torch.tensor(masses, dtype=F64)

    def split(x):
        lead = x.shape[:-1]
        return (
            x[..., : n * dim].reshape(*lead, n, dim),
            x[..., n * dim :].reshape(*lead, n, dim),
        )

    def T(d):
        return lambda x: split(x)[1][..., :, d].sum(-1)

    def rabs(d, e):
        def f(x):
            q, p = split(x)
            return (q[..., :, d] * p[..., :, e] - q[..., :, e] * p[..., :, d]).sum(-1)

        return f

    def rcom(d, e):
        def f(x):
            q, p = split(x)
            com = (m[:, None] * q).sum(-2) / m.sum()
            P = p.sum(-2)
            return com[..., d] * P[..., e] - com[..., e] * P[..., d]

        return f

    formulas = {f"T_{d + 1}": T(d) for d in range(dim)}
    for d in range(dim):
        formulas[f"P_{d + 1}"] = lambda x, d=d: T(d)(x) ** 2
        for e in range(d + 1, dim):
            label = f"{d + 1}{e + 1}"
            formulas[f"RABS_{label}"] = rabs(d, e)
            formulas[f"RCOM_{label}"] = rcom(d, e)
            formulas[f"Q_{label}"] = lambda x, d=d, e=e: T(d)(x) * T(e)(x)
    quantities = {c.name: c for c in system.conserved_quantities}
    assert set(quantities) == set(formulas)
    M = system.phase_dim
    for name, fn in formulas.items():
        expected = generator_from_quantity(fn, M)
        assert torch.allclose(quantities[name].generator(), expected, atol=1e-12), name


def test_nbody_relative_rotation_is_rabs_minus_rcom():
    """RREL = sum_i (q_i - q_COM) ^ (p_i - p_COM) = RABS - RCOM for unit masses (appendix B.3)."""
    n, dim = 3, 2
    system = n_body(n, dim)
    x = torch.randn(30, system.phase_dim, generator=_gen(7), dtype=F64)
    q = x[:, : n * dim].reshape(30, n, dim)
    p = x[:, n * dim :].reshape(30, n, dim)
    qr, pr = q - q.mean(1, keepdim=True), p - p.mean(1, keepdim=True)
    rrel = (qr[..., 0] * pr[..., 1] - qr[..., 1] * pr[..., 0]).sum(-1)
    c = {c.name: c(x) for c in system.conserved_quantities}
    assert torch.allclose(rrel, c["RABS_12"] - c["RCOM_12"], atol=1e-12)
    # Our RCOM (total momentum) is n times the paper's (mean momentum) for unit masses.
    paper_rcom = q.mean(1)[:, 0] * p.mean(1)[:, 1] - q.mean(1)[:, 1] * p.mean(1)[:, 0]
    assert torch.allclose(c["RCOM_12"], n * paper_rcom, atol=1e-12)


def test_nbody_hamiltonian_matches_direct_sum():
    masses, G, eps = (1.0, 2.0, 0.5), 0.7, 0.3
    system = n_body(3, 2, masses=masses, G=G, softening=eps)
    x = torch.randn(5, 12, generator=_gen(8), dtype=F64)
    q, p = x[:, :6].reshape(5, 3, 2), x[:, 6:].reshape(5, 3, 2)
    expected = sum((p[:, i] ** 2).sum(-1) / (2 * masses[i]) for i in range(3))
    for i in range(3):
        for j in range(i + 1, 3):
            r2 = ((q[:, i] - q[:, j]) ** 2).sum(-1)
            expected = expected - G * masses[i] * masses[j] / torch.sqrt(r2 + eps**2)
    assert torch.allclose(system.H(x), expected, atol=1e-13)
    # Batched leading dimensions give the same values.
    assert torch.allclose(system.H(x.reshape(5, 1, 12)), expected[:, None], atol=1e-13)


def test_nbody_samplers_train_moved_wider():
    system = n_body(3, 2)
    n, nd = 20000, 6
    train = system.sample(n, _gen(9))
    moved = system.sample(n, _gen(9), "moved")
    wider = system.sample(n, _gen(9), "wider")
    # Same underlying draws: moved is train + offset on positions, exactly.
    assert torch.allclose(moved[:, :nd] - train[:, :nd], torch.full((n, nd), 6.0, dtype=F64))
    assert torch.equal(moved[:, nd:], train[:, nd:])
    assert NBODY_MOVED_OFFSET == 6.0 and NBODY_WIDER_STD == 2.0
    # wider = 2 r + s and train = r + s, so 2 train - wider = s is common to all bodies.
    shift = (2 * train[:, :nd] - wider[:, :nd]).reshape(n, 3, 2)
    assert torch.allclose(shift, shift[:, :1].expand(-1, 3, -1), atol=1e-12)
    # Statistics (standard errors about 1% for n = 20000; tolerance 5%):
    rel = (wider[:, :nd] - train[:, :nd]).std().item()  # = r ~ N(0, 1)
    assert abs(rel - 1.0) < 0.05
    assert abs(shift[:, 0].std().item() - 3.0) < 0.15  # common shift std 3
    assert abs(train[:, nd:].std().item() - 0.5) < 0.025  # momenta std 0.5
    assert abs(train[:, :nd].mean().item()) < 0.1 and abs(moved[:, :nd].mean().item() - 6) < 0.1


def test_nbody_params_recorded():
    system = make_system("nbody", n=2, dim=3, masses=[1, 2], softening=0.5)
    assert system.phase_dim == 12
    assert dict(system.params) == {
        "n": 2, "dim": 3, "masses": (1.0, 2.0), "G": 1.0, "softening": 0.5,
        "shift_std": 3.0, "momentum_std": 0.5,
    }
    assert len(system.conserved_quantities) == 15
    assert system.test_sets == ("moved", "wider")


# ---------------------------------------------------------------------------- base class


def pendulum() -> HamiltonianSystem:
    return HamiltonianSystem(
        "pendulum", 2, lambda x: x[..., 1] ** 2 / 2 - torch.cos(x[..., 0]), gaussian_initial(2)
    )


def test_vector_field_matches_analytic_and_works_under_no_grad():
    system = pendulum()
    x = torch.randn(4, 3, 2, generator=_gen(11), dtype=F64)
    expected = torch.stack([x[..., 1], -torch.sin(x[..., 0])], dim=-1)
    assert torch.allclose(system.vector_field(x), expected, atol=1e-14)
    with torch.no_grad():
        v = system.vector_field(x)
    assert torch.allclose(v, expected, atol=1e-14) and not v.requires_grad


def test_vector_field_is_differentiable_when_input_requires_grad():
    system = pendulum()
    x = torch.randn(5, 2, generator=_gen(12), dtype=F64, requires_grad=True)
    v = system.vector_field(x)
    (grad,) = torch.autograd.grad(v[:, 1].sum(), x)  # d(-sin q)/dq = -cos q, 0 in p
    assert torch.allclose(grad[:, 0], -torch.cos(x[:, 0].detach()), atol=1e-14)
    assert torch.allclose(grad[:, 1], torch.zeros(5, dtype=F64), atol=1e-15)


def test_vector_field_of_constant_H_is_zero():
    system = HamiltonianSystem("flat", 2, lambda x: x.sum(-1) * 0.0 + 1.0, gaussian_initial(2))
    x = torch.randn(3, 2, generator=_gen(13), dtype=F64)
    assert torch.equal(system.vector_field(x), torch.zeros(3, 2, dtype=F64))


def test_gaussian_initial_statistics_and_reproducibility():
    sampler = gaussian_initial(4, std=2.0)
    a = sampler(20000, _gen(14))
    assert a.shape == (20000, 4) and a.dtype == F64
    assert abs(a.std().item() - 2.0) < 0.05  # standard error about 0.01
    assert abs(a.mean().item()) < 0.05
    assert torch.equal(a, sampler(20000, _gen(14)))
    with pytest.raises(ValueError, match="std must be positive"):
        gaussian_initial(2, std=0.0)
    with pytest.raises(ValueError, match="positive even"):
        gaussian_initial(3)


def test_sample_uses_named_sampler_and_validates():
    system = n_body(3, 2)
    with pytest.raises(ValueError, match="no initial-condition sampler 'nope'.*moved"):
        system.sample(3, _gen(0), "nope")
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        system.sample(0, _gen(0))
    with pytest.raises(TypeError, match="torch.Generator"):
        system.sample(3, 0)
    bad_shape = HamiltonianSystem("bad", 2, lambda x: x.sum(-1), lambda n, g: torch.zeros(n, 3))
    with pytest.raises(ValueError, match=r"must return shape \(4, 2\), got \(4, 3\)"):
        bad_shape.sample(4, _gen(0))
    bad_value = HamiltonianSystem(
        "bad", 2, lambda x: x.sum(-1), lambda n, g: torch.full((n, 2), math.nan)
    )
    with pytest.raises(ValueError, match="non-finite"):
        bad_value.sample(4, _gen(0))


def test_bad_systems_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="positive even number"):
        HamiltonianSystem("odd", 3, lambda x: x.sum(-1), gaussian_initial(2))
    quantity = QuadraticQuantity("c", torch.eye(4, dtype=F64), torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="4-dim phase space but the system has M = 2"):
        HamiltonianSystem("mismatch", 2, lambda x: x.sum(-1), gaussian_initial(2), (quantity,))
    with pytest.raises(ValueError, match="other than 'train'"):
        HamiltonianSystem(
            "s", 2, lambda x: x.sum(-1), gaussian_initial(2), test_initial={"train": print}
        )
    system = simple_harmonic_oscillator()
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\).*got \(5, 3\)"):
        system.H(torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        system.vector_field(torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="NaN or inf"):
        system.H(torch.tensor([[0.0, math.inf]], dtype=F64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        system.H([0.0, 1.0])
    wrong_out = HamiltonianSystem("w", 2, lambda x: x, gaussian_initial(2))
    with pytest.raises(ValueError, match=r"must map \(\.\.\., M\) to \(\.\.\.\)"):
        wrong_out.H(torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="no ground-truth conserved quantities"):
        pendulum().generators()


def test_system_mappings_are_read_only():
    system = n_body(3, 2)
    with pytest.raises(TypeError):
        system.params["n"] = 4  # type: ignore[index]
    with pytest.raises(TypeError):
        system.test_initial["x"] = print  # type: ignore[index]


# ---------------------------------------------------------------------------- registry


def test_make_system_by_name():
    assert set(SYSTEMS) == {"sho", "oscillators", "nbody"}
    assert make_system("sho").phase_dim == 2
    osc = make_system("oscillators", n=4)
    assert osc.phase_dim == 8 and len(osc.conserved_quantities) == 16
    assert make_system("nbody").phase_dim == 12


def test_make_system_rejects_unknown_names_and_params():
    with pytest.raises(ValueError, match=r"unknown system 'pendulum'.*'nbody'.*'oscillators'"):
        make_system("pendulum")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['n'\] for system 'sho'"):
        make_system("sho", n=2)
    with pytest.raises(ValueError, match=r"\['bodies'\] for system 'nbody'.*'softening'"):
        make_system("nbody", bodies=3)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        make_system("oscillators", n=0)
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        n_body(1)
    with pytest.raises(ValueError, match="masses must have n = 3 entries"):
        n_body(3, masses=(1.0, 1.0))
    with pytest.raises(ValueError, match="every mass must be > 0"):
        n_body(2, masses=(1.0, -1.0))
    with pytest.raises(ValueError, match="softening must be >= 0"):
        n_body(softening=-1.0)
    with pytest.raises(ValueError, match="G must be finite"):
        n_body(G=math.inf)


def test_nbody_oracle_is_se2_and_the_orbit_group_has_all_seven():
    """The paper's Table 3 oracle is SE(2): the two translations and the absolute rotation."""
    system = n_body(3, 2)
    assert system.oracle_quantities == ("T_1", "T_2", "RABS_12")
    G = system.oracle_generators(dtype=torch.float64)
    torch.testing.assert_close(G, system.generators(dtype=torch.float64)[:3])
    assert system.generators().shape[0] == 7
    assert n_body(3, 3).oracle_quantities == ("T_1", "T_2", "T_3", "RABS_12", "RABS_13", "RABS_23")
    with pytest.raises(ValueError, match="no conserved quantities"):
        system.generators(names=["RREL"])
