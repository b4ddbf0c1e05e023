r"""Analysis of learned symmetries: generator SVD, parallelness and recovery (paper section 5.1).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from pyro_razor.symmetry import check_phase_dim

__all__ = [
    "SymmetryAnalysis",
    "analyse_generators",
    "conservation_drift",
    "parallelness",
]

_F64 = torch.float64


# ---------------------------------------------------------------------------- validation


def _check_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; check the training run that produced it")
    return x.detach()


def _check_generators(G: object, name: str) -> torch.Tensor:
    """Validate a ``(K, M+1, M+1)`` generator stack (``M`` positive and even)."""
    G = _check_tensor(G, name)
    if G.dim() != 3 or G.shape[-1] != G.shape[-2]:
        raise ValueError(
            f"{name} must be a 3-d tensor of shape (K, M+1, M+1) (one square generator per "
            f"quantity), got shape {tuple(G.shape)}; stack single generators with "
            "torch.stack or G[None]"
        )
    M = G.shape[-1] - 1
    try:
        check_phase_dim(M)
    except ValueError:
        raise ValueError(
            f"{name} has generators of size {G.shape[-1]} x {G.shape[-1]}, so M = {M}; generators "
            "act on homogeneous coordinates (x, 1) and must be (M+1) x (M+1) with M even"
        ) from None
    return G


def _rank_tolerance(S: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype) -> float:
    """Numerical-rank cut-off ``sigma_max * max(shape) * eps(dtype)`` (as numpy.matrix_rank)."""
    if S.numel() == 0:
        return 0.0
    return float(S.max()) * max(shape) * torch.finfo(dtype).eps


def _orthonormal_basis(basis: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(D, r)`` orthonormal columns spanning the rows of ``basis`` (``r`` its numerical rank)."""
    L, D = basis.shape
    if L == 0:
        return basis.new_zeros(D, 0)
    _, S, Vh = torch.linalg.svd(basis, full_matrices=False)
    r = int((S > _rank_tolerance(S, (L, D), dtype)).sum())
    return Vh[:r].transpose(0, 1)


# ---------------------------------------------------------------------------- parallelness


