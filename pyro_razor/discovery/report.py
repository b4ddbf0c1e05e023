r"""The answer of a discovery run: which quadratic quantities the data conserve, and their group.

From a trained learned-symmetry model (generators in the units the model saw) and the training
trajectories, :func:`discover_quantities` decides, from evidence only:

1. **Candidates** — the learned directions whose flow, under the model's measure, moves the
   training points by more than ``min_displacement`` of their spread
   (:func:`~pyro_razor.analysis.direction_displacements`): a direction that moves nothing
   symmetrises nothing, whatever its singular value.
2. **Conserved directions, by a calibrated test** — within the candidates' span,
   :func:`~pyro_razor.discovery.span_test.conservation_in_span` runs the direct estimator's
   tests with the candidates' own quantities as the feature library: the combinations whose
   within-trajectory scatter is within what the observation noise alone gives (Wishart
   quantiles at level ``alpha``, noise estimated from the data or given) and whose drift is
   below ``tolerance`` of their potential variation. The count is that test's verdict
   (``determined``, ``approximate`` or ``undetermined`` with the range the data allow), not a
   fixed cut-off on a spread ratio: it follows the noise level of the data. Found are the
   combinations that pass the drift test, each marked ``conserved`` (within the noise) or
   ``approximate`` (drift below the tolerance but beyond the noise: a learned direction is
   only as exact as training made it, so on noise-free data the razor's laws are typically
   of this kind). With the drift test's bound taken over the whole quadratic library, the
   number found never exceeds the direct estimate's ``L`` on the same data and noise
   (Cauchy interlacing: a compression of ``W - bound`` has no more negative eigenvalues).
3. **The ELBO's verdict** — the learned model must beat the vanilla HNN on ``-ELBO/N``;
   otherwise the symmetrisation is not supported and the answer is "none found".

The found directions are mapped back to the user's coordinates
(:class:`~pyro_razor.systems.units.PhaseSpaceScaling`), written in the simplest basis of their
span about the data (:mod:`~pyro_razor.discovery.writing`, the same rule as the direct
estimate's) and their Lie algebra is identified (:mod:`~pyro_razor.discovery.algebra`).

Shapes: ``K`` learned generators, ``r`` directions, ``B`` trajectories, ``n`` points, ``M``
phase dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from pyro_razor.analysis import analyse_generators, conservation_along_data
from pyro_razor.discovery.algebra import lie_algebra, tolerance_from_noise
from pyro_razor.discovery.noise import NoiseEstimate, estimate_noise
from pyro_razor.discovery.span_test import SpanVerdict, conservation_in_span
from pyro_razor.discovery.writing import formulas, origin, readable_basis
from pyro_razor.symmetry import (
    SymmetryMeasure,
    generator_matrix,
    quantity_from_generator,
)
from pyro_razor.systems.units import PhaseSpaceScaling

__all__ = ["Discovery", "data_warnings", "discover_quantities"]

F64 = torch.float64
NONE_FOUND = "no quadratic conserved quantity is supported by these data"


@dataclass
class Discovery:
    """What :func:`discover_quantities` found; :meth:`to_json` is ``discovery.json``.

    Attributes:
        quantities: per found quantity ``label``, ``formula``, ``A`` (M x M) and ``b`` (M) with
            ``C = 1/2 x^T A x + b^T x`` in the user's coordinates, and its conservation
            evidence (``within``, ``across``, ``ratio`` along the training trajectories).
        algebra: the Lie algebra of the found generators (dimension, name, closure error,
            structure constants, invariants), computed in the model's standardised units,
            where the generators' entries are of similar size (a change of units is a
            similarity transform: it changes no invariant).
        evidence: the ELBO comparison and the candidate directions' displacements and
            conservation ratios, with the thresholds used.
        verdict: one sentence.
        warnings: reasons the data may be too few or too short to decide.
    """

    quantities: list[dict]
    algebra: dict
    evidence: dict
    verdict: str
    warnings: list[str] = field(default_factory=list)

    @property
    def n_found(self) -> int:
        return len(self.quantities)

    def to_json(self) -> dict:
        return {"n_found": self.n_found, "quantities": self.quantities, "algebra": self.algebra,
                "evidence": self.evidence, "verdict": self.verdict, "warnings": self.warnings}


def data_warnings(num_trajectories: int, num_points: int) -> list[str]:
    """Why these data may be too few or too short to decide (empty if none)."""
    out = []
    if num_trajectories < 4:
        out.append(f"only {num_trajectories} trajectories: the spread of a quantity across "
                   "trajectories, against which conservation is judged, is poorly determined")
    if num_points < 4:
        out.append(f"only {num_points} points per trajectory: conservation along a trajectory "
                   "is judged from very few values")
    if num_trajectories * (num_points - 1) < 40:
        out.append(f"only {num_trajectories * (num_points - 1)} transitions: the ELBO's "
                   "comparison may be dominated by the prior")
    return out


def _quantity_records(A, b, trajectories, names, precision, kind: str,
                      first: int = 0) -> list[dict]:
    """The readable basis of the span of ``(A, b)`` (:mod:`.writing`) with its conservation
    ratios along ``trajectories (B, n, M)`` in the user's units; labels from ``C{first+1}``,
    each of ``kind``."""
    states = trajectories.reshape(-1, trajectories.shape[-1])
    spread = states.std(dim=0)  # typical coordinate sizes, the user's units
    mu = origin(states.mean(dim=0), spread)
    A, b, b_mu = readable_basis(A, b, mu, spread, precision)
    written = formulas(A, b_mu, names, mu, spread, precision, first=first + 1)
    ratios = conservation_along_data(generator_matrix(A, b), trajectories)
    return [
        {"label": f"C{first + k + 1}", "kind": kind, "formula": written[k], "A": A[k].tolist(),
         "b": b[k].tolist(),
         "within": float(ratios["within"][k]),
         "across": float(ratios["across"][k]), "ratio": float(ratios["ratio"][k])}
        for k in range(A.shape[0])
    ]


def discover_quantities(
    learned: torch.Tensor,
    trajectories: torch.Tensor,
    measure: SymmetryMeasure,
    scaling: PhaseSpaceScaling,
    names: Sequence[str],
    elbo: Mapping[str, float],
    *,
    noise: NoiseEstimate | None = None,
    alpha: float = 0.05,
    tolerance: float = 0.05,
    min_displacement: float = 0.1,
    precision: int = 2,
) -> Discovery:
    """Decide which quadratic quantities the data conserve (see the module docstring).

    Args:
        learned: ``(K, M+1, M+1)`` learned generators in the model's (scaled) units.
        trajectories: ``(B, n, M)`` training trajectories in the same units.
        measure: the model's measure of the symmetry times.
        scaling: maps the model's units to the user's.
        names: ``M`` coordinate names in the user's order (positions first).
        elbo: ``vanilla`` and ``learned`` ``-ELBO/N`` and ``n_transitions``.
        noise: the observation noise in the model's units (``None``: estimated from
            ``trajectories``, :func:`~pyro_razor.discovery.noise.estimate_noise`).
        alpha, tolerance: the conservation tests' level and drift tolerance
            (:func:`~pyro_razor.discovery.span_test.conservation_in_span`).
        min_displacement: flow displacement a candidate needs (share of the data's spread).
        precision: decimals of the printed coefficients.
    """
    x = trajectories.detach().cpu().to(F64)
    analysis = analyse_generators(learned.detach().cpu(), threshold=0.0, min_norm=0.0,
                                  trajectories=x, measure=measure,
                                  min_displacement=min_displacement)
    M = x.shape[-1]
    V = torch.tensor(analysis.right_singular_vectors, dtype=F64).reshape(-1, M + 1, M + 1)
    moving = [i for i, d in enumerate(analysis.displacements) if d > min_displacement]
    noise = estimate_noise(list(x), alpha) if noise is None else noise
    verdict = (conservation_in_span(V[moving], x, noise, alpha=alpha, tolerance=tolerance)
               if moving else None)
    gain = (elbo["vanilla"] - elbo["learned"]) * elbo["n_transitions"]
    evidence = {
        "elbo": {"vanilla_neg_elbo_per_n": elbo["vanilla"], "learned_neg_elbo_per_n":
                 elbo["learned"], "n_transitions": elbo["n_transitions"],
                 "learned_minus_vanilla_nats": -gain, "favours": "learned" if gain > 0
                 else "vanilla"},
        "candidates": {"displacements": [analysis.displacements[i] for i in moving]},
        "span_test": None if verdict is None else verdict.to_json(),
        "all_displacements": analysis.displacements,
        "thresholds": {"min_displacement": min_displacement, "alpha": alpha,
                       "tolerance": tolerance, "precision": precision},
    }
    warnings = data_warnings(x.shape[0], x.shape[1])
    reported = [] if verdict is None else [
        i for i, kind in enumerate(verdict.kinds) if kind in ("conserved", "approximate")]
    if gain <= 0 or not reported:
        return Discovery([], lie_algebra(learned.new_zeros(0, M + 1, M + 1)).to_json(),
                         evidence, _none_found(gain, len(moving), verdict, alpha), warnings)
    quantities = []
    for kind in ("conserved", "approximate"):
        rows = [i for i in reported if verdict.kinds[i] == kind]
        if rows:
            quantities += _quantity_records(
                *quantity_from_generator(scaling.generators_to_original(
                    verdict.directions[rows])), scaling.to_original(x), list(names), precision,
                kind, first=len(quantities))
    conserved = sum(q["kind"] == "conserved" for q in quantities)
    G = generator_matrix(torch.tensor([q["A"] for q in quantities], dtype=F64),
                         torch.tensor([q["b"] for q in quantities], dtype=F64))
    # The algebra does not depend on the units; identify it where the entries are O(1), with
    # the tolerance a drift of this size implies for the coefficients (as a noise floor does
    # for the direct estimate's: a learned law is only as exact as its drift says).
    tol = tolerance_from_noise(max(verdict.drifts[i] for i in reported))
    algebra = lie_algebra(scaling.generators_to_scaled(G), tol=tol).to_json()
    evidence["algebra_tolerance"] = tol
    return Discovery(quantities, algebra, evidence,
                     _found_sentence(verdict, conserved, len(quantities), algebra, gain, elbo),
                     warnings)


def _none_found(gain: float, moved: int, verdict: SpanVerdict | None, alpha: float) -> str:
    if gain <= 0:
        reason = (f"the learned symmetry does not improve the ELBO ({-gain:+.1f} nats against "
                  "the vanilla HNN)")
    elif verdict is None:
        reason = "no learned direction moves the data"
    else:
        reason = (f"no combination of the {moved} learned direction(s) that move the data "
                  f"passes the conservation test at level {alpha:g}")
        if verdict.status == "undetermined":
            reason += (f" (the data allow between {verdict.range[0]} and {verdict.range[1]}: "
                       "undetermined)")
    return f"{NONE_FOUND}: {reason}."


def _found_sentence(verdict: SpanVerdict, conserved: int, found: int, algebra: dict,
                    gain: float, elbo: Mapping[str, float]) -> str:
    """One sentence: the calibrated count on the learned span, its algebra and the ELBO."""
    plural = "y" if found == 1 else "ies"
    if verdict.status == "determined":
        head = f"{found} quadratic conserved quantit{plural} found"
    elif verdict.status == "approximate":
        head = (f"{found} quadratic quantit{plural} found in the learned span: {conserved} "
                f"conserved within the noise, {found - conserved} with a drift below "
                f"{verdict.tolerance:.0%} but beyond the noise (approximately conserved: a "
                "learned law is as exact as training made it, or the law is approximate)")
    else:
        head = (f"undetermined: the learned span holds between {verdict.range[0]} and "
                f"{verdict.range[1]} conserved quantities; the {found} certain one(s) are "
                "given")
    return (f"{head} (Lie algebra {algebra['name']}, dimension {algebra['dimension']}; "
            f"conservation tested at level {verdict.alpha:g} within the learned span); the "
            f"ELBO prefers the symmetrised model by {gain:.1f} nats over "
            f"{elbo['n_transitions']} transitions.")
