r"""``pyro-razor discover DATA``: which quadratic quantities do these trajectories conserve?

One command from a user's data to an answer: settings chosen from the data, a vanilla HNN and
a learned-symmetry HNN trained on it (:func:`~pyro_razor.runs.run_experiment`), and the
evidence-based verdict of :func:`~pyro_razor.discovery.report.discover_quantities`, written as
``discovery.json``, ``discovery.txt`` and ``figures/discovery.png`` beside the usual run files.

Settings chosen from the data (stated in the output and in ``discovery.json``):

- the learned quantities start at the direct estimate's candidates on the training data
  (``model.eta_init = "direct"``: conserved, approximately conserved and undecided ones, each
  at unit flow speed; :mod:`~pyro_razor.discovery.candidates`) plus two spare ones at zero:
  ``K = min(L + 2, M (M + 3) / 2)`` for ``L`` candidates (a chosen ``quantities`` above
  ``M (M + 3) / 2`` is refused before any work);
- an MLP of two hidden layers of 64 ELU units, ``S =`` :data:`TAU_SAMPLES` ``= 4`` symmetry
  samples per training step, uniform in the unit ball times pi (8 before the eighth session:
  half the step's work; experiments/RESULTS.md "Discover in under a minute" re-measures the
  answers; the evaluation still averages over 256), ``P = 4`` weight samples, the
  matrix-normal guide at ``guide.init_scale = 0.02`` (uniform; the scales reach their
  converged size within the run on most data, else the answer carries the step-budget
  warning), a fixed ``N(0, 1)`` prior and the output noise estimated from the residuals
  (appendix D.2);
- the classical Runge-Kutta step (RK4) with enough sub-steps per ``dt`` that one moves the
  standardised state by at most :data:`SUB_STEP_MOVE` = 1.2 (90th percentile of the observed
  increments), between 1 and 8. At the standardised radius ~2 of ``M = 4`` data that is a
  rotation by at most ~0.6 rad per sub-step, whose RK4 error is ``0.6^5 / 120 ~ 6e-4`` of the
  state: over 10 times below that of the paper's 20 Euler sub-steps at the same ``dt`` (a
  rotation by ``theta`` per ``dt`` grows by ``theta^2 / 40``, 8e-3 at 0.58 rad), with 4
  network gradients per sub-step (4 or 8 per ``dt`` on the systems measured) instead of 20;
- full-batch steps for up to 4,000 transitions (else minibatches of trajectories of about that
  size), 400 steps in all (1,500 before issue 26; the counts and algebras on the systems of
  experiments/RESULTS.md were re-measured unchanged);
- after training, each conserved or approximate candidate, the undecided candidates as one
  group (the direct test cannot tell them apart, so only their span has a meaning), and each
  spare quantity whose flow moves the data by more than 0.1 standard deviations are put to
  the nested ELBO comparison of
  :mod:`~pyro_razor.discovery.confirm` (switched off, weights refitted for
  ``confirm_epochs`` epochs at training's ``P = 4`` and the learning rate
  :data:`REFIT_LR` ``= 3e-3``): the razor's evidence for that quantity, in nats, beside the
  direct test's verdict. A refit restarts Adam, whose first steps move every weight by about
  the learning rate whatever its gradient; at training's 1e-2 that kick dominated the
  comparison's noise (beating pair, 4 refit seeds: the full model's -ELBO scattered by std 32
  nats, a law's paired change by 17), at 3e-3 by 8 and 10, with the same size of change
  (experiments/RESULTS.md; 2 weight samples per refit step instead of 4 doubled the scatter);
- the answer (:mod:`~pyro_razor.discovery.answer`): the direct test's count, with how many of
  those laws the razor's nested ELBO comparison supports (quantities started at a conserved
  candidate that stayed in the candidates' span) and, where it supports fewer, that
  disagreement stated;
- standardised units (:mod:`pyro_razor.systems.units`), reported back in the user's.

Shapes: ``B`` trajectories, ``n`` points, ``M`` phase dimension, ``K`` learnable quantities.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch

from pyro_razor.analysis import learnable_dimension
from pyro_razor.atomic import write_json, write_text
from pyro_razor.discovery.agreement import records_agreement
from pyro_razor.discovery.answer import combined_answer, supported_laws
from pyro_razor.discovery.confirm import candidate_evidence
from pyro_razor.discovery.direct import direct_estimate, noise_in_scaled_units
from pyro_razor.discovery.general import general_discovery
from pyro_razor.discovery.laws import direct_discovery
from pyro_razor.discovery.libraries import parse_feature_spec
from pyro_razor.discovery.report import Discovery, discover_quantities
from pyro_razor.inference.config import TrainConfig
from pyro_razor.inference.diagnostics import SCALE_HINT
from pyro_razor.plotting import plot_discovery
from pyro_razor.runs.config import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    GuideConfig,
    ModelConfig,
)
from pyro_razor.runs.discovery_text import discovery_text, estimate_line, settings_line
from pyro_razor.runs.errors import RunError
from pyro_razor.runs.run import run_experiment
from pyro_razor.runs.rundir import RunDir
from pyro_razor.runs.variants import load_variant, training_trajectories
from pyro_razor.systems import is_import_path

__all__ = ["direct_stage", "discover_warnings", "discovery_config", "discovery_text",
           "is_general", "per_quantity_evidence", "razor_decision", "run_discovery"]

STEPS = 400
FULL_BATCH_TRANSITIONS = 4000
MOVES = 0.1  # standardised flow speed above which a spare quantity is put to the test
SUB_STEP_MOVE = 1.2  # standardised distance one RK4 sub-step may move a state (module docstring)
MAX_SUB_STEPS = 8
TAU_SAMPLES = 4  # symmetry samples per training step (module docstring)
REFIT_LR = 3e-3  # learning rate of the per-quantity refits (module docstring)
IN_SPAN = 0.95  # parallelness above which a spare quantity counts as inside the candidates' span


def _data_config(source: str, dt: float | None, names, test_fraction: float, seed: int):
    try:
        return _make_data_config(source, dt, names, test_fraction, seed)
    except ValueError as exc:  # unreadable or invalid data: one line, before any work
        raise RunError(str(exc)) from None


def _make_data_config(source: str, dt: float | None, names, test_fraction: float, seed: int):
    if is_import_path(source):
        return DataConfig(system=source, dt=dt, names=names, seed=seed, n_train=50,
                          train_points=11, n_test=20, test_points=21, standardise=True)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no trajectory file {source}; give a .npz, .npy, .csv or .nc "
                                "file, or a system as 'package.module:function'")
    return DataConfig(file=str(path.resolve()), dt=dt, names=names, test_fraction=test_fraction,
                      seed=seed)


def _from_training_data(data: DataConfig) -> tuple[int, int]:
    """RK4 sub-steps per ``dt`` so that one moves the standardised state by at most
    :data:`SUB_STEP_MOVE`, and the number ``L`` of direct candidates on the training data (what
    the learned model starts at)."""
    from pyro_razor.runs.data import RunData

    loaded = RunData.load(data, "cpu", torch.float64)
    step = (loaded.train[:, 1:] - loaded.train[:, :-1]).norm(dim=-1).flatten()
    typical = float(torch.quantile(step, 0.9)) if step.numel() else 0.0
    try:
        candidates = len(direct_estimate(loaded.train).kinds)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    return int(min(MAX_SUB_STEPS, max(1, math.ceil(typical / SUB_STEP_MOVE)))), candidates


def _check_quantities(quantities: int | None, M: int) -> None:
    """Refuse (before any work) more learnable quantities than the ``M (M + 3) / 2``
    independent quadratic-plus-linear quantities of phase dimension ``M``: the rest could only
    repeat them, and training and figures would grow without bound."""
    most = learnable_dimension(M)
    if quantities is not None and quantities > most:
        raise RunError(f"--quantities {quantities} is more than the {most} independent "
                       f"quadratic quantities of M = {M}; give at most {most}")


def discovery_config(
    source: str, *, dt: float | None = None, names=None, quantities: int | None = None,
    epochs: int | None = None, seed: int = 0, device: str = "cpu", test_fraction: float = 0.2,
) -> ExperimentConfig:
    """The experiment ``discover`` runs on ``source`` (a trajectory file or
    ``"package.module:function"``), with the settings of the module docstring.

    Raises:
        RunError: unreadable data, or ``quantities`` above ``M (M + 3) / 2``
            (:func:`~pyro_razor.analysis.learnable_dimension`), before any training.
    """
    data = _data_config(source, dt, tuple(names) if names else None, test_fraction, seed)
    shapes = data.shapes()
    M, (B, n) = shapes["phase_dim"], shapes["train"]
    _check_quantities(quantities, M)
    sub_steps, candidates = _from_training_data(data)
    K = quantities if quantities is not None else min(candidates + 2, learnable_dimension(M))
    per_trajectory = max(n - 1, 1)
    batch = None if B * per_trajectory <= FULL_BATCH_TRANSITIONS else max(
        1, FULL_BATCH_TRANSITIONS // per_trajectory)
    steps_per_epoch = 1 if batch is None else math.ceil(B / batch)
    model = ModelConfig(
        hidden=(64, 64), activation="elu", elu_alpha=1.0, prior="fixed", prior_variance=1.0,
        noise="empirical", noise_variance=1e-3, integrator="rk4",
        integrator_steps=sub_steps, tau_samples=TAU_SAMPLES, measure="ball",
        measure_scale=math.pi, num_quantities=K, eta_init="direct", eta_seed=seed,
    )
    train = TrainConfig(
        epochs=epochs or max(1, math.ceil(STEPS / steps_per_epoch)), batch_size=batch,
        num_particles=4, lr=1e-2, lr_eta=1e-2, lr_hyper=1e-2,
        checkpoint_every=100, seed=seed,
    )
    name = Path(source).stem if not is_import_path(source) else source.split(":")[-1]
    return ExperimentConfig(
        name=f"discover_{name}", variants=("vanilla", "learned"), data=data, model=model,
        guide=GuideConfig(kind="matrix_normal", init_scale=0.02), train=train,
        evaluation=EvaluationConfig(num_samples=8, tau_samples=256, rollout_points=101,
                                    rollout_trajectories=5, min_norm=0.0), device=device,
    )


def direct_stage(config: ExperimentConfig, *, alpha: float = 0.05, noise=None,
                 tolerance: float = 0.05, degree: int = 2,
                 features: str | None = None) -> tuple[Discovery, dict]:
    """The direct estimate (:mod:`~pyro_razor.discovery.direct`) on all of ``config``'s
    trajectories (training and test, in the user's units): its Discovery and record.

    ``degree = 2`` without ``features`` is the quadratic answer (``A``, ``b``, Lie algebra);
    any other library (:func:`~pyro_razor.discovery.libraries.parse_feature_spec` of
    ``features`` and ``degree``) the general one of :mod:`~pyro_razor.discovery.general`
    (sparse formulas, functionally independent count).
    """
    from pyro_razor.runs.data import RunData

    data = RunData.load(config.data, "cpu", torch.float64)
    trajectories = list(data.scaling.to_original(data.train))
    if data.test.dim() == 3:
        trajectories += list(data.scaling.to_original(data.test))
    try:  # e.g. a --noise list or a --features item that does not fit: one line, no traceback
        if not is_general(degree, features):
            estimate = direct_estimate(trajectories, alpha=alpha, noise=noise,
                                       tolerance=tolerance)
            found = direct_discovery(estimate, data.names)
        else:
            library = parse_feature_spec(features or "", data.phase_dim, degree)
            estimate = direct_estimate(trajectories, alpha=alpha, noise=noise,
                                       tolerance=tolerance, features=library)
            found = general_discovery(estimate, trajectories, data.names)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    return found, {**found.to_json(), "seconds": estimate.seconds, "summary": found.verdict,
                   "names": list(data.names)}


def is_general(degree: int, features: str | None) -> bool:
    """Whether ``--degree`` / ``--features`` ask for laws beyond the quadratic ones (the razor
    stage symmetrises over quadratic quantities only: their flows are linear)."""
    return degree != 2 or bool(features)


def run_discovery(
    source: str, out_dir: str | os.PathLike | None = None, *, progress: bool = True,
    overwrite: bool = False, resume: bool = False, report=None, alpha: float = 0.05, noise=None,
    tolerance: float = 0.05, razor: bool = True, confirm_epochs: int = 50, degree: int = 2,
    features: str | None = None, **settings,
) -> Discovery:
    """Estimate directly, then (``razor=True``) train vanilla and learned on ``source`` and
    decide what is conserved; write the answer.

    Args:
        source: a trajectory file or ``"package.module:function"``.
        out_dir: the run directory (default ``runs/<config name>``).
        progress, overwrite, resume: as for :func:`~pyro_razor.runs.run_experiment` (``resume``
            continues an interrupted razor stage: finished variants are reused, an unfinished
            one continues from its checkpoint; the direct estimate and the per-quantity
            evidence are recomputed).
        report: called with one line per step of the output (e.g. ``print``).
        alpha, noise, tolerance: the direct estimate's test level, noise level (``None``:
            estimated) and drift tolerance (:func:`~pyro_razor.discovery.direct.direct_estimate`).
        razor: also run the razor stage (training); ``False`` gives the direct answer alone.
        confirm_epochs: epochs of each refit of the per-quantity evidence
            (:mod:`~pyro_razor.discovery.confirm`); 0 compares without refitting.
        degree, features: the direct estimate's library (:func:`direct_stage`); beyond
            quadratic laws the answer is the direct one alone (the razor stage is skipped, and
            the output says so).
        settings: :func:`discovery_config`'s keywords (``dt``, ``names``, ``quantities``,
            ``epochs``, ``seed``, ``device``, ``test_fraction``).

    Returns:
        The razor's Discovery (``evidence["direct"]`` holds the direct one), or the direct
        Discovery when ``razor=False``.
    """
    config = discovery_config(source, **settings)
    out = Path(out_dir) if out_dir is not None else Path("runs") / config.name
    say = report or (lambda line: None)
    direct, direct_record = direct_stage(config, alpha=alpha, noise=noise, tolerance=tolerance,
                                         degree=degree, features=features)
    if razor and is_general(degree, features):
        say("razor stage skipped: it symmetrises over quadratic quantities only (linear flows); "
            "the answer below is the direct estimate's")
        razor = False
    if not razor:
        record = {"direct": direct_record, "data": config.data.source,
                  "names": direct_record["names"], "razor": False}
        _write_answer(out, record, say)
        return direct
    say(f"{direct.verdict} [{1000 * direct_record['seconds']:.0f} ms]; now the razor stage")
    say(settings_line(config))
    if not resume:
        say(estimate_line(config, confirm_epochs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        found, record, data = _razor_stage(config, out, progress, overwrite, resume, say,
                                           confirm_epochs, (alpha, noise, tolerance))
    found.warnings += discover_warnings(caught)
    found.evidence["direct"] = direct_record
    found.evidence["agreement"] = records_agreement(found.quantities, direct.quantities,
                                                    data.scaling)
    found.evidence["answer"] = razor_answer(direct_record["evidence"]["direct"], found.evidence)
    record = {**found.to_json(), **record, "direct": direct_record, "razor": True}
    _write_answer(out, record, say)
    plot_discovery(found.quantities, data.scaling.to_original(data.train), data.dt, data.names,
                   RunDir(out).figure("discovery.png"))
    return found


def razor_answer(direct_test: dict, evidence: dict) -> dict:
    """The answer (:func:`~pyro_razor.discovery.answer.combined_answer`) from the direct test's
    record and the razor's evidence (its ``"elbo"`` and ``"per_quantity"`` records)."""
    supported = supported_laws(evidence["per_quantity"]["quantities"], IN_SPAN)
    return combined_answer(direct_test, supported,
                           -evidence["elbo"]["learned_minus_vanilla_nats"])


