"""What a trained variant contributes to a run: the tables' metrics, long-horizon rollouts and
the symmetry analysis, and the artefacts the figures are drawn from.

- :func:`evaluate_variant`: train/test NLL, MSE and KL per transition (the paper's tables);
- :func:`analyse_variant`: long-horizon rollouts (``longterm.json``) and, for learned
  symmetries, the generator analysis (``symmetry.json``, ``generators.pt``);
- :func:`variant_line`: the one line ``run`` prints per finished variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import torch

from pyro_razor import inference
from pyro_razor.analysis import (
    SymmetryAnalysis,
    analyse_generators,
    long_horizon_rollout,
    longterm_record,
)
from pyro_razor.inference.diagnostics import capped_scale_layers, capped_scale_message
from pyro_razor.models import SymmetrisedHamiltonian
from pyro_razor.runs.config import ExperimentConfig
from pyro_razor.runs.data import RunData
from pyro_razor.runs.rundir import RunDir
from pyro_razor.systems import HamiltonianSystem

__all__ = [
    "VariantArtefacts",
    "analyse_variant",
    "evaluate_variant",
    "symmetry_analysis",
    "variant_line",
]


@dataclass
class VariantArtefacts:
    """What one variant contributes to the figures of a run."""

    history: list[dict]
    hamiltonian: SymmetrisedHamiltonian | None = None
    longterm: dict | None = None
    generators: torch.Tensor | None = None
    analysis: SymmetryAnalysis | None = None


def evaluate_variant(config: ExperimentConfig, model, guide, data: RunData, history) -> dict:
    """Train/test metrics of the paper's tables (per transition), their Monte-Carlo standard
    errors over the weight draws (``"standard_errors"``: metric name to error), and timing."""
    ev = config.evaluation
    N = data.n_transitions
    pyro.set_rng_seed(config.train.seed)
    stratified = ev.tau_sampling == "stratified"
    train = inference.evaluate(model, guide, data.states, data.next_states, ev.num_samples,
                               ev.tau_samples, chunk_size=ev.chunk_size, stratified=stratified)
    kl = inference.kl_divergence_estimate(model, guide, data.states) / N
    metrics = {
        "train_mse": train["mse"],
        "nll_per_n": train["nll_per_n"],
        "kl_per_n": kl,
        "neg_elbo_per_n": train["nll_per_n"] + kl,
    }
    # Monte-Carlo standard errors over the weight draws, by metric (the KL is exact)
    errors = {"train_mse": train["mse_se"], "nll_per_n": train["nll_per_n_se"],
              "neg_elbo_per_n": train["nll_per_n_se"]}
    for name, (s, n) in data.tests.items():
        test = inference.evaluate(model, guide, s, n, ev.num_samples, ev.tau_samples,
                                  chunk_size=ev.chunk_size, stratified=stratified)
        suffix = f"_{name}" if name else ""
        metrics[f"test_mse{suffix}"] = test["mse"]
        metrics[f"test_nll_per_n{suffix}"] = test["nll_per_n"]
        errors[f"test_mse{suffix}"] = test["mse_se"]
        errors[f"test_nll_per_n{suffix}"] = test["nll_per_n_se"]
    metrics["standard_errors"] = errors
    steps = len(history) * config.train.steps_per_epoch(data.states.shape[0])
    wall = float(sum(record.get("seconds", 0.0) for record in history))
    metrics.update(
        {
            "wall_time_s": wall,
            "seconds_per_step": wall / steps if steps else float("nan"),
            "epochs": len(history),
            "steps": steps,
            "num_quantities": model.num_quantities,
            "final_train_neg_elbo_per_n": history[-1]["neg_elbo_per_n"] if history else None,
            "prior_variances": model.hamiltonian_net.prior.variances().detach().cpu().tolist(),
            "noise_variance": float(model.noise.variance),
            "scale_warning": capped_scale_message(
                capped_scale_layers(history, config.train.steps_per_epoch(data.states.shape[0]))
            ),
        }
    )
    return metrics


def analyse_variant(
    config: ExperimentConfig, variant: str, system: HamiltonianSystem, model, guide,
    data: RunData, run: RunDir, artefacts: VariantArtefacts,
) -> dict:
    """Long-horizon rollouts and (learned) symmetry analysis; writes their files, fills
    ``artefacts`` and returns the summary fields they contribute."""
    ev = config.evaluation
    pyro.set_rng_seed(config.train.seed + 1)
    H = inference.posterior_hamiltonian(model, guide, data.states, ev.tau_samples, ev.num_samples,
                                        stratified=ev.tau_sampling == "stratified")
    artefacts.hamiltonian = H
    R = min(ev.rollout_trajectories, data.test.shape[0])
    steps = ev.rollout_steps or config.model.integrator_steps
    if system is not None:
        result = long_horizon_rollout(model, H, system, data.test[:R, 0], ev.rollout_points,
                                      data.dt, scaling=data.scaling, steps_per_point=steps)
    else:  # no exact solution: compare with the observed test trajectories, as far as they go
        n = min(ev.rollout_points, data.test.shape[1])
        result = long_horizon_rollout(model, H, None, data.test[:R, 0], n, data.dt,
                                      truth=data.test[:R, :n], scaling=data.scaling,
                                      steps_per_point=steps)
    artefacts.longterm = result
    longterm = longterm_record(
        result, variant, dt=data.dt, train_points=data.train.shape[1],
        test_points=data.test.shape[1], integrator_steps=steps,
        tau_samples=ev.tau_samples if model.num_quantities else None,
    )
    run.write_json(variant, "longterm.json", longterm)
    fields = {
        "rollout_mse_final": longterm["mse_final"],
        "rollout_mse_mean": longterm["mse_mean"],
        "rollout_mse_at_train_horizon": longterm["mse_at_train_horizon"],
        "energy_drift_final": longterm["drift_final"].get("H"),
    }
    if variant == "learned" and model.quantity_family == "polynomial":
        fields["polynomial_quantities"] = polynomial_record(model, data.names)
        run.write_json(variant, "quantities.json", fields["polynomial_quantities"])
    elif variant == "learned":
        G = model.generators().detach()
        artefacts.generators = G.cpu()
        run.write_generators(variant, G)
        analysis = symmetry_analysis(config, system, G, data, model.measure)
        artefacts.analysis = analysis
        run.write_json(variant, "symmetry.json", analysis.to_json())
        L = analysis.true_dim
        fields.update(
            {
                "n_significant": analysis.n_significant,
                "true_dim": L,
                "recovered": analysis.recovered,
                "parallelness": analysis.parallelness[: max(L, analysis.n_significant)],
                "chance_parallelness": analysis.chance_parallelness,
            }
        )
    return fields


def polynomial_record(model, names) -> dict:
    """The learned polynomial quantities (non-linear flows, no generator matrices to analyse):
    ``eta (K, F)`` in the model's units over the named monomials, each also scaled so that its
    largest coefficient is 1."""
    from pyro_razor.models.polynomial_quantities import monomial_names

    eta = model.quantities.eta.detach().cpu().double()
    largest = eta.abs().max(dim=1, keepdim=True).values.clamp_min(1e-300)
    return {"units": "the model's (standardised when the data are)",
            "monomials": monomial_names(list(names), model.quantities.degree),
            "eta": eta.tolist(), "eta_relative": (eta / largest).tolist()}


def symmetry_analysis(
    config: ExperimentConfig, system: HamiltonianSystem | None, G: torch.Tensor,
    data: RunData, measure,
) -> SymmetryAnalysis:
    """:func:`~pyro_razor.analysis.analyse_generators` of learned generators ``(K, M+1, M+1)``
    against the system's ground truth (if any), with the config's thresholds, the training
    trajectories and the model's measure (flow displacements, conservation), all in the
    model's units (the ground truth is mapped into them)."""
    ev = config.evaluation
    known = system is not None and bool(system.conserved_quantities)
    true = data.scaling.generators_to_scaled(system.generators(dtype=torch.float64)) if known \
        else None
    names = [c.name for c in system.conserved_quantities] if known else None
    return analyse_generators(
        G.detach().cpu().double(), true, names, threshold=ev.threshold,
        min_norm=ev.min_norm, parallel_level=ev.parallel_level,
        trajectories=data.train.detach().cpu().double(), measure=measure,
        min_displacement=ev.min_displacement,
    )


def _se(metrics: dict, key: str) -> str:
    """`` ± se`` of a metric when its Monte-Carlo standard error is known and finite."""
    se = metrics.get("standard_errors", {}).get(key)
    return f" ± {se:.2g}" if isinstance(se, float) and math.isfinite(se) else ""


def variant_line(variant: str, metrics: dict) -> str:
    """One line per finished variant: its -ELBO/N and test MSE (± their Monte-Carlo standard
    errors over the weight draws) and training time."""
    parts = [f"-ELBO/N {metrics['neg_elbo_per_n']:.3f}{_se(metrics, 'neg_elbo_per_n')}"] \
        if "neg_elbo_per_n" in metrics else []
    if "test_mse" in metrics:
        parts.append(f"test MSE {metrics['test_mse']:.3g}{_se(metrics, 'test_mse')}")
    if "wall_time_s" in metrics:
        parts.append(f"training {metrics['wall_time_s']:.0f} s "
                     f"({metrics['seconds_per_step']:.3g} s/step)")
    return f"{variant}: " + ", ".join(parts)