def parallelness(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    r"""Relative length of each vector's projection onto the span of ``basis``.

    .. math:: \mathrm{par}(v_i) = \frac{\|P v_i\|}{\|v_i\|}, \qquad
              P = Q Q^T,\; Q \text{ orthonormal columns spanning the rows of } B,

    with ``Q`` from an SVD of ``B`` keeping only singular values above
    ``sigma_max * max(L, D) * eps`` (so a rank-deficient or redundant basis is fine). For unit
    ``v_i`` this is the paper's parallelness ``||v_i^par||`` (section 5.1). A zero vector, an
    empty basis (``L = 0``) or an all-zero basis gives 0.

    Args:
        vectors: ``(n, D)`` vectors, e.g. right singular vectors of the learned generators.
        basis: ``(L, D)`` spanning set, e.g. the flattened ground-truth generators.

    Returns:
        ``(n,)`` values in ``[0, 1]``, in the promoted dtype of the inputs.
    """
    vectors = _check_tensor(vectors, "parallelness: vectors")
    basis = _check_tensor(basis, "parallelness: basis")
    if vectors.dim() != 2 or basis.dim() != 2:
        raise ValueError(
            "parallelness needs vectors of shape (n, D) and basis of shape (L, D), got "
            f"{tuple(vectors.shape)} and {tuple(basis.shape)}; flatten generators with "
            ".reshape(K, -1)"
        )
    if vectors.shape[1] != basis.shape[1]:
        raise ValueError(
            f"parallelness: vectors have dimension D = {vectors.shape[1]} but the basis has "
            f"D = {basis.shape[1]}; both must be flattened from generators of the same size"
        )
    dtype = torch.promote_types(vectors.dtype, basis.dtype)
    vectors = vectors.to(dtype)
    basis = basis.to(device=vectors.device, dtype=dtype)
    Q = _orthonormal_basis(basis, dtype)
    lengths = vectors.norm(dim=1)
    projected = (vectors @ Q).norm(dim=1)
    ratio = projected / lengths.clamp_min(torch.finfo(dtype).tiny)
    return torch.where(lengths > 0, ratio, torch.zeros_like(ratio)).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------- SVD analysis


@dataclass
class SymmetryAnalysis:
    """Result of :func:`analyse_generators` (paper section 5.1); plain Python types throughout.

    Attributes:
        singular_values: ``lambda_i = sigma_i / sigma_1`` for ``i < min(K, D)``, descending
            (all zeros if every learned generator is zero).
        absolute_singular_values: ``sigma_i``, unnormalised.
        generator_norms: Frobenius norm ``||G_k||_F`` of each of the ``K`` learned generators.
        n_significant: number of ``i`` with ``lambda_i > threshold`` and ``sigma_i > min_norm``.
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


def _fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.1e}"


def _combination(coeffs: dict[str, float], max_terms: int = 6, cutoff: float = 0.05) -> str:
    """``"0.71 RABS_12 + 0.70 RCOM_12"`` from ordered coefficients (small ones dropped)."""
    terms = [(n, c) for n, c in coeffs.items() if abs(c) >= cutoff][:max_terms]
    if not terms:
        return "0 (no ground-truth component above 0.05)"
    text = ""
    for k, (name, c) in enumerate(terms):
        sign = "-" if c < 0 else "+"
        if k == 0:
            text = f"{'-' if c < 0 else ''}{abs(c):.2f} {name}"
        else:
            text += f" {sign} {abs(c):.2f} {name}"
    rest = sum(1 for c in coeffs.values() if abs(c) >= cutoff) - len(terms)
    if rest > 0:
        text += f" + ... ({rest} more)"
    return text


def analyse_generators(
    learned: torch.Tensor,
    true: torch.Tensor | None = None,
    true_names: Sequence[str] | None = None,
    threshold: float = 0.05,
    min_norm: float = 0.1,
    parallel_level: float = 0.99,
) -> SymmetryAnalysis:
    r"""SVD analysis of learned generators against the ground truth (paper section 5.1).

    With ``\hat G in R^{K x D}`` the flattened learned generators, ``D = (M+1)^2``, and its SVD
    ``\hat G = U diag(sigma) V^T``: ``lambda_i = sigma_i / sigma_1``; direction ``i`` is
    significant iff ``lambda_i > threshold`` and ``sigma_i > min_norm``; its parallelness is
    ``||P v_i||`` with ``P`` the projector onto the span of the flattened ground truth
    ``G* in R^{L x D}``; its components are ``c = argmin ||G*_unit^T c - v_i||`` with each ground
    truth generator scaled to unit Frobenius norm (minimum-norm solution if they are dependent).

    Computed in float64 on the device of ``learned``; any input dtype is accepted.

    Args:
        learned: ``(K, M+1, M+1)`` learned generators (``K = 0`` allowed: nothing significant).
        true: ``(L, M+1, M+1)`` ground-truth generators, e.g. ``system.generators()``; ``None``
            (or ``L = 0``) means no known quadratic conserved quantity, so ``true_dim = 0``.
        true_names: ``L`` names for the report, e.g.
            ``[c.name for c in system.conserved_quantities]``; default ``"G*1".."G*L"``.
        threshold: relative threshold on ``lambda_i``, in ``[0, 1)`` (paper: 0.05).
        min_norm: absolute threshold on ``sigma_i``, ``>= 0`` (a learned SO(2) generator of the
            oscillator has norm ``sqrt 2``).
        parallel_level: parallelness needed for recovery, in ``(0, 1]`` (paper: 0.99 for
            oscillators, 0.95 for the 3-body system).

    Returns:
        A :class:`SymmetryAnalysis`.
    """
    learned = _check_generators(learned, "analyse_generators: learned")
    in_dtype = learned.dtype
    M = learned.shape[-1] - 1
    D = (M + 1) ** 2
    K = learned.shape[0]
    threshold, min_norm, parallel_level = float(threshold), float(min_norm), float(parallel_level)
    if not (0.0 <= threshold < 1.0):
        raise ValueError(f"threshold must lie in [0, 1) (paper: 0.05), got {threshold}")
    if not (min_norm >= 0.0 and math.isfinite(min_norm)):
        raise ValueError(f"min_norm must be finite and >= 0, got {min_norm}")
    if not (0.0 < parallel_level <= 1.0):
        raise ValueError(f"parallel_level must lie in (0, 1] (paper: 0.99), got {parallel_level}")

    G_hat = learned.to(_F64).reshape(K, D)
    device = G_hat.device

    # ---- ground truth
    if true is None:
        true_flat = G_hat.new_zeros(0, D)
        true_dtype = _F64
    else:
        true = _check_generators(true, "analyse_generators: true")
        if true.shape[-1] != M + 1:
            raise ValueError(
                f"analyse_generators: learned generators are {M + 1} x {M + 1} (M = {M}) but "
                f"the true ones are {true.shape[-1]} x {true.shape[-1]} "
                f"(M = {true.shape[-1] - 1}); "
                "both must come from the same system"
            )
        true_dtype = true.dtype
        true_flat = true.to(device=device, dtype=_F64).reshape(true.shape[0], D)
    L_given = true_flat.shape[0]
    if true_names is None:
        names = [f"G*{l + 1}" for l in range(L_given)]
    else:
        names = [str(n) for n in true_names]
        if len(names) != L_given:
            raise ValueError(
                f"analyse_generators: got {len(names)} true_names for {L_given} true generators"
            )
    true_norms = true_flat.norm(dim=1)
    if L_given and bool((true_norms == 0).any()):
        zero = [names[l] for l in range(L_given) if float(true_norms[l]) == 0.0]
        raise ValueError(f"analyse_generators: true generators {zero} are zero; remove them")
    if L_given:
        S_true = torch.linalg.svdvals(true_flat)
        tol = _rank_tolerance(S_true, (L_given, D), true_dtype)
        true_dim = int((S_true > tol).sum())
    else:
        true_dim = 0
    true_unit = true_flat / true_norms[:, None] if L_given else true_flat

    # ---- SVD of the learned generators
    generator_norms = G_hat.norm(dim=1)
    r = min(K, D)
    if K == 0:
        S = G_hat.new_zeros(0)
        V = G_hat.new_zeros(0, D)
    else:
        _, S, V = torch.linalg.svd(G_hat, full_matrices=False)  # V: (r, D) rows v_i
    sigma_max = float(S[0]) if r else 0.0
    # Below numerical noise the learned set is zero: no direction, no division by ~0.
    if sigma_max <= torch.finfo(in_dtype).tiny:
        lam = torch.zeros_like(S)
    else:
        lam = S / sigma_max
    significant = (lam > threshold) & (S > min_norm)
    n_significant = int(significant.sum())

    par = parallelness(V, true_flat) if r else S.new_zeros(0)

    # ---- components on the unit-norm ground truth, sign convention
    if L_given and r:
        coeffs = torch.linalg.pinv(true_unit.transpose(0, 1)) @ V.transpose(0, 1)  # (L, r)
        lead = coeffs.abs().argmax(dim=0)
        signs = torch.sign(coeffs.gather(0, lead[None, :])[0])
    elif r:
        coeffs = None
        lead = V.abs().argmax(dim=1)
        signs = torch.sign(V.gather(1, lead[:, None])[:, 0])
    else:
        coeffs, signs = None, S.new_zeros(0)
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    V = V * signs[:, None]

    components: list[dict[str, float]] = []
    for i in range(r):
        if not bool(significant[i]):
            continue
        if coeffs is None:
            components.append({})
            continue
        c = (coeffs[:, i] * signs[i]).tolist()
        order = sorted(range(L_given), key=lambda l: -abs(c[l]))
        components.append({names[l]: float(c[l]) for l in order})

    par_list = [float(x) for x in par]
    recovered = n_significant == true_dim and all(p > parallel_level for p in par_list[:true_dim])

    # ---- report
    lines = [
        f"Symmetry analysis: K = {K} learned generators on M = {M} (D = {D} entries each)",
        f"significant directions: {n_significant} (lambda > {threshold:g} and singular value "
        f"> {min_norm:g})",
    ]
    if L_given:
        verdict = "recovered" if recovered else "NOT recovered"
        lines.append(
            f"ground truth: L = {true_dim} ({', '.join(names)}); {verdict} "
            f"(needs {true_dim} significant with parallelness > {parallel_level:g})"
        )
    else:
        lines.append("ground truth: none given (L = 0); parallelness not measured")
    norms_text = ", ".join(_fmt(float(x)) for x in generator_norms) or "none (K = 0)"
    lines.append(f"learned generator norms: {norms_text}")
    j = 0
    for i in range(r):
        head = f"v{i + 1} (lambda={_fmt(float(lam[i]))}, |.|={_fmt(float(S[i]))}"
        head += f", parallel {par_list[i]:.3f})" if L_given else ")"
        if bool(significant[i]):
            body = _combination(components[j]) if components[j] else "significant"
            j += 1
            lines.append(f"{head} ≈ {body}")
        else:
            lines.append(f"{head} inactive")

    return SymmetryAnalysis(
        singular_values=[float(x) for x in lam],
        absolute_singular_values=[float(x) for x in S],
        generator_norms=[float(x) for x in generator_norms],
        n_significant=n_significant,
        threshold=threshold,
        min_norm=min_norm,
        parallelness=par_list,
        true_dim=true_dim,
        components=components,
        report="\n".join(lines),
        recovered=bool(recovered),
        parallel_level=parallel_level,
        right_singular_vectors=V.tolist(),
        phase_dim=M,
        true_names=names,
    )


# ---------------------------------------------------------------------------- conservation


def conservation_drift(
    trajectories: torch.Tensor,
    quantities: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
) -> dict[str, torch.Tensor]:
    r"""Mean absolute drift ``|C(x_t) - C(x_0)|`` of each quantity along rollouts.

    .. math:: \mathrm{drift}_C(t) = \frac{1}{T} \sum_{j=1}^{T} |C(x_j(t)) - C(x_j(0))|

    Pass e.g. ``{"H": system.H, **{c.name: c for c in system.conserved_quantities}}``; the
    result feeds :func:`pyro_razor.plotting.plot_conservation_drift`.

    Args:
        trajectories: ``(T, P, M)`` (``T`` rollouts of ``P`` points) or ``(P, M)``.
        quantities: name to function ``(..., M) -> (...)``.

    Returns:
        name to ``(P,)`` drift, in the dtype and on the device of ``trajectories``.
    """
    x = _check_tensor(trajectories, "conservation_drift: trajectories")
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[1] < 1:
        raise ValueError(
            "conservation_drift: trajectories must have shape (T, P, M) or (P, M), got "
            f"{tuple(trajectories.shape)}"
        )
    if not isinstance(quantities, Mapping) or not quantities:
        raise ValueError("conservation_drift: quantities must be a non-empty dict name -> C(x)")
    out = {}
    with torch.no_grad():
        for name, C in quantities.items():
            if not callable(C):
                raise TypeError(f"conservation_drift: quantity {name!r} is not callable")
            values = C(x)
            if not isinstance(values, torch.Tensor) or values.shape != x.shape[:-1]:
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values)
                raise ValueError(
                    f"conservation_drift: quantity {name!r} must map (T, P, M) to (T, P) = "
                    f"{tuple(x.shape[:-1])}, got {got}"
                )
            out[name] = (values - values[:, :1]).abs().mean(dim=0)
    return out
