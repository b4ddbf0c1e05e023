r"""The symmetry analysis of learned generators and its report (paper section 5.1).

A learned quadratic conserved quantity ``C_k(x) = 1/2 x^T A_k x + b_k^T x`` has the affine
generator ``G_k = [[J A_k, J b_k], [0, 0]] in R^{(M+1) x (M+1)}`` (eq. 4). Symmetries are only
identifiable up to linear combinations, so what is learned is the *span* of the ``K`` generators.
Stack them as the rows of

.. math:: \hat G = [\mathrm{vec}\, G_1; \dots; \mathrm{vec}\, G_K] \in R^{K \times D},
          \qquad D = (M+1)^2,

take its SVD ``\hat G = U \Sigma V^T`` and look at

- the singular values ``sigma_i``, normalised ``lambda_i = sigma_i / sigma_1`` (the paper counts
  ``lambda_i > 0.05``). The normalisation hides a collapse: if every learned generator shrinks
  towards zero, the ratios still pass. A direction therefore only counts as *significant* here
  if also ``sigma_i > min_norm`` in absolute terms (DESIGN.md section 3), i.e. its flow moves
  points appreciably;
- the *parallelness* ``||P v_i||`` of each (unit) right singular vector ``v_i``, with ``P`` the
  orthogonal projector onto the span of the ground-truth generators ``G*_1..G*_L``: ``v_i`` is a
  correct symmetry direction iff ``v_i = P v_i``, i.e. parallelness 1.

Correct recovery (section 5.1): exactly ``L`` significant singular values, and the first ``L``
right singular vectors have parallelness above a level (0.99 for oscillators, 0.95 for 3 bodies).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from pyro_razor.analysis.components import (
    GroundTruth,
    combination_text,
    fmt_small,
    ground_truth,
    oriented_components,
)
from pyro_razor.analysis.evidence import conservation_along_data, direction_displacements
from pyro_razor.analysis.spectrum import (
    F64,
    GeneratorSpectrum,
    chance_parallelness,
    check_generators,
    generator_spectrum,
    parallelness,
)
from pyro_razor.symmetry import SymmetryMeasure

__all__ = ["SymmetryAnalysis", "analyse_generators"]


@dataclass
class SymmetryAnalysis:
    """Result of :func:`analyse_generators` (paper section 5.1); plain Python types throughout.

    Attributes:
        singular_values: ``lambda_i = sigma_i / sigma_1`` for ``i < min(K, D)``, descending
            (all zeros if every learned generator is zero).
        absolute_singular_values: ``sigma_i``, unnormalised.
        generator_norms: Frobenius norm ``||G_k||_F`` of each of the ``K`` learned generators.
        n_significant: number of significant directions: ``lambda_i > threshold``,
            ``sigma_i > min_norm`` and, when training data were given, a flow displacement
            above ``min_displacement``.
        threshold: the relative threshold on ``lambda_i`` (paper: 0.05).
        min_norm: the absolute threshold on ``sigma_i``.
        parallelness: ``||P v_i||`` of every right singular vector ``v_i`` (all 0 without
            ground truth: the projector onto an empty span is 0).
        true_dim: ``L``, the numerical rank of the ground-truth generators (0 if none).
        components: for each significant ``v_i``, its least-squares coefficients on the
            ground-truth generators (each scaled to unit Frobenius norm), ordered by absolute
            value, largest first; empty dicts without ground truth.
        report: readable multi-line summary.
        recovered: ``n_significant == true_dim`` and the first ``true_dim`` parallelness values
            exceed ``parallel_level`` (without ground truth: no significant direction found).
        parallel_level: the parallelness level used for ``recovered``.
        right_singular_vectors: ``min(K, D)`` unit vectors of length ``(M+1)^2`` (reshape to
            ``(M+1, M+1)``), sign fixed so the largest coefficient (or, without ground truth,
            the largest entry) is positive.
        phase_dim: ``M``.
        true_names: names of the ground-truth generators (empty if none).
        displacements: per direction, the mean displacement of the training points by its
            flow under the model's measure, relative to the data's spread (empty without data;
            :func:`~pyro_razor.analysis.evidence.direction_displacements`).
        min_displacement: the displacement a significant direction needs.
        conservation: per direction, the spread of its quantity ``C(x_t)`` within observed
            trajectories relative to its spread across them (~0 for a conserved quantity;
            empty without data).
        chance_parallelness: the parallelness a random learnable direction has on average,
            ``sqrt(L / d)`` (:func:`~pyro_razor.analysis.spectrum.chance_parallelness`).
    """

    singular_values: list[float]
    absolute_singular_values: list[float]
    generator_norms: list[float]
    n_significant: int
    threshold: float
    min_norm: float
    parallelness: list[float]
    true_dim: int
    components: list[dict[str, float]]
    report: str
    recovered: bool
    parallel_level: float = 0.99
    right_singular_vectors: list[list[float]] = field(default_factory=list)
    phase_dim: int = 0
    true_names: list[str] = field(default_factory=list)
    displacements: list[float] = field(default_factory=list)
    min_displacement: float = 0.0
    conservation: list[float] = field(default_factory=list)
    chance_parallelness: float = 0.0

    def to_json(self) -> dict:
        """All fields as a JSON-serialisable ``dict`` (``json.dumps`` works on it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SymmetryAnalysis:
        """Rebuild from :meth:`to_json` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"SymmetryAnalysis.from_json: unknown keys {unknown}; expected a subset of "
                f"{sorted(names)}"
            )
        return cls(**dict(data))


def _check_levels(threshold: float, min_norm: float, parallel_level: float) -> None:
    if not (0.0 <= threshold < 1.0):
        raise ValueError(f"threshold must lie in [0, 1) (paper: 0.05), got {threshold}")
    if not (min_norm >= 0.0 and math.isfinite(min_norm)):
        raise ValueError(f"min_norm must be finite and >= 0, got {min_norm}")
    if not (0.0 < parallel_level <= 1.0):
        raise ValueError(f"parallel_level must lie in (0, 1] (paper: 0.99), got {parallel_level}")


def analyse_generators(
    learned: torch.Tensor,
    true: torch.Tensor | None = None,
    true_names: Sequence[str] | None = None,
    threshold: float = 0.05,
    min_norm: float = 0.1,
    parallel_level: float = 0.99,
    *,
    trajectories: torch.Tensor | None = None,
    measure: SymmetryMeasure | None = None,
    min_displacement: float = 0.1,
) -> SymmetryAnalysis:
    r"""SVD analysis of learned generators against the ground truth (paper section 5.1).

    With ``\hat G in R^{K x D}`` the flattened learned generators, ``D = (M+1)^2``, and its SVD
    ``\hat G = U diag(sigma) V^T``: ``lambda_i = sigma_i / sigma_1``; direction ``i`` is
    significant iff ``lambda_i > threshold``, ``sigma_i > min_norm`` and, with training data,
    its flow moves the data by more than ``min_displacement`` of their spread
    (:mod:`pyro_razor.analysis.evidence`); its parallelness is ``||P v_i||`` with ``P`` the
    projector onto the span of the flattened ground truth ``G* in R^{L x D}``; its components
    are ``c = argmin ||G*_unit^T c - v_i||`` with each ground truth generator scaled to unit
    Frobenius norm (minimum-norm solution if they are dependent).

    Computed in float64 on the device of ``learned``; any input dtype is accepted.

    Args:
        learned: ``(K, M+1, M+1)`` learned generators (``K = 0`` allowed: nothing significant).
        true: ``(L, M+1, M+1)`` ground-truth generators, e.g. ``system.generators()``; ``None``
            (or ``L = 0``) means no known quadratic conserved quantity, so ``true_dim = 0``.
        true_names: ``L`` names for the report, e.g.
            ``[c.name for c in system.conserved_quantities]``; default ``"G*1".."G*L"``.
        threshold: relative threshold on ``lambda_i``, in ``[0, 1)`` (paper: 0.05).
        min_norm: absolute threshold on ``sigma_i``, ``>= 0`` (0 switches it off).
        parallel_level: parallelness needed for recovery, in ``(0, 1]`` (paper: 0.99 for
            oscillators, 0.95 for the 3-body system).
        trajectories: ``(B, n, M)`` training trajectories: enables the displacement criterion
            and the conservation of each direction's quantity along the data.
        measure: the model's measure ``mu(tau)`` (needed with ``trajectories``).
        min_displacement: relative displacement a significant direction needs.

    Returns:
        A :class:`SymmetryAnalysis`.
    """
    learned = check_generators(learned, "analyse_generators: learned")
    M, K = learned.shape[-1] - 1, learned.shape[0]
    threshold, min_norm, parallel_level = float(threshold), float(min_norm), float(parallel_level)
    _check_levels(threshold, min_norm, parallel_level)
    G_hat = learned.to(F64).reshape(K, (M + 1) ** 2)
    truth = ground_truth(true, true_names, M, G_hat.device)
    spectrum = generator_spectrum(G_hat, learned.dtype)
    significant = (spectrum.lam > threshold) & (spectrum.sigma > min_norm)
    displacements, conservation = _data_evidence(spectrum, M, trajectories, measure)
    if displacements is not None:
        significant &= displacements > float(min_displacement)
    r = spectrum.sigma.shape[0]
    par = parallelness(spectrum.V, truth.flat) if r else spectrum.sigma.new_zeros(0)
    V, coeffs = oriented_components(spectrum.V, truth)
    components = _components(coeffs, significant, truth)
    par_list = [float(x) for x in par]
    n_significant = int(significant.sum())
    recovered = n_significant == truth.dim and all(
        p > parallel_level for p in par_list[: truth.dim]
    )
    analysis = SymmetryAnalysis(
        singular_values=[float(x) for x in spectrum.lam],
        absolute_singular_values=[float(x) for x in spectrum.sigma],
        generator_norms=[float(x) for x in spectrum.generator_norms],
        n_significant=n_significant,
        threshold=threshold,
        min_norm=min_norm,
        parallelness=par_list,
        true_dim=truth.dim,
        components=components,
        report="",
        recovered=bool(recovered),
        parallel_level=parallel_level,
        right_singular_vectors=V.tolist(),
        phase_dim=M,
        true_names=truth.names,
        displacements=[] if displacements is None else displacements.tolist(),
        min_displacement=float(min_displacement) if displacements is not None else 0.0,
        conservation=[] if conservation is None else conservation.tolist(),
        chance_parallelness=chance_parallelness(truth.dim, M),
    )
    analysis.report = _report(analysis, significant, truth)
    return analysis


def _data_evidence(spectrum: GeneratorSpectrum, M: int, trajectories, measure):
    """Displacements and conservation ratios of the directions, or ``(None, None)``."""
    if trajectories is None:
        return None, None
    if measure is None:
        raise ValueError("analyse_generators: trajectories need the model's measure too")
    x = torch.as_tensor(trajectories)
    if x.dim() != 3 or x.shape[-1] != M:
        raise ValueError(
            f"analyse_generators: trajectories must have shape (B, n, {M}), got {tuple(x.shape)}"
        )
    displacements = direction_displacements(spectrum.U, spectrum.sigma, spectrum.V, x, measure)
    G = spectrum.V.reshape(-1, M + 1, M + 1)
    conservation = conservation_along_data(G, x)["ratio"] if G.shape[0] else G.new_zeros(0)
    return displacements, conservation


def _components(coeffs, significant: torch.Tensor, truth: GroundTruth) -> list[dict[str, float]]:
    """For each significant direction its ground-truth coefficients, largest first."""
    components: list[dict[str, float]] = []
    for i in range(significant.shape[0]):
        if not bool(significant[i]):
            continue
        if coeffs is None:
            components.append({})
            continue
        c = coeffs[:, i].tolist()
        order = sorted(range(len(c)), key=lambda l: -abs(c[l]))
        components.append({truth.names[l]: float(c[l]) for l in order})
    return components


def _report(a: SymmetryAnalysis, significant: torch.Tensor, truth: GroundTruth) -> str:
    """The readable multi-line summary of :func:`analyse_generators`."""
    K, M = len(a.generator_norms), a.phase_dim
    criteria = f"lambda > {a.threshold:g}"
    if a.min_norm > 0:
        criteria += f", singular value > {a.min_norm:g}"
    if a.displacements:
        criteria += f", flow moves the data by > {a.min_displacement:g} of their spread"
    lines = [
        f"Symmetry analysis: K = {K} learned generators on M = {M} (D = {(M + 1) ** 2} entries "
        "each)",
        f"significant directions: {a.n_significant} ({criteria})",
    ]
    if truth.flat.shape[0]:
        verdict = "recovered" if a.recovered else "NOT recovered"
        lines.append(
            f"ground truth: L = {truth.dim} ({', '.join(truth.names)}); {verdict} "
            f"(needs {truth.dim} significant with parallelness > {a.parallel_level:g}; a random "
            f"direction has {a.chance_parallelness:.2f})"
        )
    else:
        lines.append("ground truth: none given (L = 0); parallelness not measured")
    norms = ", ".join(fmt_small(x) for x in a.generator_norms) or "none (K = 0)"
    lines.append(f"learned generator norms: {norms}")
    j = 0
    for i in range(len(a.singular_values)):
        head = f"v{i + 1} (lambda={fmt_small(a.singular_values[i])}, "
        head += f"|.|={fmt_small(a.absolute_singular_values[i])}"
        if a.displacements:
            head += f", moves {fmt_small(a.displacements[i])}, "
            head += f"C spread along/across {fmt_small(a.conservation[i])}"
        head += f", parallel {a.parallelness[i]:.3f})" if truth.flat.shape[0] else ")"
        if bool(significant[i]):
            body = combination_text(a.components[j]) if a.components[j] else "significant"
            j += 1
            lines.append(f"{head} ≈ {body}")
        else:
            lines.append(f"{head} inactive")
    return "\n".join(lines)
