"""The library on the ``--device`` of the test run (CPU by default; a GPU with
``python -m pytest -m device --device cuda``, as ``experiments/gpu_check.py`` does)."""

from __future__ import annotations

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from pyro_razor.distributions import MatrixNormal
from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.inference import (
    TrainConfig,
    evaluate,
    posterior_predictive,
    predictive_rollout,
    train,
)
from pyro_razor.models import NoetherRazorModel, get_activation, mlp_value_and_input_gradient
from pyro_razor.models.fast_gradient import mlp_input_gradient
from pyro_razor.symmetry import SymmetryMeasure
from pyro_razor.systems import make_system, simulate, transitions

pytestmark = pytest.mark.device


@pytest.fixture(autouse=True)
def _fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def sho_data(device, B=4, n=5):
    system = make_system("sho")
    x0 = torch.randn(B, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    states, nxt = transitions(simulate(system, x0, n, 0.2))
    return states.float().to(device), nxt.float().to(device)


def model_on(device, kind="learned"):
    common = dict(hidden=(16, 16), tau_samples=4, integrator_steps=2,
                  measure=SymmetryMeasure("cube", math.pi))
    if kind == "vanilla":
        model = NoetherRazorModel.vanilla(2, 0.2, **common)
    elif kind == "oracle":
        model = NoetherRazorModel.oracle(make_system("sho").generators(), 0.2, **common)
    else:
        model = NoetherRazorModel.learned(2, 0.2, 1, init_std=0.1,
                                          generator=torch.Generator().manual_seed(0), **common)
    return model.to(device=device, dtype=torch.float32)


@pytest.mark.parametrize("kind", ["vanilla", "learned", "oracle"])
def test_an_svi_step_runs_on_the_device(device, kind):
    states, nxt = sho_data(device)
    model = model_on(device, kind)
    guide = MatrixNormalGuide(model, init_scale=0.02)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}),
              TraceMeanField_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=2))
    losses = [svi.step(states, nxt) for _ in range(3)]
    assert all(math.isfinite(x) for x in losses)
    assert all(p.device.type == device.type for p in pyro.get_param_store().values())


def test_the_fast_input_gradient_matches_autograd_on_the_device(device):
    """float32 on the device: the hand-written backward agrees with autograd to 1e-4 relative."""
    g = torch.Generator().manual_seed(0)
    widths = (4, 32, 32, 1)
    weights = [(0.3 * torch.randn(3, widths[i + 1], widths[i] + 1, generator=g)).to(device)
               .requires_grad_() for i in range(len(widths) - 1)]
    z = torch.randn(3, 50, 4, generator=g).to(device).requires_grad_()
    u = torch.randn(3, 50, 4, generator=g).to(device)
    act = get_activation("elu", 2.0)
    plain = torch.autograd.grad((mlp_value_and_input_gradient(weights, z, act)[1] * u).sum(),
                                [z, *weights])
    fast = torch.autograd.grad((mlp_input_gradient(weights, z, act) * u).sum(), [z, *weights],
                               allow_unused=True)
    for a, b in zip(plain, fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_training_evaluation_and_predictive_draws_on_the_device(device, tmp_path):
    states, nxt = sho_data(device)
    model = model_on(device)
    guide = MatrixNormalGuide(model, init_scale=0.02)
    result = train(model, guide, states, nxt, TrainConfig(epochs=4, num_particles=2, lr=1e-2),
                   checkpoint=tmp_path / "c.pt", progress=False)
    assert math.isfinite(result.history[-1]["neg_elbo_per_n"])
    metrics = evaluate(model, guide, states, nxt, num_samples=2, tau_samples=8)
    assert all(math.isfinite(v) for v in metrics.values())
    draws = posterior_predictive(model, guide, states, nxt, num_samples=3, seed=0)
    assert draws["obs"].shape == (3, *states.shape)
    rollouts = predictive_rollout(model, guide, states[:2, 0], 4, num_samples=3)
    assert rollouts.shape == (3, 2, 5, 2)


def test_matrix_normal_on_the_device(device):
    loc = torch.zeros(3, 2, device=device)
    d = MatrixNormal(loc, 0.5 * torch.eye(3, device=device), 2.0 * torch.eye(2, device=device))
    x = d.rsample((4,))
    assert x.device.type == device.type
    torch.testing.assert_close(d.log_prob(x), torch.distributions.Normal(0.0, 1.0).log_prob(x)
                               .sum((-2, -1)).to(x), rtol=1e-5, atol=1e-4)

