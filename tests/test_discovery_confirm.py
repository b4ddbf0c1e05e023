"""The razor starts at the direct candidates and weighs each quantity by a nested ELBO
comparison (discovery.candidates, discovery.confirm, model.eta_init = "direct")."""

from __future__ import annotations

import pyro
import pytest
import torch

from pyro_razor import inference
from pyro_razor.analysis import parallelness
from pyro_razor.configio import replace_path
from pyro_razor.discovery.candidates import candidate_generators, direct_start, flow_speed
from pyro_razor.discovery.confirm import STATEMENTS, quantity_evidence
from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.models.quantities import LearnedQuantities
from pyro_razor.runs import load_experiment
from pyro_razor.runs.data import RunData
from pyro_razor.runs.variants import fresh_variant
from pyro_razor.symmetry import generator_matrix
from pyro_razor.systems import make_system, simulate

F64 = torch.float64


def oscillators(B=12, n=11, dt=0.3):
    system = make_system("oscillators", n=2)
    x0 = torch.randn(B, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    return system, simulate(system, x0, n, dt)


def test_candidates_span_the_true_generators_at_unit_flow_speed():
    system, x = oscillators()
    estimate = direct_estimate(x)
    G = candidate_generators(estimate, x)
    true = system.generators(dtype=F64).flatten(1)
    assert G.shape == (4, 5, 5)  # u(2): four quadratic laws
    assert parallelness(G.flatten(1), true).min() > 1 - 1e-6
    assert torch.allclose(flow_speed(G, x), torch.ones(4, dtype=F64), atol=1e-10)


def test_direct_start_fills_the_candidates_then_zeros():
    _, x = oscillators()
    A, b, kinds = direct_start(x, 6)
    assert kinds == ["conserved"] * 4
    assert A.shape == (6, 4, 4) and b.shape == (6, 4)
    assert torch.count_nonzero(A[4:]) == 0 and torch.count_nonzero(b[4:]) == 0
    assert torch.allclose(A, A.transpose(-1, -2))
    A2, _, _ = direct_start(x, 2)  # fewer slots than candidates: the first two
    assert torch.equal(A2, A[:2])


def test_learned_quantities_start_where_told_and_refuse_bad_starts():
    A = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    b = torch.tensor([[0.5, 0.0]])
    q = LearnedQuantities(2, 1, init=(A, b))
    assert torch.allclose(q.generators(), generator_matrix(A, b))
    with pytest.raises(ValueError, match="shapes"):
        LearnedQuantities(2, 2, init=(A, b))
    with pytest.raises(ValueError, match="symmetric"):
        LearnedQuantities(2, 1, init=(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), b))


@pytest.fixture(scope="module")
def trained_sho():
    """The quick SHO config at a tenth of its size, started at the direct candidate."""
    config = load_experiment("experiments/table1_sho_quick.toml")
    for key, value in [("model.eta_init", "direct"), ("train.epochs", 300),
                       ("model.hidden", (32, 32)), ("data.n_train", 20)]:
        config = replace_path(config, key, value)
    data = RunData.load(config.data, "cpu", config.torch_dtype)
    model, guide = fresh_variant(config, "learned", data.system, "cpu", data.states,
                                 data.next_states)
    start = model.generators().detach().clone()
    inference.train(model, guide, data.states, data.next_states, config.train, progress=False)
    return config, data, model, guide, start


def test_the_sho_model_starts_at_its_energy(trained_sho):
    config, data, model, guide, start = trained_sho
    rotation = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert parallelness(start.flatten(1), rotation.flatten()[None]).item() > 0.999


def test_switching_off_the_energy_costs_and_a_squeeze_is_rejected(trained_sho):
    config, data, model, guide, _ = trained_sho
    squeeze = generator_matrix(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.zeros(1, 2))
    G = torch.cat([model.generators().detach(), squeeze])
    before = {k: v.clone() for k, v in pyro.get_param_store().items()}
    learned = model.generators().detach().clone()
    evidence = quantity_evidence(model, guide, data.states, data.next_states, config.train, G,
                                 refit_epochs=20)
    assert evidence["decisions"] == ["supports", "against"]
    # the energy's symmetrisation is worth more than a Bayes factor of 20 (3 nats), measured
    assert evidence["delta_nats"][0] > 3 and evidence["delta_nats"][1] < -3
    after = dict(pyro.get_param_store().items())
    assert all(torch.equal(before[k], after[k]) for k in before)  # posterior restored
    assert torch.equal(model.generators().detach(), learned)  # quantities restored