def discover_warnings(caught) -> list[str]:
    """The runtime warnings of the razor stage as ``discover`` states them: in its own
    options (``--epochs``) instead of a config's keys, each once, for the answer and its
    JSON."""
    out = []
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            continue
        text = str(w.message).replace(SCALE_HINT, "Train longer (--epochs) so that the scales "
                                      "can settle")
        if text not in out:
            out.append(text)
    return out


def _razor_stage(config, out, progress, overwrite, resume, say, confirm_epochs, test):
    """Train vanilla and learned, decide (the direct estimate's tests at ``test = (alpha,
    noise, tolerance)`` on the learned span), weigh each quantity: (Discovery, record,
    data)."""
    run_experiment(config, out, progress=progress, overwrite=overwrite, resume=resume,
                   report=say)
    found, data, model, guide = razor_decision(out, config.device, *test)
    found.evidence["per_quantity"] = per_quantity_evidence(config, data, model, guide,
                                                          confirm_epochs)
    return found, {"names": list(data.names), "data": config.data.source,
                   "settings": _settings(config, data), "units": data.scaling.to_json()}, data


def razor_decision(out: str | os.PathLike, device: str | None = None, alpha: float = 0.05,
                   noise=None, tolerance: float = 0.05):
    """The razor's answer from a trained discover run directory ``out``: the learned span
    tested by :func:`~pyro_razor.discovery.report.discover_quantities` at ``alpha`` /
    ``tolerance``, the noise estimated from the training data (or ``noise``, in the data's
    units). Re-deciding a run with other test settings needs no training.

    Returns:
        ``(Discovery, data, model, guide)`` (without the per-quantity evidence).
    """
    summary = RunDir(out).read_summary()
    _, data, model, guide = load_variant(out, "learned", device)
    elbo = {"vanilla": summary["variants"]["vanilla"]["neg_elbo_per_n"],
            "learned": summary["variants"]["learned"]["neg_elbo_per_n"],
            "n_transitions": data.n_transitions}
    train = data.train.to(torch.float64)
    noise = noise_in_scaled_units(noise, list(train), data.scaling, train.shape[-1], alpha)
    found = discover_quantities(model.generators().detach(), train, model.measure,
                                data.scaling, data.names, elbo, noise=noise, alpha=alpha,
                                tolerance=tolerance)
    return found, data, model, guide


