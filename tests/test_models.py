"""Tests of the Noether's razor model: network gradients, symmetrisation, the Pyro model, priors."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO
from sho_data import sho_transitions

from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.models import (
    ClosedFormVariancePrior,
    EmpiricalNoise,
    FixedNoise,
    FixedVariancePrior,
    LearnedVariancePrior,
    NoetherRazorModel,
    SymmetrisedHamiltonian,
    get_activation,
    mlp_value,
    mlp_value_and_input_gradient,
)
from pyro_razor.symmetry import SymmetryMeasure, flow_matrices, generator_matrix

DT = torch.float64


def sho_generator() -> torch.Tensor:
    return generator_matrix(torch.eye(2, dtype=DT), torch.zeros(2, dtype=DT))[None]


def random_weights(widths, P=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(P, widths[i + 1], widths[i] + 1, generator=g, dtype=DT) / math.sqrt(widths[i])
        for i in range(len(widths) - 1)
    ]


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


# --------------------------------------------------------------------- network gradients
@pytest.mark.parametrize("name", ["elu", "tanh", "softplus", "silu"])
def test_mlp_input_gradient_matches_autograd(name):
    act = get_activation(name, alpha=2.0)
    weights = random_weights((4, 7, 5, 1))
    z = torch.randn(3, 11, 4, dtype=DT, requires_grad=True)
    value, grad = mlp_value_and_input_gradient(weights, z, act)
    (auto,) = torch.autograd.grad(value.sum(), z)
    assert value.shape == (3, 11) and grad.shape == (3, 11, 4)
    torch.testing.assert_close(grad, auto, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("widths", [(4, 7, 5, 1), (4, 1)])
def test_mlp_value_equals_the_value_of_the_gradient_pass(widths):
    act = get_activation("elu", alpha=2.0)
    weights = random_weights(widths)
    z = torch.randn(3, 11, 4, dtype=DT)
    value = mlp_value(weights, z, act)
    assert value.shape == (3, 11)
    torch.testing.assert_close(value, mlp_value_and_input_gradient(weights, z, act)[0],
                               rtol=1e-14, atol=1e-14)


def test_activation_derivatives_match_autograd():
    a = torch.linspace(-6, 6, 101, dtype=DT, requires_grad=True)
    for name in ["elu", "tanh", "softplus", "silu"]:
        act = get_activation(name, alpha=1.5)
        h = act.fn(a)
        (auto,) = torch.autograd.grad(h.sum(), a, retain_graph=True)
        torch.testing.assert_close(act.derivative(a, h), auto, rtol=1e-12, atol=1e-12)
        # and its own derivative (training differentiates through the slope) is right too
        (second,) = torch.autograd.grad(act.derivative(a, h).sum(), a)
        (auto2,) = torch.autograd.grad(
            torch.autograd.grad(act.fn(a).sum(), a, create_graph=True)[0].sum(), a
        )
        torch.testing.assert_close(second, auto2, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        get_activation("relu6")


def test_linear_network_gradient_is_constant():
    weights = random_weights((4, 1))
    z = torch.randn(3, 9, 4, dtype=DT)
    _, grad = mlp_value_and_input_gradient(weights, z, get_activation("elu"))
    torch.testing.assert_close(grad, weights[0][:, :, :4].expand(3, 9, 4))


# --------------------------------------------------------------------- symmetrisation
def test_symmetrised_vector_field_is_J_grad_of_H_hat():
    """The model's vector field equals J times the autograd gradient of the same H_hat."""
    weights = random_weights((4, 16, 16, 1))
    G = generator_matrix(
        *(lambda A: (A + A.T, torch.randn(4, dtype=DT)))(torch.randn(4, 4, dtype=DT))
    )
    T = flow_matrices(G[None], 0.3 * torch.randn(6, 1, dtype=DT))
    H = SymmetrisedHamiltonian(weights, get_activation("elu"), T)
    x = torch.randn(3, 5, 4, dtype=DT, requires_grad=True)
    (grad,) = torch.autograd.grad(H.energy(x).sum(), x)
    J = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0], [0, -1, 0, 0]], dtype=DT)
    torch.testing.assert_close(H.vector_field(x), grad @ J.T, rtol=1e-10, atol=1e-12)


