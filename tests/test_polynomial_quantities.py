"""Polynomial conserved quantities with integrated flows, the Hamiltonian symmetrised over them,
the family switch of the model and config, and (slow) the quartic quick config."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.optim import Adam
from sho_data import sho_transitions

from pyro_razor.configio import ConfigError, replace_path
from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.models import (
    FlowSymmetrisedHamiltonian,
    NoetherRazorModel,
    PolynomialQuantities,
    get_activation,
    mlp_value_and_input_gradient,
)
from pyro_razor.models.polynomial_quantities import (
    monomial_exponents,
    monomial_names,
    quadratic_coefficients,
)
from pyro_razor.runs import registry
from pyro_razor.runs.config import ModelConfig
from pyro_razor.symmetry import flow_matrices, generator_matrix, quadratic_value

DT = torch.float64
EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
QUICK = EXPERIMENTS / "nonlinear" / "quartic_polynomial_quick.toml"


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def quantities(M=2, K=1, degree=4, init=None, seed=0, **kw) -> PolynomialQuantities:
    g = torch.Generator().manual_seed(seed)
    return PolynomialQuantities(M, K, degree, 0.1, g, init, **kw).to(DT)


def random_weights(widths, P=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(P, widths[i + 1], widths[i] + 1, generator=g, dtype=DT)
            / math.sqrt(widths[i]) for i in range(len(widths) - 1)]


def quartic_energy_coefficients() -> torch.Tensor:
    """``(1, 14)`` coefficients of ``H = p^2/2 + q^4/4`` in the ``M = 2``, degree-4 basis."""
    names = monomial_names(["q", "p"], 4)
    eta = torch.zeros(1, len(names), dtype=DT)
    eta[0, names.index("p^2")], eta[0, names.index("q^4")] = 0.5, 0.25
    return eta


# --------------------------------------------------------------------- monomials
def test_monomial_basis_counts_and_orders_the_monomials():
    assert monomial_exponents(2, 4).shape == (14, 2)  # binom(6, 4) - 1
    assert monomial_exponents(4, 3).shape == (34, 4)  # binom(7, 3) - 1
    assert monomial_names(["q", "p"], 2) == ["q", "p", "q^2", "q p", "p^2"]


def test_values_and_gradients_match_autograd_and_the_quadratic_formula():
    """Closed-form monomial gradients equal autograd's to 1e-12 (float64, M = 4, degree 4), and
    a quadratic's embedded coefficients give 1/2 x^T A x + b^T x to 1e-12."""
    Q = quantities(M=4, K=3)
    x = torch.randn(5, 7, 4, dtype=DT, requires_grad=True)
    values = Q.values(x)
    auto = torch.stack([torch.autograd.grad(values[..., k].sum(), x, retain_graph=True)[0]
                        for k in range(3)], dim=-2)
    assert values.shape == (5, 7, 3) and Q.gradients(x).shape == (5, 7, 3, 4)
    torch.testing.assert_close(Q.gradients(x), auto, rtol=1e-12, atol=1e-12)
    A = torch.randn(2, 4, 4, dtype=DT)
    A, b = A + A.transpose(-1, -2), torch.randn(2, 4, dtype=DT)
    Qq = quantities(M=4, K=2, degree=3, init=quadratic_coefficients(A, b, 3))
    direct = torch.stack([quadratic_value(A[k], b[k], x) for k in range(2)], dim=-1)
    torch.testing.assert_close(Qq.values(x), direct, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------- flows
def test_degree_two_flow_matches_the_exact_matrix_exponential_flow():
    """A quadratic quantity's implicit-midpoint flow against expm(sum tau G) (M = 4, K = 2,
    positive-definite A, |tau| <= pi, mean displacement 4.2): largest error 2.27, 0.55, 0.11,
    0.025 with 8, 16, 32, 64 sub-steps, i.e. it falls by 4.1-4.9 per doubling (order 2)."""
    g = torch.Generator().manual_seed(1)
    B = torch.randn(2, 4, 4, generator=g, dtype=DT)
    A = 0.125 * B @ B.transpose(-1, -2) + 0.5 * torch.eye(4, dtype=DT)
    b = 0.3 * torch.randn(2, 4, generator=g, dtype=DT)
    x = torch.randn(50, 4, generator=g, dtype=DT)
    tau = math.pi * (2 * torch.rand(50, 2, generator=g, dtype=DT) - 1)
    T = flow_matrices(generator_matrix(A, b), tau)  # (50, 5, 5)
    exact = torch.einsum("nij,nj->ni", T[:, :4, :4], x) + T[:, :4, 4]
    errors = []
    with torch.no_grad():
        for steps in (8, 16, 32, 64):
            Q = quantities(M=4, K=2, degree=2, init=quadratic_coefficients(A, b, 2),
                           flow_steps=steps)
            errors.append(float((Q.flow(x, tau) - exact).norm(dim=-1).max()))
    assert errors[-1] < 0.03
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 3.5 < coarse / fine < 5.5


def test_flow_conserves_its_own_quantity_and_is_reversible():
    """The quartic energy's time-tau flow (|tau| <= 1, x ~ N(0, 0.7^2 I), mean displacement
    0.42) keeps C_tau to a relative 0.0144 with 8 sub-steps and 0.0026 with 16 (order 2), and
    Phi^{-tau} o Phi^tau = id to 0.0096 (symmetric up to the fixed-point residual)."""
    g = torch.Generator().manual_seed(2)
    x = 0.7 * torch.randn(200, 2, generator=g, dtype=DT)
    tau = 2 * torch.rand(200, 1, generator=g, dtype=DT) - 1
    drift = []
    with torch.no_grad():
        for steps in (8, 16):
            Q = quantities(init=quartic_energy_coefficients(), flow_steps=steps)
            y = Q.flow(x, tau)
            C0, C1 = Q.values(x)[:, 0], Q.values(y)[:, 0]
            drift.append(float(((C1 - C0).abs() / C0).max()))
            if steps == 8:
                assert float((y - x).norm(dim=-1).mean()) > 0.4  # it does move the points
                torch.testing.assert_close(Q.flow(y, -tau), x, rtol=0, atol=0.015)
    assert drift[0] < 0.02 and drift[1] < drift[0] / 4


# --------------------------------------------------------------------- H symmetrised over flows
def _direct_energy(weights, act, Q, tau, x):
    """``1/S sum_s F(Phi^{tau_ps}(x))`` written out: ``x (P, N, M)``, ``tau (P, S, K)``."""
    P, N, M = x.shape
    z = Q.flow(x[:, None].expand(P, tau.shape[1], N, M), tau[:, :, None, :])
    value = mlp_value_and_input_gradient(weights, z.reshape(P, -1, M), act)[0]
    return value.reshape(P, tau.shape[1], N).mean(1)


@pytest.mark.parametrize("M,degree,max_speed", [(2, 4, 2.0), (4, 3, None), (2, 2, None)])
def test_tangent_linear_jacobian_is_the_flows_autograd_jacobian(M, degree, max_speed):
    """``flow_and_jacobian`` returns exactly ``flow``'s points and the Jacobian autograd
    computes through the same sub-steps, to 1e-12 (the speed limit active: ``v = 2`` with
    fields of size ~1-3)."""
    g = torch.Generator().manual_seed(7)
    Q = quantities(M, K=2, degree=degree, flow_steps=3, max_speed=max_speed)
    with torch.no_grad():
        Q.eta.copy_(0.3 * torch.randn(Q.eta.shape, generator=g, dtype=DT))
    x, tau = torch.randn(6, M, generator=g, dtype=DT), torch.randn(6, 2, generator=g, dtype=DT)
    z, D = Q.flow_and_jacobian(x, tau)
    assert torch.equal(z, Q.flow(x, tau))
    expected = torch.autograd.functional.jacobian(lambda y: Q.flow(y, tau).sum(0), x)
    torch.testing.assert_close(D, expected.permute(1, 0, 2).detach(), rtol=1e-12, atol=1e-12)


def test_flow_hamiltonian_vector_field_matches_autograd_of_the_direct_expression():
    """Energy and J grad H_hat equal the direct expression and its autograd gradient to 1e-10,
    with and without grad enabled; the model builds this Hamiltonian for polynomial
    quantities."""
    act = get_activation("elu", 2.0)
    eta = 0.05 * torch.randn(1, 14, generator=torch.Generator().manual_seed(4), dtype=DT)
    weights, Q = random_weights((2, 16, 16, 1)), quantities(init=eta, max_speed=10.0)
    tau = 0.5 * torch.randn(2, 5, 1, dtype=DT)
    x = torch.randn(2, 9, 2, dtype=DT, requires_grad=True)
    H = FlowSymmetrisedHamiltonian(weights, act, Q, tau)
    energy = _direct_energy(weights, act, Q, tau, x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=DT)
    torch.testing.assert_close(H.energy(x), energy, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(H.vector_field(x), grad @ J.T, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(H.vector_field(x.detach()), grad @ J.T, rtol=1e-10,
                                   atol=1e-10)
    assert H.tau_samples == 5 and H.broadcast(x[0]).shape == (2, 9, 2)
    model = NoetherRazorModel(2, 0.2, hidden=(16, 16), quantities=Q, tau_samples=5).to(DT)
    assert model.transforms(num_draws=2).shape == (2, 5, 1)
    assert isinstance(model.hamiltonian(weights, tau), FlowSymmetrisedHamiltonian)


class _ExplicitEta:
    """Polynomial quantities whose coefficients are a plain tensor (for gradcheck)."""

    def __init__(self, Q: PolynomialQuantities, eta: torch.Tensor) -> None:
        self.Q, self.eta = Q, eta
        self.phase_dim, self.num_quantities = Q.phase_dim, Q.num_quantities

    def flow(self, x, tau):
        return self.Q.flow_of(x, tau @ self.eta)

    def flow_and_jacobian(self, x, tau):
        return self.Q.flow_and_jacobian_of(x, tau @ self.eta)


def test_flow_hamiltonian_field_is_differentiable_in_eta_and_theta():
    """The vector field's derivatives w.r.t. eta and the weights (through the flow and its
    tangent-linear Jacobian) pass torch.autograd.gradcheck (float64 finite differences)."""
    act = get_activation("tanh")
    eta = 0.1 * torch.randn(1, 9, generator=torch.Generator().manual_seed(5), dtype=DT)
    weights, Q = random_weights((2, 5, 1), P=1), quantities(degree=3, init=eta, flow_steps=2)
    tau, x = 0.5 * torch.randn(1, 3, 1, dtype=DT), torch.randn(1, 4, 2, dtype=DT)

    def field(eta, w0):
        H = FlowSymmetrisedHamiltonian([w0, weights[1]], act, _ExplicitEta(Q, eta), tau)
        return H.vector_field(x)

    eta = Q.eta.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(field, (eta, weights[0].clone().requires_grad_(True)))


# --------------------------------------------------------------------- model, config, registry
def polynomial_model(**kw) -> NoetherRazorModel:
    return NoetherRazorModel.learned_polynomial(
        2, 0.2, 1, degree=4, init_std=0.1, generator=torch.Generator().manual_seed(0),
        hidden=(16, 16), tau_samples=4, integrator_steps=2, **kw).to(DT)


def test_compiled_flow_gives_the_eager_training_steps():
    """Three SVI steps with the training flows through ``torch.compile`` give the losses and
    ``eta`` of the eager flows to 1e-9 (float64; the compiled graph fuses and reorders the
    same arithmetic), and compiling raised nothing (no fallback warning). Compiling this
    small graph takes ~30 s on 2 cores the first time (cached on disk afterwards)."""
    states, nxt = sho_transitions(T=3)
    results = []
    for compiled in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = polynomial_model(compile_flow=compiled, flow_steps=1)
        guide = MatrixNormalGuide(model, init_scale=0.02)
        svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO(max_plate_nesting=2))
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            losses = [svi.step(states, nxt) for _ in range(3)]
        results.append((losses, pyro.param("quantities.eta").detach().clone()))
    (eager_losses, eager_eta), (losses, eta) = results
    assert losses == pytest.approx(eager_losses, rel=1e-9)
    torch.testing.assert_close(eta, eager_eta, rtol=1e-9, atol=1e-12)
    assert float((eta - polynomial_model(flow_steps=1).quantities.eta.detach()).abs().max()) > 1e-4


def test_a_compiler_failure_in_the_backward_falls_back_to_the_eager_flow(monkeypatch):
    """A compiled flow whose backward fails (as torch 2.13's inductor does on the Hénon–Heiles
    config) is caught by the first-use probe: one warning, then the eager flow's values and
    gradients, and no further compiled calls."""
    from pyro_razor.models import polynomial_flow

    class _BrokenBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            raise UnboundLocalError("cannot access local variable 'buf21'")

    calls = []

    def broken(*args):
        calls.append(1)
        z, D = polynomial_flow.midpoint_flow_and_jacobian(*args)
        return _BrokenBackward.apply(z), D

    monkeypatch.setattr(polynomial_flow, "_COMPILED",
                        {"function": broken, "failed": False, "verified": set()})
    Q = quantities(K=1, flow_steps=2, compile_flow=True)
    x, tau = torch.randn(3, 2, dtype=DT, requires_grad=True), torch.randn(3, 1, dtype=DT)
    with pytest.warns(RuntimeWarning, match="torch.compile of the polynomial flow failed"):
        z, D = Q.flow_and_jacobian(x, tau)
    (z.sum() + D.sum()).backward()
    assert torch.equal(z, Q.flow(x, tau)) and torch.isfinite(x.grad).all()
    Q.flow_and_jacobian(x, tau)
    assert len(calls) == 1 and polynomial_flow._COMPILED["failed"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("guide_kind", ["matrix_normal", "auto_normal"])
def test_polynomial_model_takes_an_svi_step_with_either_guide(guide_kind, seed):
    """One SVI step (2 vectorised particles) gives a finite loss, moves eta, and refuses
    generator matrices with one line. (Without the speed limit 2 of 30 seeds of this setting
    blew up to inf within two steps; with max_speed = 10, 0 of 24 per guide did.)"""
    pyro.set_rng_seed(seed)
    states, nxt = sho_transitions(T=3)
    model = polynomial_model()
    guide = (MatrixNormalGuide(model, init_scale=0.02) if guide_kind == "matrix_normal"
             else AutoNormal(model, init_loc_fn=model.init_loc_fn, init_scale=0.02))
    elbo = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=2)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), elbo)
    svi.step(states, nxt)
    before = pyro.param("quantities.eta").detach().clone()
    loss = svi.step(states, nxt)
    assert math.isfinite(loss)
    assert float((pyro.param("quantities.eta").detach() - before).abs().max()) > 1e-4
    assert model.quantity_family == "polynomial"
    with pytest.raises(ValueError, match="non-linear flows and no"):
        model.generators()


