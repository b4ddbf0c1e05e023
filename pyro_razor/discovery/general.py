r"""The direct estimate of any feature library as readable laws, counted up to functions of others.

:func:`general_discovery` turns a :class:`~pyro_razor.discovery.direct.DirectEstimate` made with
a feature library (``features=...``) into a :class:`~pyro_razor.discovery.report.Discovery`:

1. **Sparse formulas** (:func:`sparse_laws`). Each block of reported quantities (conserved,
   approximately conserved, undecided) is a subspace of the library; its basis is chosen
   sparse in two steps, with every feature weighted by its spread on the data (the
   estimator's :class:`~pyro_razor.discovery.features.ConditionedFeatures` columns):

   - reduced row echelon form with the *simplest* pivots: the pivot of each row is, among
     the features of lowest complexity (a monomial's degree) that the remaining rows use, the
     one with the largest weight; every other row has a 0 there;
   - sequentially thresholded least squares (SINDy-style): for cuts ``0.3, 0.1, ..., 1e-8`` of
     the row's largest term, drop the smaller terms and refit the rest to the smallest
     within-trajectory scatter with the pivot held at 1; keep the first (sparsest) pruned
     quantity that still passes the estimator's test (ratio within noise ``<= w_U`` for a
     conserved block, drift ``<= tolerance`` for an approximate one).

   Formulas are printed in the user's coordinates with the library's labels, the simplest
   term's coefficient 1, e.g. ``C1 = p² + 0.5·q⁴``.
2. **Functional independence** (:func:`independent_laws`). A law that is a function of others
   (``E²``, ``P·H``, ``A² - 2 H L²``) lies in the span too but adds nothing. The number of
   functionally independent laws is the generic rank of the stacked gradients
   ``[grad C_1 .. grad C_r] (x)`` (``r x M``) over the data states: laws are taken in order of
   simplicity (fewest terms, lowest complexity) and one is kept when it raises the rank, i.e.
   when the median over states of the smallest / largest singular value of the kept laws'
   unit gradients with it is above ``rank_tolerance`` (default: ``max(1e-3, noise floor)``);
   each other law is reported as a function of the smallest kept subset it does not raise.
3. No Lie algebra is named: the flows of non-quadratic laws are non-linear (``algebra`` says so).

Shapes: ``r`` quantities, ``F`` features (``F'`` in use), ``M`` phase dimension, ``N`` states.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from pyro_razor.discovery.direct import DirectEstimate
from pyro_razor.discovery.features import ConditionedFeatures
from pyro_razor.discovery.formulas import format_coefficient
from pyro_razor.discovery.report import Discovery
from pyro_razor.discovery.trajectories import as_trajectory_list

__all__ = ["formula", "general_discovery", "general_quantities", "independent_laws",
           "sparse_laws"]

F64 = torch.float64
CUTS = (0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8)
NO_ALGEBRA = {"name": None, "dimension": None,
              "note": "not identified: the flows of non-quadratic laws are non-linear"}
MAX_STATES = 400
PIVOT_SHARE = 0.1  # a pivot carries at least this share of its row's largest weighted term


def _echelon(rows: np.ndarray, complexity: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Reduced row echelon form ``(r, F')`` of ``rows`` with the simplest pivots, and them."""
    R = rows / np.abs(rows).max(axis=1, keepdims=True)
    pivots = []
    for i in range(R.shape[0]):
        block = np.abs(R[i:])
        usable = block.max(axis=0) > PIVOT_SHARE * block.max()
        level = complexity[usable].min()
        candidates = np.flatnonzero(usable & (complexity == level))
        col = int(candidates[np.argmax(block[:, candidates].max(axis=0))])
        j = i + int(np.argmax(block[:, col]))
        R[[i, j]] = R[[j, i]]
        R[i] /= R[i, col]
        others = np.arange(R.shape[0]) != i
        R[others] -= np.outer(R[others, col], R[i])
        pivots.append(col)
    return R, pivots


def _passes(estimate: DirectEstimate, c: np.ndarray, kind: str, bound: float) -> bool:
    stats = estimate.statistics(torch.from_numpy(c[None]))
    if kind == "conserved":
        return stats["ratio"][0] <= bound and stats["drift"][0] <= estimate.settings["tolerance"]
    return stats["drift"][0] <= estimate.settings["tolerance"]