def test_oracle_symmetrisation_is_invariant_along_the_true_flow():
    """H_hat with SO(2) and a full-orbit measure barely varies along the SHO flow.

    With S = 4000 uniform angles on [-pi, pi], the variance of H_hat along an orbit is the
    Monte-Carlo variance of an S-sample average: we require var(H_hat) / var(F) < 0.01
    (expected ~ 1/S up to constants); the measured ratio is printed.
    """
    torch.manual_seed(0)
    weights = random_weights((2, 32, 32, 1), P=2)
    tau = SymmetryMeasure("cube", math.pi).sample(
        4000, 1, dtype=DT, generator=torch.Generator().manual_seed(1)
    )
    H_sym = SymmetrisedHamiltonian(
        weights, get_activation("elu"), flow_matrices(sho_generator(), tau)
    )
    H_raw = SymmetrisedHamiltonian(weights, get_activation("elu"), None)
    angles = torch.linspace(0, 2 * math.pi, 50, dtype=DT)
    x = torch.stack(
        [1.3 * torch.cos(angles), 1.3 * torch.sin(angles)], -1
    )  # one orbit of radius 1.3
    ratio = H_sym.energy(x).var(dim=1) / H_raw.energy(x).var(dim=1)
    print("variance ratio along the SO(2) orbit:", ratio.tolist())
    assert (ratio < 1e-2).all()


def test_tau_is_drawn_per_weight_sample_and_particles_average_its_noise():
    """Transforms are (P, S, M+1, M+1), independent across the P weight samples: with the same
    weights replicated P times, the particle average of grad H_hat is an average of P
    independent S-sample estimates, so its variance falls by P (measured ~8 for P = 8; the
    test allows 5-13, i.e. +-60% on a ratio estimated from 300 repetitions)."""
    pyro.set_rng_seed(0)
    model = small_model("oracle")
    S, P = 4, 8
    T = model.transforms(S, num_draws=P)
    assert T.shape == (P, S, 3, 3)
    assert not torch.allclose(T[0], T[1])  # each weight sample has its own symmetry times
    one = [w.detach() for w in random_weights((2, 16, 16, 1), P=1)]
    x = torch.tensor([[0.7, -0.4]], dtype=DT)

    def particle_mean(P_: int) -> torch.Tensor:
        weights = [w.expand(P_, -1, -1) for w in one]
        H = model.hamiltonian(weights, model.transforms(S, num_draws=P_).to(DT))
        return H.energy_and_gradient(x)[1].mean(0)[0]  # (M,)

    var = {P_: torch.stack([particle_mean(P_) for _ in range(300)]).var(0).sum()
           for P_ in (1, P)}
    ratio = float(var[1] / var[P])
    print("variance ratio P=1 / P=8:", ratio)
    assert 5.0 < ratio < 13.0


def test_antithetic_tau_pairs_invert_each_other_and_cancel_the_first_order_term():
    """With ``tau_antithetic`` sample ``s + S/2`` is the inverse transform of sample ``s`` (to
    1e-12), an odd ``S`` keeps its shape, and for a generator ``eps G`` the estimate
    ``H_hat - F`` shrinks as ``eps^2`` (ratio 100 +- 10% from eps = 1e-2 to 1e-3 with the same
    tau draws) instead of ``eps`` (ratio 10 +- 10%): the first-order noise is gone."""
    one = [w.detach() for w in random_weights((2, 16, 16, 1), P=1)]
    x = torch.tensor([[0.7, -0.4], [-1.1, 0.3]], dtype=DT)

    def deviation(eps: float, antithetic: bool) -> float:
        model = NoetherRazorModel.oracle(eps * sho_generator(), 0.2, hidden=(16, 16),
                                         tau_samples=2, tau_antithetic=antithetic).to(dtype=DT)
        pyro.set_rng_seed(3)
        T = model.transforms(2, num_draws=1)
        sym = model.hamiltonian(one, T).energy(x)
        raw = model.hamiltonian(one, None).energy(x)
        return float((sym - raw).abs().sum())

    model = small_model("oracle", tau_antithetic=True)
    T = model.transforms(6, num_draws=3)
    eye = torch.eye(3, dtype=DT).expand(3, 3, 3, 3)
    assert torch.allclose(T[:, :3] @ T[:, 3:], eye, atol=1e-12)
    assert model.transforms(5, num_draws=2).shape == (2, 5, 3, 3)
    paired = deviation(1e-2, True) / deviation(1e-3, True)
    plain = deviation(1e-2, False) / deviation(1e-3, False)
    print("H_hat - F ratio eps 1e-2 / 1e-3: antithetic", paired, "plain", plain)
    assert 90 < paired < 110 and 9 < plain < 11