def test_quadratic_family_is_bit_identical_to_the_direct_construction():
    """The registry's quadratic learned variant draws the same transforms, bit for bit, as
    NoetherRazorModel.learned and as flow_matrices of the measure's own draw."""
    mc = ModelConfig(hidden=(8,), num_quantities=2, eta_init_std=0.1, eta_seed=3, tau_samples=6)
    built = registry.VARIANTS["learned"](2, 0.2, None, mc, hidden=(8,), tau_samples=6)
    direct = NoetherRazorModel.learned(2, 0.2, 2, init_std=0.1,
                                       generator=torch.Generator().manual_seed(3),
                                       hidden=(8,), tau_samples=6)
    assert built.quantity_family == "quadratic"
    draws = []
    for model in (built, direct):
        torch.manual_seed(0)
        draws.append(model.transforms(num_draws=3))
    torch.manual_seed(0)
    tau = model.measure.sample(18, 2, dtype=draws[0].dtype).reshape(3, 6, 2)
    assert torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], flow_matrices(direct.generators(), tau))


def test_speed_limit_keeps_a_blowing_up_flow_finite_on_the_same_level_set():
    """C = q^3 p sends q to infinity at time 1/(2 q0^2) (q' = q^3): from q0 = 1 the time-1
    flow is not finite without a limit, and with max_speed = 10 it moves the point by at most
    10 (6.77) and keeps C to a relative 0.19, 7.2e-3, 4e-4 with 16, 64, 256 sub-steps (a
    positive rescaling of J grad C conserves C)."""
    names = monomial_names(["q", "p"], 4)
    eta = torch.zeros(1, 14, dtype=DT)
    eta[0, names.index("q^3 p")] = 1.0
    x, tau = torch.tensor([[1.0, 1.0]], dtype=DT), torch.ones(1, 1, dtype=DT)
    with torch.no_grad():
        assert not torch.isfinite(quantities(init=eta).flow(x, tau)).all()
        Q = quantities(init=eta, max_speed=10.0, flow_steps=256)
        y = Q.flow(x, tau)
        assert float((y - x).norm()) <= 10.0
        torch.testing.assert_close(Q.values(y), Q.values(x), rtol=1e-3, atol=0)