def _prune(estimate: DirectEstimate, row: np.ndarray, pivot: int, kind: str,
           bound: float) -> np.ndarray:
    """The sparsest thresholded, refitted version of ``row (F',)`` that passes the test."""
    W = estimate.within.numpy()
    size = np.abs(row)
    for cut in CUTS:
        support = np.flatnonzero(size >= cut * size.max())
        rest = support[support != pivot]
        c = np.zeros_like(row)
        c[pivot] = 1.0
        if rest.size:
            A = W[np.ix_(rest, rest)] + 1e-14 * np.trace(W) * np.eye(rest.size)
            c[rest] = np.linalg.solve(A, -W[rest, pivot])
        if _passes(estimate, c, kind, bound):
            return c
    return row


def sparse_laws(estimate: DirectEstimate, rows: torch.Tensor, kind: str = "conserved"
                ) -> tuple[torch.Tensor, list[int]]:
    """A sparse basis ``(r, F')`` of the span of ``rows (r, F')`` (estimator's basis; module
    docstring, step 1), each row 1 at its pivot (its simplest term), and the pivots."""
    if rows.shape[0] == 0:
        return rows, []
    complexity = np.asarray(estimate.features.complexities)
    R, pivots = _echelon(rows.numpy().astype(np.float64), complexity)
    U = max(estimate.counts["U"], 1)
    bound = float(estimate.thresholds[U - 1])
    pruned = [_prune(estimate, R[i], pivots[i], kind, bound) for i in range(R.shape[0])]
    return torch.from_numpy(np.stack(pruned)), pivots


def formula(label: str, coefficients: torch.Tensor, labels: Sequence[str],
            precision: int = 2) -> str:
    """``"C1 = p² + 0.5·q⁴"`` from library coefficients ``(F,)`` and the library's labels."""
    terms = []
    for c, name in zip(coefficients.tolist(), labels, strict=True):
        if c == 0.0:
            continue
        sign = "−" if c < 0 else "+"
        number = format_coefficient(c, precision)
        body = name if number == "1" else f"{number}·{name}"
        terms.append((sign, body))
    if not terms:
        return f"{label} = 0"
    text = ("−" if terms[0][0] == "−" else "") + terms[0][1]
    return f"{label} = " + text + "".join(f" {s} {b}" for s, b in terms[1:])


def _unit_gradients(estimate: DirectEstimate, rows: torch.Tensor, states: torch.Tensor):
    """``(N, r, M)`` unit gradients of the quantities ``rows (r, F')`` at ``states``."""
    z = estimate.scaling.to_scaled(states)
    _, J = estimate.features(z)
    G = torch.einsum("nfm,rf->nrm", J, rows.to(F64))
    return G / G.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def _generic_rank_gap(G: torch.Tensor) -> float:
    """Median over states of smallest / largest singular value of ``G (N, k, M)``."""
    s = torch.linalg.svdvals(G)
    return float((s[:, -1] / s[:, 0].clamp_min(1e-300)).median())


def independent_laws(estimate: DirectEstimate, rows: torch.Tensor, states: torch.Tensor,
                     rank_tolerance: float) -> tuple[list[int], dict[int, list[int]]]:
    """A minimal functionally independent subset of ``rows (r, F')`` (in the given order) and,
    for each other row, the smallest subset of it that it is a function of (module step 2).

    Args:
        states: ``(N, M)`` data states in the user's units (subsampled to ``MAX_STATES``).
    """
    if states.shape[0] > MAX_STATES:
        states = states[torch.linspace(0, states.shape[0] - 1, MAX_STATES).long()]
    G = _unit_gradients(estimate, rows, states)
    kept: list[int] = []
    for k in range(rows.shape[0]):
        if len(kept) < G.shape[-1] and _generic_rank_gap(G[:, kept + [k]]) > rank_tolerance:
            kept.append(k)
    dependent = {}
    for k in range(rows.shape[0]):
        if k in kept:
            continue
        for size in range(1, len(kept) + 1):
            subset = next((list(s) for s in itertools.combinations(kept, size)
                           if _generic_rank_gap(G[:, list(s) + [k]]) <= rank_tolerance), None)
            if subset is not None:
                dependent[k] = subset
                break
        dependent.setdefault(k, list(kept))
    return kept, dependent


def _noise_floor(estimate: DirectEstimate) -> float:
    return 2.0 * float(estimate.noise.high.max())