def test_evaluation_switches_to_stratified_times_per_weight_draw():
    """``model.evaluation(stratified=True)`` draws each of the P draws' S times as one
    Latin-hypercube set (the oracle's cube measure: one time per stratum of [-pi, pi]) and
    restores the plain times afterwards."""
    model = small_model("oracle", measure=SymmetryMeasure("cube", math.pi))
    pyro.set_rng_seed(0)
    with model.evaluation(8, stratified=True):
        tau = model.symmetry_times(num_draws=3)
    assert tau.shape == (3, 8, 1) and not model.tau_stratified and model.tau_samples == 4
    strata = torch.floor((tau[..., 0] / math.pi + 1) / 2 * 8).long()
    assert all(sorted(row.tolist()) == list(range(8)) for row in strata)
    plain = model.symmetry_times(8, num_draws=50)[..., 0]
    strata = torch.floor((plain / math.pi + 1) / 2 * 8).long()
    assert any(sorted(row.tolist()) != list(range(8)) for row in strata)


def test_symmetrised_hamiltonian_shape_errors():
    H = SymmetrisedHamiltonian(random_weights((2, 8, 1)), get_activation("elu"))
    with pytest.raises(ValueError, match=r"expected points of shape \(\.\.\., 2\)"):
        H.energy(torch.zeros(5, 3, dtype=DT))
    with pytest.raises(ValueError, match=r"expected points of shape \(N, 2\) or \(3, N, 2\)"):
        H.energy(torch.zeros(4, 5, 2, dtype=DT))


# --------------------------------------------------------------------- the Pyro model
def small_model(kind="learned", prior=None, **kw):
    base = dict(hidden=(8,), tau_samples=4, integrator_steps=2, prior=prior)
    base.update(kw)
    if kind == "vanilla":
        model = NoetherRazorModel.vanilla(2, 0.2, **base)
    elif kind == "oracle":
        model = NoetherRazorModel.oracle(sho_generator(), 0.2, **base)
    else:
        model = NoetherRazorModel.learned(
            2, 0.2, 2, init_std=0.1, generator=torch.Generator().manual_seed(0), **base
        )
    return model.to(dtype=DT)


def test_model_sites_shapes_and_plates():
    states, nxt = sho_transitions()
    model = small_model()
    trace = poutine.trace(model).get_trace(states, nxt)
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == [
        "hamiltonian_net.weight0",
        "hamiltonian_net.weight1",
        "trajectories",
        "obs",
        "time",
    ] or set(model.weight_sites) <= set(trace.nodes)
    assert trace.nodes["hamiltonian_net.weight0"]["value"].shape == (8, 3)
    assert trace.nodes["hamiltonian_net.weight1"]["value"].shape == (1, 9)
    assert trace.nodes["obs"]["fn"].batch_shape == (5, 3)
    assert {"quantities.W", "quantities.b"} <= {
        n for n, s in trace.nodes.items() if s["type"] == "param"
    }
    # subsampling: the likelihood is scaled by T / B
    trace = poutine.trace(model).get_trace(states, nxt, subsample=torch.tensor([0, 3]))
    assert trace.nodes["obs"]["value"].shape == (2, 3, 2)
    assert trace.nodes["obs"]["scale"] == pytest.approx(5 / 2)


def test_model_prediction_matches_an_explicit_euler_integration():
    states, nxt = sho_transitions(T=2)
    model = small_model("vanilla", integrator_steps=3)
    weights = [w[None] for w in (torch.randn(8, 3, dtype=DT), torch.randn(1, 9, dtype=DT))]
    H = model.hamiltonian(weights, None)
    x = states.reshape(-1, 2)[None]
    h = 0.2 / 3
    for _ in range(3):
        x = x + h * H.vector_field(x)
    torch.testing.assert_close(model.predict(weights, None, states.reshape(-1, 2)), x)