def per_quantity_evidence(config: ExperimentConfig, data, model, guide,
                          refit_epochs: int = 100) -> dict:
    """:func:`~pyro_razor.discovery.confirm.candidate_evidence` for a trained discover run:
    the nested ELBO comparison of each candidate (the undecided ones as one group) and each
    spare quantity whose flow moves the training states by more than :data:`MOVES`, refitted
    with ``config.train`` at the learning rate :data:`REFIT_LR`; rows as documented there."""
    return candidate_evidence(
        model, guide, data.states, data.next_states, config.train,
        training_trajectories(data.states, data.next_states), refit_epochs=refit_epochs,
        refit_lr=REFIT_LR, moves=MOVES, in_span_level=IN_SPAN)


def _write_answer(out: Path, record: dict, say) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "discovery.json", record)
    text = discovery_text(record)
    write_text(out / "discovery.txt", text)
    for line in text.splitlines():
        say(line)


def _settings(config: ExperimentConfig, data) -> dict:
    mc, tc = config.model, config.train
    return {"phase_dim": data.phase_dim, "n_transitions": data.n_transitions,
            "trajectories": data.train.shape[0], "points": data.train.shape[1], "dt": data.dt,
            "num_quantities": mc.num_quantities, "hidden": list(mc.hidden),
            "tau_samples": mc.tau_samples, "particles": tc.num_particles,
            "integrator_steps": mc.integrator_steps, "epochs": tc.epochs,
            "batch_size": tc.batch_size, "noise": mc.noise, "seed": tc.seed,
            "standardised": config.data.standardise}
