r"""The answer of a discovery run: which quadratic quantities the data conserve, and their group.

From a trained learned-symmetry model (generators in the units the model saw) and the training
trajectories, :func:`discover_quantities` decides, from evidence only:

1. **Candidates** — the learned directions whose flow, under the model's measure, moves the
   training points by more than ``min_displacement`` of their spread
   (:func:`~pyro_razor.analysis.direction_displacements`): a direction that moves nothing
   symmetrises nothing, whatever its singular value.
2. **Conserved directions** — within the candidates' span, :func:`conserved_subspace` finds the
   combinations whose quantity ``C(x_t)`` is flattest along the observed trajectories: the
   generalised eigenvectors of the within-trajectory against the across-trajectory covariance
   of the candidates' values. A direction counts when its spread along trajectories is below
   ``max_conservation`` of its spread across them; a true conserved quantity is flat along the
   data whatever the network did, an arbitrary one is not.
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

import numpy as np
import scipy.linalg
import torch

from pyro_razor.analysis import analyse_generators, conservation_along_data
from pyro_razor.discovery.algebra import lie_algebra
from pyro_razor.discovery.writing import formulas, origin, readable_basis
from pyro_razor.symmetry import (
    SymmetryMeasure,
    generator_matrix,
    quadratic_value,
    quantity_from_generator,
)
from pyro_razor.systems.units import PhaseSpaceScaling

__all__ = ["Discovery", "conserved_subspace", "data_warnings", "discover_quantities"]

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


@torch.no_grad()
def conserved_subspace(
    generators: torch.Tensor, trajectories: torch.Tensor, ridge: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Directions of a span of generators ordered from the most to the least conserved.

    With ``C_i(x)`` the quantities of the ``r`` generators, ``W`` the covariance of their values
    along each trajectory (averaged over trajectories) and ``Q`` the covariance of their
    per-trajectory means, the generalised eigenvectors ``W w = lambda Q w`` give combinations
    ``sum_i w_i C_i`` whose spread along trajectories relative to across them is
    ``sqrt(lambda)``.

    Args:
        generators: ``(r, M+1, M+1)``.
        trajectories: ``(B, n, M)``, ``B >= 2``.
        ridge: added to ``Q``'s diagonal (relative to its trace) so that quantities constant
            on all the data do not make it singular.

    Returns:
        ``(directions (r, M+1, M+1), ratios (r,))``, unit Frobenius norm, ratios ascending.
    """
    r = generators.shape[0]
    if r == 0:
        return generators, generators.new_zeros(0)
    A, b = quantity_from_generator(generators.to(F64))
    x = trajectories.to(device=A.device, dtype=F64)
    values = torch.stack([quadratic_value(A[i], b[i], x) for i in range(r)], dim=-1)  # (B,n,r)
    centred = values - values.mean(dim=1, keepdim=True)
    within = torch.einsum("bni,bnj->ij", centred, centred) / (values.shape[0] * values.shape[1])
    means = values.mean(dim=1)
    across = torch.cov(means.T).reshape(r, r)
    across = across + ridge * float(torch.trace(across).clamp_min(1e-300)) * torch.eye(r, dtype=F64)
    lam, w = scipy.linalg.eigh(within.cpu().numpy(), across.cpu().numpy())
    order = np.argsort(lam)
    w = torch.from_numpy(w[:, order]).to(F64)
    directions = torch.einsum("ir,ijk->rjk", w, generators.to(F64).cpu())
    directions = directions / directions.flatten(1).norm(dim=1)[:, None, None]
    ratios = torch.from_numpy(np.sqrt(np.clip(lam[order], 0.0, None))).to(F64)
    return directions.to(generators.device), ratios


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


def _quantity_records(A, b, trajectories, names, precision) -> list[dict]:
    """The readable basis of the span of ``(A, b)`` (:mod:`.writing`) with its conservation
    ratios along ``trajectories (B, n, M)`` in the user's units."""
    states = trajectories.reshape(-1, trajectories.shape[-1])
    spread = states.std(dim=0)  # typical coordinate sizes, the user's units
    mu = origin(states.mean(dim=0), spread)
    A, b, b_mu = readable_basis(A, b, mu, spread, precision)
    written = formulas(A, b_mu, names, mu, spread, precision)
    ratios = conservation_along_data(generator_matrix(A, b), trajectories)
    return [
        {"label": f"C{k + 1}", "formula": written[k], "A": A[k].tolist(), "b": b[k].tolist(),
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
    min_displacement: float = 0.1,
    max_conservation: float = 0.1,
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
        min_displacement: flow displacement a candidate needs (share of the data's spread).
        max_conservation: along/across spread ratio below which a direction is conserved.
        precision: decimals of the printed coefficients.
    """
    x = trajectories.detach().cpu().to(F64)
    analysis = analyse_generators(learned.detach().cpu(), threshold=0.0, min_norm=0.0,
                                  trajectories=x, measure=measure,
                                  min_displacement=min_displacement)
    M = x.shape[-1]
    V = torch.tensor(analysis.right_singular_vectors, dtype=F64).reshape(-1, M + 1, M + 1)
    moving = [i for i, d in enumerate(analysis.displacements) if d > min_displacement]
    directions, ratios = conserved_subspace(V[moving], x)
    kept = directions[ratios < max_conservation]
    gain = (elbo["vanilla"] - elbo["learned"]) * elbo["n_transitions"]
    evidence = {
        "elbo": {"vanilla_neg_elbo_per_n": elbo["vanilla"], "learned_neg_elbo_per_n":
                 elbo["learned"], "n_transitions": elbo["n_transitions"],
                 "learned_minus_vanilla_nats": -gain, "favours": "learned" if gain > 0
                 else "vanilla"},
        "candidates": {"displacements": [analysis.displacements[i] for i in moving],
                       "conservation_ratios": ratios.tolist()},
        "all_displacements": analysis.displacements,
        "thresholds": {"min_displacement": min_displacement,
                       "max_conservation": max_conservation, "precision": precision},
    }
    warnings = data_warnings(x.shape[0], x.shape[1])
    if gain <= 0 or kept.shape[0] == 0:
        reason = (f"the learned symmetry does not improve the ELBO ({-gain:+.1f} nats against "
                  "the vanilla HNN)" if gain <= 0 else
                  f"no learned direction both moves the data and is conserved along it "
                  f"({len(moving)} moved the data)")
        return Discovery([], lie_algebra(learned.new_zeros(0, M + 1, M + 1)).to_json(),
                         evidence, f"{NONE_FOUND}: {reason}.", warnings)
    G = scaling.generators_to_original(kept)
    A, b = quantity_from_generator(G)
    quantities = _quantity_records(A, b, scaling.to_original(x), list(names), precision)
    A = torch.tensor([q["A"] for q in quantities], dtype=F64)
    b = torch.tensor([q["b"] for q in quantities], dtype=F64)
    # The algebra does not depend on the units; identify it where the entries are O(1).
    algebra = lie_algebra(scaling.generators_to_scaled(generator_matrix(A, b))).to_json()
    verdict = (f"{len(quantities)} quadratic conserved quantit"
               f"{'y' if len(quantities) == 1 else 'ies'} found (Lie algebra "
               f"{algebra['name']}, dimension {algebra['dimension']}); the ELBO prefers the "
               f"symmetrised model by {gain:.1f} nats over {elbo['n_transitions']} transitions.")
    return Discovery(quantities, algebra, evidence, verdict, warnings)