def _simplicity(estimate: DirectEstimate, rows: torch.Tensor) -> list[int]:
    """Order of ``rows`` from the simplest: fewest terms, then lowest top complexity."""
    complexity = torch.as_tensor(estimate.features.complexities)
    keys = [(int((r != 0).sum()), int(complexity[r != 0].max()) if bool((r != 0).any()) else 0)
            for r in rows]
    return sorted(range(len(keys)), key=lambda i: keys[i])


def general_quantities(estimate: DirectEstimate, names: Sequence[str], precision: int = 2
                       ) -> list[dict]:
    """Records ``label, kind, formula, coefficients, terms, ratio, drift`` of the reported
    quantities, each block written sparse (:func:`sparse_laws`), simplest first.

    ``coefficients`` are in the given library's basis (``(F,)``, user's coordinates); ``terms``
    maps each printed feature label to its coefficient.
    """
    features = estimate.features
    if not isinstance(features, ConditionedFeatures):
        raise ValueError("general_quantities: need an estimate made with features=...; for the "
                         "quadratic default use laws.direct_quantities")
    labels = features.library.labels(list(names))
    records = []
    for kind in ("conserved", "approximate", "undecided"):
        index = [i for i, k in enumerate(estimate.kinds) if k == kind]
        if not index:
            continue
        rows, pivots = sparse_laws(estimate, estimate.coefficients[index], kind)
        order = _simplicity(estimate, rows)
        rows, pivots = rows[order], features.kept[[pivots[i] for i in order]]
        stats = estimate.statistics(rows)
        library = features.to_library(rows)
        for j in range(rows.shape[0]):
            c = library[j] / library[j, pivots[j]]
            label = f"C{len(records) + 1}"
            records.append({
                "label": label, "kind": kind, "formula": formula(label, c, labels, precision),
                "coefficients": c.tolist(), "rows": rows[j].tolist(),
                "terms": {labels[f]: float(c[f]) for f in c.nonzero().flatten().tolist()},
                "ratio": stats["ratio"][j], "drift": stats["drift"][j]})
    return records


def general_discovery(estimate: DirectEstimate, trajectories, names: Sequence[str],
                      precision: int = 2, rank_tolerance: float | None = None) -> Discovery:
    """The :class:`~pyro_razor.discovery.report.Discovery` of a direct estimate made with any
    feature library (module docstring).

    Args:
        estimate: ``direct_estimate(trajectories, features=...)``.
        trajectories: the same data (``(B, n, M)`` or a list of ``(n_b, M)``), for the
            gradients of the functional-independence test.
        names: ``M`` coordinate names, positions first.
        precision: decimals of the printed coefficients.
        rank_tolerance: relative singular value below which laws count as dependent
            (default ``max(1e-3, noise floor)``).

    Returns:
        The Discovery; ``evidence["independent"]`` is the number of functionally independent
        conserved laws, each quantity says ``independent`` and, if not, ``function_of``.
    """
    quantities = general_quantities(estimate, names, precision)
    states = torch.cat(as_trajectory_list(trajectories, "general_discovery"))
    tol = max(1e-3, _noise_floor(estimate)) if rank_tolerance is None else rank_tolerance
    conserved = [q for q in quantities if q["kind"] == "conserved"]
    kept, dependent = ([], {}) if not conserved else independent_laws(
        estimate, torch.tensor([q["rows"] for q in conserved], dtype=F64), states, tol)
    for k, q in enumerate(conserved):
        q["independent"] = k in kept
        q["function_of"] = [conserved[i]["label"] for i in dependent[k]] if k in dependent \
            else None
    for q in quantities:
        del q["rows"]
    evidence = {"direct": estimate.to_json(), "precision": precision, "rank_tolerance": tol,
                "span": len(conserved), "independent": len(kept),
                "library": estimate.features.labels(list(names))}
    return Discovery(quantities, dict(NO_ALGEBRA), evidence, _verdict(estimate, conserved, kept),
                     estimate.warnings)


def _verdict(estimate: DirectEstimate, conserved: list[dict], kept: list[int]) -> str:
    found = (f"{len(kept)} functionally independent conserved quantit"
             f"{'y' if len(kept) == 1 else 'ies'} ({len(conserved)} in the library's span")
    extra = [f"{q['label']} is a function of {', '.join(q['function_of'])}"
             for q in conserved if not q["independent"]]
    return found + ("; " + "; ".join(extra) if extra else "") + "). " + estimate.summary()