def test_a_group_switched_off_together_is_the_sum_of_its_steps(trained_sho):
    """Without refits every -ELBO is one seeded evaluation, so switching the energy and a
    squeeze off together must cost what switching off the squeeze, then the energy, costs."""
    config, data, model, guide, _ = trained_sho
    squeeze = generator_matrix(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), torch.zeros(1, 2))
    G = torch.cat([model.generators().detach(), 0.1 * squeeze])
    args = (model, guide, data.states, data.next_states, config.train)
    both = quantity_evidence(*args, G, indices=[[0, 1]], refit_epochs=0)
    squeeze_first = quantity_evidence(*args, G, indices=[1], refit_epochs=0)
    without_squeeze = G.clone()
    without_squeeze[1] = 0.0
    then_energy = quantity_evidence(*args, without_squeeze, indices=[0], refit_epochs=0)
    assert both["indices"] == [[0, 1]]
    steps = squeeze_first["delta_nats"][0] + then_energy["delta_nats"][0]
    assert both["delta_nats"][0] == pytest.approx(steps, rel=1e-5, abs=1e-3)
    for bad in ([[]], [[0, 2]], [3]):
        with pytest.raises(ValueError, match="non-empty groups of indices"):
            quantity_evidence(*args, G, indices=bad, refit_epochs=0)


def test_candidate_evidence_tests_the_started_candidate_and_reports_its_row(trained_sho):
    """The SHO model started at its one direct candidate (the energy): one row, the energy,
    conserved, still in the candidates' span, with quantity_evidence's own change."""
    from pyro_razor.discovery.confirm import candidate_evidence

    config, data, model, guide, _ = trained_sho
    record = candidate_evidence(model, guide, data.states, data.next_states, config.train,
                                data.train, refit_epochs=0)
    (row,) = record["quantities"]
    assert row["members"] == [0] and row["start"] == "conserved"
    assert row["in_span"] > 0.9 and row["members_in_span"] == [row["in_span"]]
    direct = quantity_evidence(model, guide, data.states, data.next_states, config.train,
                               model.generators().detach(), refit_epochs=0)
    assert row["delta_nats"] == pytest.approx(direct["delta_nats"][0], rel=1e-5, abs=1e-3)


def test_undecided_candidates_are_one_group_and_slow_spares_are_left_out():
    from pyro_razor.discovery.confirm import _tested_groups

    kind = ["conserved", "approximate", "undecided", "undecided", "undecided", "spare",
            "spare in span"]
    speed = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.05, 0.5])
    assert _tested_groups(kind, speed, candidates=5, moves=0.1) == [[0], [1], [2, 3, 4], [6]]
    assert _tested_groups(kind[:2], speed[:2], candidates=2, moves=0.1) == [[0], [1]]


def test_every_kind_and_decision_has_a_statement():
    for kind in ("conserved", "approximate", "undecided", "spare", "spare in span"):
        for decision in ("supports", "indifferent", "against"):
            assert STATEMENTS[(kind, decision)]


def test_a_candidate_that_moves_nothing_starts_at_zero_not_at_infinity():
    """Two masses on a spring, zero total momentum in every run: the direct estimate's
    undecided candidates include a combination whose flow does not move the noise-free data
    (speed ~1e-16); scaling it to unit speed overflowed the flows to NaN (a razor_grid run
    crashed on it). It now starts at zero, the others at unit speed."""
    from experiment_scripts import load_experiment

    bench = load_experiment("direct_benchmark.py")
    x, _ = bench.data("spring_zero", noise=0.0)
    from pyro_razor.systems.units import fit_scaling

    z = fit_scaling(x.reshape(-1, 4)).to_scaled(x)
    A, b, kinds = direct_start(z, 10)
    assert torch.isfinite(A).all() and torch.isfinite(b).all()
    speed = flow_speed(generator_matrix(A, b), z)
    moving = speed > 1e-6
    assert torch.allclose(speed[moving], torch.ones_like(speed[moving]), atol=1e-10)
    assert 1 <= int((~moving[:len(kinds)]).sum()) < len(kinds)  # some candidate moves nothing
    assert float(A[~moving].abs().max()) == 0.0 and float(b[~moving].abs().max()) == 0.0


def test_a_candidate_that_moves_the_data_by_the_noise_alone_is_not_blown_up():
    """The same system at 1 % noise: that combination now moves the data by the noise only
    (speed 0.01 of its size), and unit speed made it 100x too large (the learned variant's
    predictions blew up in its first epoch). Such a candidate is scaled to generator norm
    sqrt(M); the others keep unit speed; no generator exceeds that norm by more than the
    unit-speed ones do."""
    from experiment_scripts import load_experiment

    from pyro_razor.systems.units import fit_scaling

    bench = load_experiment("direct_benchmark.py")
    x, _ = bench.data("spring_zero", noise=0.01)
    z = fit_scaling(x.reshape(-1, 4)).to_scaled(x)
    A, b, kinds = direct_start(z, 10)
    G = generator_matrix(A, b)[:len(kinds)]
    speed, norm = flow_speed(G, z), G.flatten(1).norm(dim=1)
    capped = norm > 0
    capped &= (speed - 1.0).abs() > 1e-9
    assert int(capped.sum()) >= 1
    assert torch.allclose(norm[capped], torch.full_like(norm[capped], 2.0), atol=1e-10)
    assert (speed[capped] < 1.0).all()
    assert torch.allclose(speed[~capped & (norm > 0)], torch.ones_like(speed[~capped & (norm > 0)]),
                          atol=1e-10)