def test_gradients_reach_eta_guide_and_learned_prior():
    states, nxt = sho_transitions()
    model = small_model(prior=LearnedVariancePrior(1.0))
    guide = MatrixNormalGuide(model, init_scale=1e-2)
    loss = Trace_ELBO(
        num_particles=3, vectorize_particles=True, max_plate_nesting=2
    ).differentiable_loss(model, guide, states, nxt)
    loss.backward()
    store = pyro.get_param_store()
    names = set(store.keys())
    expected = {"quantities.W", "quantities.b", "hamiltonian_net.prior.variance"}
    assert expected <= names
    assert any(n.startswith("MatrixNormalGuide.locs.") for n in names) and any(
        n.startswith("MatrixNormalGuide.scale_tril_cols.") for n in names
    )
    for name in names:
        grad = store._params[name].grad
        assert grad is not None, name
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_learned_quadratic_part_is_w_plus_w_transpose():
    """A = W + W^T, the reference code's parameterisation (twice (W + W^T)/2)."""
    model = small_model("learned")
    W, b = model.quantities.W.detach(), model.quantities.b.detach()
    torch.testing.assert_close(
        model.generators().detach(), generator_matrix(W + W.transpose(-1, -2), b)
    )


def test_matrix_normal_guide_starts_each_layer_at_its_scale():
    from pyro_razor.guides.matrix_normal import reference_init_scales

    assert reference_init_scales([(64, 3), (64, 65), (1, 65)]) == pytest.approx(
        [1.6 / 8, 1.6 / 128, 1.6 * 32 / 65]
    )
    states, nxt = sho_transitions()
    model = NoetherRazorModel.vanilla(2, 0.2, hidden=(64, 64), integrator_steps=2).to(dtype=DT)
    for init, expected in (("reference", reference_init_scales(model.hamiltonian_net.layer_shapes)),
                           (0.03, [0.03] * 3), ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])):
        pyro.clear_param_store()
        guide = MatrixNormalGuide(model, init_scale=init)
        guide(states, nxt)
        std = [float(guide.distribution(s).variance.sqrt().mean()) for s in model.weight_sites]
        assert std == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="init_scale has 2 values but the model has 3"):
        MatrixNormalGuide(model, init_scale=[0.1, 0.2])(states, nxt)
    with pytest.raises(ValueError, match="init_scale must be a float, a list or 'reference'"):
        MatrixNormalGuide(model, init_scale="wide")


def test_oracle_has_no_learnable_eta_and_vanilla_no_transforms():
    assert small_model("oracle").transforms().shape == (1, 4, 3, 3)
    assert small_model("oracle").transforms(5, num_draws=3).shape == (3, 5, 3, 3)
    assert small_model("vanilla").transforms() is None
    states, nxt = sho_transitions()
    trace = poutine.trace(small_model("oracle")).get_trace(states, nxt)
    assert not any(
        n.startswith("quantities") for n, s in trace.nodes.items() if s["type"] == "param"
    )


@pytest.mark.parametrize("num_particles", [1, 4])
def test_model_runs_under_predictive_and_vectorised_particles(num_particles):
    states, nxt = sho_transitions()
    model = small_model()
    guide = MatrixNormalGuide(model)
    guide(states, nxt)
    draws = Predictive(
        model, guide=guide, num_samples=num_particles, parallel=True, return_sites=["obs"]
    )(states)
    assert draws["obs"].shape == (num_particles, 5, 3, 2)
    assert torch.isfinite(draws["obs"]).all()