def test_config_names_the_family_and_validates_the_degree(tmp_path):
    assert set(registry.QUANTITY_FAMILIES) == {"quadratic", "polynomial"}
    mc = ModelConfig(hidden=(8,), quantity_family="polynomial", quantity_degree=3)
    model = registry.VARIANTS["learned"](2, 0.2, None, mc, hidden=(8,))
    assert isinstance(model.quantities, PolynomialQuantities)
    assert model.quantities.eta.shape == (1, 9)
    with pytest.raises(ValueError, match=r"quantity_degree must be in 2\.\.4"):
        ModelConfig(quantity_degree=5)
    with pytest.raises(ValueError, match=r"quantity_max_speed must be >= 0 and finite"):
        ModelConfig(quantity_max_speed=-1.0)
    with pytest.raises(ValueError, match="init must be finite of shape"):
        PolynomialQuantities(2, 1, 4, init=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="max_speed must be positive and finite or None"):
        PolynomialQuantities(2, 1, 4, max_speed=0.0)
    from pyro_razor.runs import load_experiment

    text = QUICK.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('quantity_family = "polynomial"', 'quantity_family = "cubic"'))
    sys.path.insert(0, str(EXPERIMENTS.parent))
    try:
        assert load_experiment(QUICK).model \
            .quantity_family == "polynomial"
        with pytest.raises(ConfigError, match="quantity_family"):
            load_experiment(bad)
    finally:
        sys.path.remove(str(EXPERIMENTS.parent))


