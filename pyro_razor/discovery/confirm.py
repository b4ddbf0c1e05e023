r"""Does the evidence support symmetrising over each quantity? A nested ELBO comparison.

The razor's answer for the whole set is the ELBO of the learned model against vanilla. For one
quantity ``k`` of ``K`` (generators ``G_1..G_K``, e.g. the learned ones, which
:mod:`~pyro_razor.discovery.candidates` starts at the direct estimate's candidates) the nested
question is whether the model that symmetrises over all ``K`` beats the one that symmetrises over
all but ``k``. Both are fitted the same way, from the same trained posterior over the weights:

1. fix the generators (``eta`` no longer moves), and continue SVI on the weights for
   ``refit_epochs`` epochs (the settings of ``train_config`` otherwise, same seed): the full
   model;
2. for every ``k``: restore the trained posterior, set ``G_k = 0`` (the others keep their
   distribution of symmetry times: zeroing a row leaves the measure on the rest unchanged,
   unlike dropping it), refit the same way: the model without ``k``. A group of quantities
   can be switched off together instead (``indices`` item ``(k1, k2, ...)``): the question
   for a subspace whose basis the data do not fix, e.g. the direct estimate's undecided
   candidates;
3. evaluate each with the same random numbers (``num_samples`` weight draws, ``tau_samples``
   symmetry samples) and report, in nats over the ``N`` training transitions,

.. math:: \Delta_k = N\,\big(-\mathrm{ELBO}_{-k}/N\big) - N\,\big(-\mathrm{ELBO}/N\big),

positive when symmetrising over ``k`` pays. The full model is refitted a second time under
another seed; ``noise_nats`` = the absolute difference of the two, the run-to-run error of one
refit and evaluation. Decision, the same for every system: ``"supports"`` if ``Delta_k >
max(threshold, 2 noise_nats)``, ``"against"`` if ``Delta_k < -max(threshold, 2 noise_nats)``,
else ``"indifferent"``; ``threshold = 3`` nats is a Bayes factor of 20, "strong" on Kass and
Raftery's scale (an ELBO difference is a lower-bound difference, not a Bayes factor: the
scale is a convention, stated as such).

Cost: one refit of ``refit_epochs`` epochs per tested quantity or group, plus two for the
full model, and as many evaluations.

Shapes: ``B`` trajectories, ``n`` transitions, ``M`` phase dimension, ``K`` quantities.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings

import pyro
import torch

from pyro_razor import inference
from pyro_razor.analysis import parallelness
from pyro_razor.discovery.candidates import direct_start, flow_speed
from pyro_razor.models.quantities import FixedQuantities
from pyro_razor.symmetry import generator_matrix

__all__ = ["STATEMENTS", "candidate_evidence", "decision_bar", "quantity_evidence"]

THRESHOLD_NATS = 3.0


STATEMENTS = {
    ("conserved", "supports"): "conserved, and symmetrising over it pays",
    ("conserved", "indifferent"): "conserved on the data, but symmetrising over it neither pays "
    "nor costs at this data size",
    ("conserved", "against"): "conserved on the data, but symmetrising over it costs evidence "
    "(the network fits better without it at this data size)",
    ("approximate", "supports"): "not exactly conserved, yet symmetrising over it helps: an "
    "approximate symmetry",
    ("approximate", "indifferent"): "approximately conserved; the evidence neither supports nor "
    "rejects symmetrising over it",
    ("approximate", "against"): "approximately conserved, and the evidence rejects symmetrising "
    "over it",
    ("undecided", "supports"): "the data cannot tell whether the undecided candidates are "
    "conserved; the evidence supports symmetrising over their span",
    ("undecided", "indifferent"): "undecided by the data and by the evidence",
    ("undecided", "against"): "the data cannot tell whether the undecided candidates are "
    "conserved; the evidence rejects symmetrising over their span",
    ("spare", "supports"): "not among the direct candidates, yet symmetrising over it pays: "
    "check it (a law outside the tested span, or an approximate symmetry)",
    ("spare", "indifferent"): "not among the direct candidates; no evidence either way",
    ("spare", "against"): "not among the direct candidates, and the evidence rejects it",
    ("spare in span", "supports"): "a spare quantity that grew inside the candidates' span: "
    "symmetrising over it pays (more weight on the candidates' directions)",
    ("spare in span", "indifferent"): "a spare quantity inside the candidates' span; no "
    "evidence either way",
    ("spare in span", "against"): "a spare quantity inside the candidates' span, and the "
    "evidence rejects it",
}
"""What a direct-test kind and a razor decision say together (never one dropped silently)."""


def _snapshot(model, guide) -> tuple[dict, dict]:
    """Copies of the guide's and the model's state (without its quantities)."""
    model_state = {k: v.detach().clone() for k, v in model.state_dict().items()
                   if not k.startswith("quantities.")}
    return copy.deepcopy(guide.state_dict()), model_state


def _restore(model, guide, snapshot) -> None:
    guide_state, model_state = snapshot
    with torch.no_grad():
        guide.load_state_dict(guide_state)
        model.load_state_dict(model_state, strict=False)


def _neg_elbo(model, guide, states, next_states, num_samples, tau_samples, seed) -> float:
    """``-ELBO`` in nats (NLL + KL) with seeded random numbers."""
    pyro.set_rng_seed(seed)
    fit = inference.evaluate(model, guide, states, next_states, num_samples, tau_samples)
    N = states.shape[0] * states.shape[1]
    return N * fit["nll_per_n"] + inference.kl_divergence_estimate(model, guide, states)


def _fit(model, guide, states, next_states, train_config, G, snapshot, evaluation, seed):
    _restore(model, guide, snapshot)
    model.quantities = FixedQuantities(G)
    if train_config is not None:
        with warnings.catch_warnings():  # a refit is short by design: its step-budget warnings
            warnings.simplefilter("ignore", RuntimeWarning)  # say nothing about the answer
            inference.train(model, guide, states, next_states,
                            dataclasses.replace(train_config, seed=seed), progress=False)
    return _neg_elbo(model, guide, states, next_states, *evaluation)


def _item(k) -> int | list[int]:
    """An ``indices`` item: one index, or a group (list) of indices switched off together."""
    return int(k) if isinstance(k, int) or getattr(k, "ndim", None) == 0 else [int(i) for i in k]


def decision_bar(noise: float, threshold: float) -> float:
    """The least ``|Delta_k|`` in nats that decides: ``max(threshold, 2 noise)``."""
    return max(threshold, 2.0 * noise)


def _decision(delta: float, noise: float, threshold: float) -> str:
    bar = decision_bar(noise, threshold)
    return "supports" if delta > bar else ("against" if delta < -bar else "indifferent")


def quantity_evidence(
    model, guide, states: torch.Tensor, next_states: torch.Tensor, train_config,
    generators: torch.Tensor, *, indices=None, refit_epochs: int = 100, num_samples: int = 8,
    tau_samples: int = 64, threshold: float = THRESHOLD_NATS, refit_lr: float | None = None,
) -> dict:
    """The nested comparison of the module docstring for each of ``K`` generators.

    Args:
        model, guide: a trained model (any quantities) and its guide; both are left as they
            were (quantities, weights' posterior, buffers).
        states, next_states: ``(B, n, M)`` training transitions.
        train_config: the :class:`~pyro_razor.inference.TrainConfig` of the training; the
            refits use it with ``epochs = refit_epochs``, no ``eta`` warm-up, no checkpoints.
        generators: ``(K, M+1, M+1)`` in the model's units.
        indices: what to switch off, one item at a time: an index ``k``, or a sequence of
            indices switched off together (default every ``k`` alone).
        refit_epochs: epochs of each refit (0: compare with the weights as trained).
        num_samples, tau_samples: weight and symmetry samples of each evaluation.
        threshold: the least ``|Delta_k|`` in nats that decides.
        refit_lr: the refits' learning rate (default ``train_config.lr``).

    Returns:
        ``{"neg_elbo": full model's -ELBO in nats, "noise_nats", "indices",
        "delta_nats": [per index], "decisions": [per index], "refit_epochs",
        "refit_particles", "refit_lr", "threshold", "seconds"}``.
    """
    start = time.perf_counter()
    if refit_epochs < 0:
        raise ValueError(f"quantity_evidence: refit_epochs must be >= 0, got {refit_epochs}")
    G = generators.detach().to(states)
    store = pyro.get_param_store()
    kept = store.get_state()["constraints"]  # Pyro drops the quantities' params on a swap
    registered = {k: (store[k].detach().clone(), kept[k]) for k in store.keys()
                  if k.startswith("quantities.")}
    indices = list(range(G.shape[0])) if indices is None else [_item(k) for k in indices]
    flat = [k for item in indices for k in ([item] if isinstance(item, int) else item)]
    if any(not 0 <= k < G.shape[0] for k in flat) or any(item == [] for item in indices):
        raise ValueError(f"quantity_evidence: indices {indices} must be indices (or non-empty "
                         f"groups of indices) in 0..{G.shape[0] - 1}")
    snapshot, quantities = _snapshot(model, guide), model.quantities
    refit = (dataclasses.replace(train_config, epochs=refit_epochs, eta_warmup_epochs=0,
                                 checkpoint_every=0,
                                 lr=train_config.lr if refit_lr is None else refit_lr)
             if refit_epochs else None)
    seed = train_config.seed
    evaluation = (num_samples, tau_samples, seed)
    try:
        fit = lambda G_k, s=seed: _fit(model, guide, states, next_states, refit,  # noqa: E731
                                       G_k, snapshot, evaluation, s)
        full = fit(G)
        noise = abs(fit(G, seed + 1) - full) if refit_epochs else 0.0
        deltas = []
        for k in indices:
            without = G.clone()
            without[k] = 0.0
            deltas.append(fit(without) - full)
    finally:
        _restore(model, guide, snapshot)
        model.quantities = quantities
        for name, (value, constraint) in registered.items():
            store.setdefault(name, value, constraint)
    return {"neg_elbo": full, "noise_nats": noise, "indices": indices, "delta_nats": deltas,
            "decisions": [_decision(d, noise, threshold) for d in deltas],
            "refit_epochs": refit_epochs, "refit_particles": train_config.num_particles,
            "refit_lr": train_config.lr if refit is None else refit.lr, "threshold": threshold,
            "seconds": time.perf_counter() - start}


def _tested_groups(kind: list[str], speed: torch.Tensor, candidates: int,
                   moves: float) -> list[list[int]]:
    """What :func:`candidate_evidence` switches off, in order: each conserved or approximate
    candidate alone, the undecided candidates together, each spare moving faster than
    ``moves``."""
    undecided = [k for k in range(candidates) if kind[k] == "undecided"]
    return ([[k] for k in range(candidates) if kind[k] != "undecided"]
            + ([undecided] if undecided else [])
            + [[k] for k in range(candidates, len(kind)) if float(speed[k]) > moves])


def candidate_evidence(model, guide, states: torch.Tensor, next_states: torch.Tensor,
                       train_config, trajectories: torch.Tensor, *, refit_epochs: int = 100,
                       refit_lr: float | None = None, moves: float = 0.1,
                       in_span_level: float = 0.95) -> dict:
    """:func:`quantity_evidence` for the learned quantities of a model started at the direct
    estimate's candidates (:func:`~pyro_razor.discovery.candidates.direct_start` on
    ``trajectories``), with what each started at and how far it moved.

    Tested: each quantity started at a conserved or approximate candidate; the quantities
    started at *undecided* candidates together, as one group (the direct test could not tell
    them from non-conserved directions, so no basis of their span is preferred and only the
    span's evidence means something; training mixes them anyway); each spare quantity whose
    flow moves the training trajectories faster than ``moves`` (model units). A spare at least
    ``in_span_level`` parallel to the candidates' span is a ``"spare in span"``.

    Args:
        model, guide, states, next_states, train_config: as :func:`quantity_evidence`.
        trajectories: ``(B, n, M)`` training trajectories the candidates came from.
        refit_epochs, refit_lr: the refits' length and learning rate.

    Returns:
        ``{"neg_elbo", "noise_nats", "refit_epochs", "refit_particles", "refit_lr",
        "threshold", "seconds", "quantities": rows}`` (``{"quantities": [], "refit_epochs"}``
        when nothing is tested); a row has ``index`` (the first of a group), ``members``,
        ``start``, ``in_span`` (the least of its members'), ``members_in_span``, ``speed``
        (the largest), ``delta_nats``, ``decision`` and ``statement``.
    """
    K = model.num_quantities
    A, b, kinds = direct_start(trajectories, K)
    start, G = generator_matrix(A, b), model.generators().detach().to(torch.float64)
    speed = flow_speed(G, trajectories)
    in_span = (parallelness(G.flatten(1), start[:len(kinds)].flatten(1)) if kinds
               else torch.zeros(K, dtype=torch.float64))
    kind = [kinds[k] if k < len(kinds) else (
        "spare in span" if float(in_span[k]) >= in_span_level else "spare") for k in range(K)]
    tested = _tested_groups(kind, speed, min(K, len(kinds)), moves)
    if not tested:
        return {"quantities": [], "refit_epochs": refit_epochs}
    evidence = quantity_evidence(model, guide, states, next_states, train_config, G,
                                 indices=tested, refit_epochs=refit_epochs, refit_lr=refit_lr)
    rows = []
    for members, delta, decision in zip(tested, evidence["delta_nats"], evidence["decisions"],
                                        strict=True):
        spans = [float(in_span[k]) for k in members]
        rows.append({"index": members[0], "members": members, "start": kind[members[0]],
                     "in_span": min(spans), "members_in_span": spans,
                     "speed": max(float(speed[k]) for k in members), "delta_nats": delta,
                     "decision": decision, "statement": STATEMENTS[(kind[members[0]], decision)]})
    return {**{key: evidence[key] for key in ("neg_elbo", "noise_nats", "refit_epochs",
                                              "refit_particles", "refit_lr", "threshold",
                                              "seconds")}, "quantities": rows}