def test_trace_and_meanfield_elbo_agree_in_expectation():
    """Trace_ELBO and TraceMeanField_ELBO estimate the same ELBO: the mean difference over
    many draws is within 4 standard errors of 0."""
    torch.manual_seed(0)
    states, nxt = sho_transitions(T=3)
    model = small_model("vanilla", hidden=(4,))
    guide = MatrixNormalGuide(model, init_scale=0.05)
    guide(states, nxt)
    kw = dict(num_particles=200, vectorize_particles=True, max_plate_nesting=2)
    a = torch.tensor([Trace_ELBO(**kw).loss(model, guide, states, nxt) for _ in range(20)])
    b = torch.tensor([TraceMeanField_ELBO(**kw).loss(model, guide, states, nxt) for _ in range(20)])
    se = ((a.var() + b.var()) / 20).sqrt()
    assert abs(a.mean() - b.mean()) < 4 * se + 1e-9


def _linear_model_and_exact_evidence(prior_variance=0.5, sigma2=1e-2):
    """A linear-in-theta model (no hidden layer): F(x) = w.x + b, so every Euler step adds
    dt J w and the evidence is Gaussian in closed form."""
    states, nxt = sho_transitions(T=4, points=5)
    model = NoetherRazorModel.vanilla(
        2,
        0.2,
        hidden=(),
        prior=FixedVariancePrior(prior_variance),
        noise=FixedNoise(sigma2),
        integrator_steps=3,
    ).to(dtype=DT)
    r = (nxt - states).reshape(-1, 2)  # (N, M): r = dt * J w + noise, coordinate-wise independent
    N = r.shape[0]
    cov = sigma2 * torch.eye(N, dtype=DT) + 0.2**2 * prior_variance * torch.ones(N, N, dtype=DT)
    log_z = sum(
        dist.MultivariateNormal(torch.zeros(N, dtype=DT), cov).log_prob(r[:, m]) for m in range(2)
    )
    # exact posterior of u = J w: N(mu, s2 I) per coordinate; w = -J u
    s2 = 1.0 / (1.0 / prior_variance + N * 0.2**2 / sigma2)
    mu = s2 * 0.2 / sigma2 * r.sum(0)
    J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=DT)
    w_mean = -J @ mu
    return model, states, nxt, float(log_z), w_mean, s2


def test_elbo_equals_exact_evidence_at_the_exact_posterior_and_bounds_it_otherwise():
    model, states, nxt, log_z, w_mean, s2 = _linear_model_and_exact_evidence()
    guide = MatrixNormalGuide(model, init_scale=1.0)
    guide(states, nxt)
    store = pyro.get_param_store()
    site = model.weight_sites[0]
    prior_sd = 0.5**0.5
    with torch.no_grad():
        store[f"MatrixNormalGuide.locs.{site}"] = torch.cat([w_mean, torch.zeros(1, dtype=DT)])[
            None
        ]
        store[f"MatrixNormalGuide.scale_tril_rows.{site}"] = torch.ones(1, 1, dtype=DT)
        store[f"MatrixNormalGuide.scale_tril_cols.{site}"] = torch.diag(
            torch.tensor([s2**0.5, s2**0.5, prior_sd], dtype=DT)
        )
    elbo = Trace_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=2)
    # at the exact posterior every particle's log-weight equals log Z: no Monte-Carlo error
    assert -elbo.loss(model, guide, states, nxt) == pytest.approx(log_z, abs=1e-8)
    with torch.no_grad():  # a worse posterior gives a strictly lower bound
        store[f"MatrixNormalGuide.scale_tril_cols.{site}"] = torch.diag(
            torch.tensor([3 * s2**0.5, s2**0.5, prior_sd], dtype=DT)
        )
    worse = torch.tensor([-elbo.loss(model, guide, states, nxt) for _ in range(20)])
    assert worse.mean() + 4 * worse.std() / 20**0.5 < log_z


def test_guide_training_approaches_the_exact_evidence():
    from pyro_razor.inference import TrainConfig, evaluate, kl_divergence_estimate, train

    model, states, nxt, log_z, _, _ = _linear_model_and_exact_evidence()
    guide = MatrixNormalGuide(model, init_scale=0.1)
    train(
        model, guide, states, nxt, TrainConfig(epochs=600, num_particles=8, lr=3e-2), progress=False
    )
    N = states.shape[0] * states.shape[1]
    elbo = -(
        evaluate(model, guide, states, nxt, num_samples=400)["nll_per_n"] * N
        + kl_divergence_estimate(model, guide, states)
    )
    print("ELBO", elbo, "log Z", log_z)
    assert elbo <= log_z + 0.5  # a bound (0.5 nats of Monte-Carlo slack)
    assert elbo >= log_z - 1.0  # and a tight one after training