# --------------------------------------------------------------------- the quick config (slow)
@pytest.mark.slow
def test_quartic_polynomial_quick_learns_a_quartic_law_and_beats_vanilla(monkeypatch):
    """The quick config (2 min 36 s through `pyro-razor run` with evaluation, rollouts and
    figures, 2026-12-07, 2 cores alone, the compiled flow cached; it was 8.8 min under
    contention before the tangent-linear Jacobian and the compiled flow).

    Measured (2026-12-06, float32, seed 0, tau uniform on [-1, 1]; re-run 2026-12-07 with the
    current flow: 20.25 vs 26.50, test MSE 0.0158 vs 0.0367, q^4 0.436): -ELBO/N 20.19 learned vs
    26.06 vanilla (NLL/N -0.41 vs 0.02, KL/N 20.59 vs 26.05; the learned quadratic family on
    the same data: 25.35), test MSE 0.016 vs 0.037. Normalised to p^2 = 1 the learned law has
    q^4 0.436 (truth 0.5), but also q^2 0.47, q -0.63, q^3 0.30, q p 0.22 (truth 0); it is
    conserved along the training trajectories to a within/total variance of 0.0011 (0.070
    along the longer test trajectories; the true energy: 3e-24).
    """
    from pyro_razor import inference
    from pyro_razor.runs import load_experiment
    from pyro_razor.runs.data import RunData
    from pyro_razor.runs.results import evaluate_variant
    from pyro_razor.runs.variants import fresh_variant

    monkeypatch.syspath_prepend(str(EXPERIMENTS.parent))
    config = load_experiment(QUICK)
    data = RunData.load(config.data, "cpu", config.torch_dtype)
    metrics = {}
    for variant in config.variants:
        model, guide = fresh_variant(config, variant, data.system, "cpu", data.states,
                                     data.next_states)
        history = inference.train(model, guide, data.states, data.next_states, config.train,
                                  progress=False).history
        metrics[variant] = evaluate_variant(config, model, guide, data, history)
    vanilla, learned = metrics["vanilla"], metrics["learned"]
    assert learned["neg_elbo_per_n"] < vanilla["neg_elbo_per_n"] - 4.0
    assert learned["test_mse"] < vanilla["test_mse"]
    with torch.no_grad():
        C = model.quantities.to(DT).values(data.train.to(DT))[..., 0]  # (B, n)
    within = float(((C - C.mean(1, keepdim=True)) ** 2).sum() / ((C - C.mean()) ** 2).sum())
    assert within < 0.01
    names = monomial_names(["q", "p"], 4)
    eta = model.quantities.eta.detach().double()[0]
    eta = eta / eta[names.index("p^2")]
    assert float(eta[names.index("q^4")]) == pytest.approx(0.5, abs=0.15)