# --------------------------------------------------------------------- priors and noise
def test_prior_distributions_and_closed_form_update():
    prior = ClosedFormVariancePrior(2.0)
    prior.setup([(3, 5), (1, 4)])
    d = prior.distribution(0, (3, 5), torch.zeros((), dtype=DT))
    assert d.event_shape == (3, 5) and float(d.base_dist.scale.max()) == pytest.approx(2.0**0.5)
    prior.update([torch.tensor(30.0), torch.tensor(2.0)])  # eq. 17: v = E|theta|^2 / D
    torch.testing.assert_close(prior.variances(), torch.tensor([2.0, 0.5], dtype=DT))
    damped = ClosedFormVariancePrior(1.0, damping=0.5)  # damped in precision, as the reference
    damped.setup([(1, 2)])
    damped.update([torch.tensor(6.0)])
    assert float(damped.variances()[0]) == pytest.approx(1 / (0.5 * 1 + 0.5 / 3))
    warm = ClosedFormVariancePrior(1.0, warmup_steps=2)
    warm.setup([(1, 2)])
    for _ in range(2):  # the first two updates only count
        warm.update([torch.tensor(6.0)])
        assert float(warm.variances()[0]) == 1.0
    warm.update([torch.tensor(6.0)])
    assert float(warm.variances()[0]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="expected 2 second moments"):
        prior.update([torch.tensor(1.0)])
    with pytest.raises(ValueError, match="prior variance must be positive"):
        FixedVariancePrior(-1.0)


def test_closed_form_prior_with_matrix_normal_guide_matches_eq17():
    from pyro_razor.distributions import kl_minimising_variance
    from pyro_razor.inference import posterior_second_moments

    states, nxt = sho_transitions()
    model = small_model("vanilla", prior=ClosedFormVariancePrior(1.0))
    guide = MatrixNormalGuide(model, init_scale=0.3)
    guide(states, nxt)
    model.hamiltonian_net.prior.update(posterior_second_moments(guide, model.weight_sites))
    expected = torch.stack(
        [kl_minimising_variance(guide.distribution(s)) for s in model.weight_sites]
    )
    torch.testing.assert_close(model.hamiltonian_net.prior.variances(), expected)


def test_empirical_noise_update():
    noise = EmpiricalNoise(1.0, momentum=0.75)
    noise.update(torch.tensor(0.2))
    assert float(noise.variance) == pytest.approx(0.75 + 0.25 * 0.2)


# --------------------------------------------------------------------- bad input
def test_model_rejects_bad_data_and_settings():
    model = small_model()
    with pytest.raises(
        ValueError, match=r"states must have shape \(trajectories, transitions, 2\)"
    ):
        model(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="next_states must have the shape of states"):
        model(torch.zeros(5, 3, 2), torch.zeros(5, 2, 2))
    with pytest.raises(ValueError, match="phase dimension must be a positive even number"):
        NoetherRazorModel.vanilla(3, 0.1)
    with pytest.raises(ValueError, match="dt must be positive"):
        NoetherRazorModel.vanilla(2, 0.0)
    with pytest.raises(ValueError, match="conserved quantities act on a 2-dim phase space"):
        NoetherRazorModel(4, 0.1, quantities=small_model("oracle").quantities)


def test_checkpointed_integration_gives_the_same_loss_and_gradients():
    """Recomputing sub-steps in the backward pass changes memory, not numbers."""
    states, nxt = sho_transitions()
    results = []
    for flag in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(3)
        model = small_model(integrator_steps=4, checkpoint_steps=flag)
        guide = MatrixNormalGuide(model, init_scale=1e-2)
        guide(states, nxt)
        pyro.set_rng_seed(4)
        loss = Trace_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=2)
        value = loss.differentiable_loss(model, guide, states, nxt)
        value.backward()
        store = pyro.get_param_store()
        results.append((value.detach(), {k: store._params[k].grad.clone() for k in store.keys()}))
    (a, ga), (b, gb) = results
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=1e-10, atol=1e-12)