def test_a_polynomial_run_writes_its_learned_coefficients(tmp_path, monkeypatch):
    """``run`` of the quartic quick config, cut to 2 epochs and a small evaluation, goes through
    training, evaluation, rollouts and analysis and writes ``learned/quantities.json`` (the
    polynomial record, in place of the generator analysis). This path failed before with
    'unknown run file' (found by the first full run of the config)."""
    from pyro_razor.runs import load_experiment, run_experiment

    monkeypatch.syspath_prepend(str(EXPERIMENTS.parent))
    config = load_experiment(QUICK)
    for path, value in (("variants", ("learned",)), ("train.epochs", 2),
                        ("model.quantity_compile", False), ("data.n_test", 3),
                        ("evaluation.num_samples", 2), ("evaluation.tau_samples", 4),
                        ("evaluation.rollout_trajectories", 2), ("evaluation.grid", 11)):
        config = replace_path(config, path, value)
    run_experiment(config, tmp_path / "run", progress=False, figures=False)
    record = json.loads((tmp_path / "run" / "learned" / "quantities.json").read_text())
    assert len(record["monomials"]) == 14 and record["monomials"][-5] == "q1^4"
    assert not (tmp_path / "run" / "learned" / "symmetry.json").exists()


def test_direct_start_of_a_polynomial_family_is_the_energy_at_unit_speed(monkeypatch):
    """``model.eta_init = "direct"`` with degree-4 polynomial quantities: the quartic quick
    data's direct estimate of degree 4, rewritten in the model's monomials, starts the first
    quantity at the energy (q^4 : p^2 = 0.5 : 1, every other coefficient below 1e-6 of p^2)
    with unit flow speed on the training states; an estimate of too high a degree is
    refused."""
    from pyro_razor.discovery.candidates import polynomial_candidates
    from pyro_razor.discovery.direct import direct_estimate
    from pyro_razor.runs import load_experiment
    from pyro_razor.runs.data import RunData
    from pyro_razor.runs.variants import fresh_variant

    monkeypatch.syspath_prepend(str(EXPERIMENTS.parent))
    config = replace_path(load_experiment(QUICK), "model.eta_init", "direct")
    data = RunData.load(config.data, "cpu", config.torch_dtype)
    model, _ = fresh_variant(config, "learned", data.system, "cpu", data.states, data.next_states)
    eta = model.quantities.eta.detach().to(DT)[0]
    names = monomial_names(["q", "p"], 4)
    relative = eta / eta[names.index("p^2")]
    assert float(relative[names.index("q^4")]) == pytest.approx(0.5, abs=1e-4)
    others = [i for i, n in enumerate(names) if n not in ("q^4", "p^2")]
    assert float(relative[others].abs().max()) < 1e-4
    speed = model.quantities.to(DT).gradients(data.train.to(DT).reshape(-1, 2))
    assert float(speed.pow(2).sum(-1).mean().sqrt()) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValueError, match="degree <= 2"):
        polynomial_candidates(direct_estimate(data.train, degree=4), data.train, 2)


def test_polynomial_record_names_every_coefficient_and_scales_each_law():
    """What `run` writes for a polynomial learned variant instead of the generator analysis:
    eta over the named monomials (F = 14 for M = 2, D = 4), and each row divided by its largest
    |coefficient| (so that entry is exactly +-1)."""
    from pyro_razor.runs.results import polynomial_record

    model = polynomial_model()
    record = polynomial_record(model, ["q", "p"])
    eta = model.quantities.eta.detach().double()
    assert len(record["monomials"]) == eta.shape[1] == 14
    assert torch.allclose(torch.tensor(record["eta"], dtype=torch.float64), eta)
    relative = torch.tensor(record["eta_relative"], dtype=torch.float64)
    ones = torch.ones(eta.shape[0], dtype=torch.float64)
    assert torch.allclose(relative.abs().max(dim=1).values, ones)
