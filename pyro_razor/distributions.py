r"""The matrix-normal distribution and its closed-form KL divergences (paper appendix D).

The variational posterior over one layer's weights ``[W_l b_l] in R^{n x p}`` (``n`` outputs,
``p = in + 1`` inputs plus bias) is a matrix normal (paper eq. 15-16)

.. math::

    X \sim \mathcal{MN}(M, S, A)
    \iff \operatorname{vec}(X) \sim \mathcal{N}(\operatorname{vec} M,\; A \otimes S),

with ``vec`` the column-major (column-stacking) vectorisation, ``S = L_S L_S^T`` the ``n x n``
row (output) covariance and ``A = L_A L_A^T`` the ``p x p`` column (input) covariance. The
paper writes the same covariance as ``S ⊗ A`` for the row-major vectorisation. The full
``np x np`` covariance is never formed (except by :meth:`MatrixNormal.covariance_kron`, a helper
for tests and debugging): every quantity below uses the two Cholesky factors only.

Useful identities (``D = n p``):

- ``log|A ⊗ S| = p log|S| + n log|A|``, ``log|S| = 2 sum_i log (L_S)_ii``;
- ``tr(A ⊗ S) = tr(S) tr(A) = ||L_S||_F^2 ||L_A||_F^2``;
- ``vec(X)^T (A ⊗ S)^{-1} vec(X) = tr(A^{-1} X^T S^{-1} X) = ||L_S^{-1} X L_A^{-T}||_F^2``;
- ``Var(X_ij) = S_ii A_jj``.

Registered KL divergences (:func:`torch.distributions.kl.register_kl`, used by
:func:`torch.distributions.kl_divergence` and hence by
:class:`pyro.infer.TraceMeanField_ELBO`):

- ``KL(MatrixNormal || Independent(Normal, 2))`` — the model's elementwise Gaussian prior
  ``Normal(loc, scale).expand((n, p)).to_event(2)``;
- ``KL(MatrixNormal || MatrixNormal)``.

Empirical-Bayes helpers (appendix D.3-D.4): :func:`kl_minimising_variance` (eq. 17) and
:func:`kl_at_optimal_variance` (eq. 18).
"""

from __future__ import annotations

import math

import pyro.distributions as pyro_dist
import torch
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl

__all__ = [
    "MatrixNormal",
    "kl_at_optimal_variance",
    "kl_minimising_variance",
]


def _log_diag_sum(scale_tril: torch.Tensor) -> torch.Tensor:
    """``sum_i log L_ii`` of a ``(..., k, k)`` Cholesky factor, shape ``(...)``; equals
    ``0.5 log|L L^T|``."""
    return scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _row_sq_norms(scale_tril: torch.Tensor) -> torch.Tensor:
    """Diagonal of ``L L^T``: squared row norms of a ``(..., k, k)`` factor, shape ``(..., k)``."""
    return scale_tril.pow(2).sum(-1)


def _sq_frobenius(x: torch.Tensor) -> torch.Tensor:
    """``||x||_F^2`` over the last two dims of ``(..., a, b)``, shape ``(...)``."""
    return x.pow(2).sum((-2, -1))


def _cholesky_problem(factor: torch.Tensor) -> str | None:
    """What keeps a ``(..., k, k)`` tensor from being a Cholesky factor (lower-triangular,
    finite, positive diagonal), in words, or ``None``."""
    if not bool(torch.isfinite(factor).all()):
        return f"{int((~torch.isfinite(factor)).sum())} NaN/inf entries"
    upper = factor.triu(1).abs()
    if bool((upper > 0).any()):
        return f"nonzero entries above the diagonal (largest |entry| {float(upper.max()):.3g})"
    diagonal = factor.diagonal(dim1=-2, dim2=-1)
    if bool((diagonal <= 0).any()):
        return f"a diagonal entry {float(diagonal.min()):.3g} <= 0"
    return None


class MatrixNormal(pyro_dist.TorchDistribution):
    r"""Matrix-normal distribution ``MN(M, S, A)`` over ``n x p`` matrices (paper eq. 16).

    .. math::

        \operatorname{vec}(X) \sim \mathcal{N}(\operatorname{vec} M, A \otimes S),
        \qquad S = L_S L_S^T \;(n \times n),\quad A = L_A L_A^T \;(p \times p),

    with column-major ``vec``. Equivalently ``X = M + L_S E L_A^T`` with ``E`` an ``n x p``
    matrix of independent standard normals, which is how :meth:`rsample` draws
    (reparameterised).

    Args:
        loc: mean ``M``, shape ``(..., n, p)``.
        scale_tril_row: ``L_S``, lower-triangular with positive diagonal, ``(..., n, n)``;
            the row (output) covariance is ``S = L_S L_S^T``.
        scale_tril_col: ``L_A``, lower-triangular with positive diagonal, ``(..., p, p)``;
            the column (input) covariance is ``A = L_A L_A^T``.
        validate_args: check the constraints (``lower_cholesky`` factors, finite ``loc``).

    ``batch_shape`` is the broadcast of the three leading shapes, ``event_shape = (n, p)``.
    Note that ``MN(M, c S, A / c)`` is the same distribution for any ``c > 0``.

    Raises:
        TypeError: if an argument is not a tensor or the dtypes/devices differ.
        ValueError: if the shapes are inconsistent, or (when validating) ``loc`` is not finite
            or a factor is not lower-triangular with a positive diagonal; the message names
            the argument, what it must be and what it is.
    """

    arg_constraints = {
        "loc": constraints.independent(constraints.real, 2),
        "scale_tril_row": constraints.lower_cholesky,
        "scale_tril_col": constraints.lower_cholesky,
    }
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale_tril_row: torch.Tensor,
        scale_tril_col: torch.Tensor,
        validate_args: bool | None = None,
    ) -> None:
        for name, arg in (
            ("loc", loc),
            ("scale_tril_row", scale_tril_row),
            ("scale_tril_col", scale_tril_col),
        ):
            if not isinstance(arg, torch.Tensor):
                raise TypeError(
                    f"MatrixNormal: {name} must be a torch.Tensor, got {type(arg).__name__}"
                )
        if scale_tril_row.dtype != loc.dtype or scale_tril_col.dtype != loc.dtype:
            raise TypeError(
                "MatrixNormal: loc, scale_tril_row and scale_tril_col must share one dtype, got "
                f"{loc.dtype}, {scale_tril_row.dtype}, {scale_tril_col.dtype}"
            )
        if scale_tril_row.device != loc.device or scale_tril_col.device != loc.device:
            raise TypeError(
                "MatrixNormal: loc, scale_tril_row and scale_tril_col must be on one device, got "
                f"{loc.device}, {scale_tril_row.device}, {scale_tril_col.device}"
            )
        batch_shape, event_shape = self._check_shapes(
            loc.shape, scale_tril_row.shape, scale_tril_col.shape
        )
        n, p = event_shape
        validate = type(self)._validate_args if validate_args is None else validate_args
        if validate:
            self._check_values(loc, scale_tril_row, scale_tril_col)
        self.loc = loc.expand(batch_shape + event_shape)
        self.scale_tril_row = scale_tril_row.expand(batch_shape + (n, n))
        self.scale_tril_col = scale_tril_col.expand(batch_shape + (p, p))
        # Keep the un-broadcast factors: log-determinants, traces and solves then run once per
        # distinct factor rather than once per (e.g. particle-)batch element.
        self._unbroadcasted_scale_tril_row = scale_tril_row
        self._unbroadcasted_scale_tril_col = scale_tril_col
        super().__init__(batch_shape, event_shape, validate_args=False)  # checked above
        self._validate_args = bool(validate)

    @staticmethod
    def _check_values(loc: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> None:
        """The constraints of the arguments, with messages naming the argument, what it must
        be and what it is (``ValueError``)."""
        if not bool(torch.isfinite(loc).all()):
            bad = int((~torch.isfinite(loc)).sum())
            raise ValueError(
                f"MatrixNormal: loc must be finite, got {bad} NaN/inf entries of "
                f"{loc.numel()} (shape {tuple(loc.shape)})"
            )
        for name, factor in (("scale_tril_row", row), ("scale_tril_col", col)):
            problem = _cholesky_problem(factor)
            if problem is not None:
                k = factor.shape[-1]
                raise ValueError(
                    f"MatrixNormal: {name} must be a lower-triangular ({k}, {k}) Cholesky factor "
                    f"with a positive diagonal (constraint LowerCholesky), got {problem} "
                    f"(shape {tuple(factor.shape)})"
                )

    @staticmethod
    def _check_shapes(
        loc_shape: torch.Size, row_shape: torch.Size, col_shape: torch.Size
    ) -> tuple[torch.Size, torch.Size]:
        """Validate the argument shapes; return ``(batch_shape, event_shape)``."""
        if len(loc_shape) < 2:
            raise ValueError(
                f"MatrixNormal: loc must have shape (..., n, p) with at least 2 dims, got "
                f"{tuple(loc_shape)}"
            )
        n, p = loc_shape[-2], loc_shape[-1]
        if len(row_shape) < 2 or tuple(row_shape[-2:]) != (n, n):
            raise ValueError(
                f"MatrixNormal: scale_tril_row must have shape (..., n, n) = (..., {n}, {n}) "
                f"to match loc of shape {tuple(loc_shape)}, got {tuple(row_shape)}"
            )
        if len(col_shape) < 2 or tuple(col_shape[-2:]) != (p, p):
            raise ValueError(
                f"MatrixNormal: scale_tril_col must have shape (..., p, p) = (..., {p}, {p}) "
                f"to match loc of shape {tuple(loc_shape)}, got {tuple(col_shape)}"
            )
        try:
            batch_shape = torch.broadcast_shapes(loc_shape[:-2], row_shape[:-2], col_shape[:-2])
        except RuntimeError as err:
            raise ValueError(
                "MatrixNormal: the batch shapes of loc "
                f"{tuple(loc_shape[:-2])}, scale_tril_row {tuple(row_shape[:-2])} and "
                f"scale_tril_col {tuple(col_shape[:-2])} do not broadcast"
            ) from err
        return torch.Size(batch_shape), torch.Size((n, p))

    @classmethod
    def infer_shapes(
        cls, loc: tuple, scale_tril_row: tuple, scale_tril_col: tuple
    ) -> tuple[torch.Size, torch.Size]:
        """``(batch_shape, event_shape)`` of a ``MatrixNormal`` built from arguments of these
        shapes (Pyro's shape-inference hook)."""
        return cls._check_shapes(
            torch.Size(loc), torch.Size(scale_tril_row), torch.Size(scale_tril_col)
        )

    def expand(self, batch_shape, _instance=None) -> MatrixNormal:
        """A view of this distribution with batch shape ``batch_shape`` (broadcasting, as Pyro's
        plates do, e.g. ``()`` or ``(1, 1)`` to ``(P, 1, 1)``)."""
        new = self._get_checked_instance(MatrixNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        n, p = self.event_shape
        try:
            new.loc = self.loc.expand(batch_shape + self.event_shape)
            new.scale_tril_row = self.scale_tril_row.expand(batch_shape + (n, n))
            new.scale_tril_col = self.scale_tril_col.expand(batch_shape + (p, p))
        except RuntimeError as err:
            raise ValueError(
                f"MatrixNormal.expand: cannot expand batch shape {tuple(self.batch_shape)} to "
                f"{tuple(batch_shape)}"
            ) from err
        new._unbroadcasted_scale_tril_row = self._unbroadcasted_scale_tril_row
        new._unbroadcasted_scale_tril_col = self._unbroadcasted_scale_tril_col
        super(MatrixNormal, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ------------------------------------------------------------------ moments
    @property
    def mean(self) -> torch.Tensor:
        """``M``, shape ``batch_shape + (n, p)``."""
        return self.loc

    @property
    def mode(self) -> torch.Tensor:
        """``M``, shape ``batch_shape + (n, p)``."""
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        """Elementwise variance ``Var(X_ij) = S_ii A_jj``, shape ``batch_shape + (n, p)``."""
        s_diag = _row_sq_norms(self._unbroadcasted_scale_tril_row)
        a_diag = _row_sq_norms(self._unbroadcasted_scale_tril_col)
        var = s_diag.unsqueeze(-1) * a_diag.unsqueeze(-2)
        return var.expand(self.batch_shape + self.event_shape)

    def covariance_kron(self) -> torch.Tensor:
        """Full covariance ``A ⊗ S`` of column-major ``vec(X)``, shape ``batch_shape + (np, np)``.

        Entry ``[j n + i, l n + k] = A_jl S_ik = Cov(X_ij, X_kl)``. Memory ``O(n^2 p^2)``: for
        tests and debugging only.
        """
        n, p = self.event_shape
        S = self._unbroadcasted_scale_tril_row @ self._unbroadcasted_scale_tril_row.mT
        A = self._unbroadcasted_scale_tril_col @ self._unbroadcasted_scale_tril_col.mT
        batch = torch.broadcast_shapes(S.shape[:-2], A.shape[:-2])
        cov = torch.einsum("...jl,...ik->...jilk", A, S).reshape(batch + (n * p, n * p))
        return cov.expand(self.batch_shape + (n * p, n * p))

    def second_moment(self) -> torch.Tensor:
        r"""``E ||X||_F^2 = tr(S) tr(A) + ||M||_F^2``, shape ``batch_shape``.

        This is ``Tr(Σ_q) + ||m||^2`` of appendix D.3 for ``Σ_q = A ⊗ S``, with
        ``tr(S) = ||L_S||_F^2`` and ``tr(A) = ||L_A||_F^2``.
        """
        tr_s = _sq_frobenius(self._unbroadcasted_scale_tril_row)
        tr_a = _sq_frobenius(self._unbroadcasted_scale_tril_col)
        return (tr_s * tr_a + _sq_frobenius(self.loc)).expand(self.batch_shape)

    def _half_log_det(self) -> torch.Tensor:
        """``0.5 log|A ⊗ S| = p sum log (L_S)_ii + n sum log (L_A)_jj``; un-broadcast batch."""
        n, p = self.event_shape
        return p * _log_diag_sum(self._unbroadcasted_scale_tril_row) + n * _log_diag_sum(
            self._unbroadcasted_scale_tril_col
        )

    # ------------------------------------------------------------ sample/density
    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Reparameterised draw ``X = M + L_S E L_A^T``, ``E_ij ~ N(0, 1)`` i.i.d.

        Returns shape ``sample_shape + batch_shape + (n, p)``; cost ``O(n^2 p + n p^2)`` per draw.
        """
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        noise = self._unbroadcasted_scale_tril_row @ eps @ self._unbroadcasted_scale_tril_col.mT
        return self.loc + noise

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r"""Log density, shape ``broadcast(sample_shape + batch_shape)``.

        .. math::

            \log p(X) = -\tfrac12\big[np\log 2\pi + p\log|S| + n\log|A|
                + \operatorname{tr}(A^{-1}(X-M)^T S^{-1}(X-M))\big],

        the trace computed as ``||L_S^{-1} (X - M) L_A^{-T}||_F^2`` by two triangular solves.

        Args:
            value: ``(..., n, p)`` matrices, broadcastable with ``batch_shape``.

        Raises:
            ValueError: ``value`` is not ``(..., n, p)`` (e.g. transposed) or its leading
                dims do not broadcast; the message gives the expected and the actual shape.
        """
        n, p = self.event_shape
        self._check_value_shape(value)
        if self._validate_args:
            self._validate_sample(value)
        diff = value - self.loc
        # Y = L_S^{-1} (X - M)                         (..., n, p)
        y = torch.linalg.solve_triangular(self._unbroadcasted_scale_tril_row, diff, upper=False)
        # Z^T = L_A^{-1} Y^T, i.e. Z = L_S^{-1} (X - M) L_A^{-T}   (..., p, n)
        z_t = torch.linalg.solve_triangular(self._unbroadcasted_scale_tril_col, y.mT, upper=False)
        maha = _sq_frobenius(z_t)
        return -0.5 * (n * p * math.log(2 * math.pi) + maha) - self._half_log_det()

    def _check_value_shape(self, value: torch.Tensor) -> None:
        """``ValueError`` naming the expected and actual shape unless ``value`` is
        ``(..., n, p)`` with leading dims that broadcast against ``batch_shape``."""
        n, p = self.event_shape
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"MatrixNormal.log_prob: value must be a torch.Tensor, got {type(value).__name__}"
            )
        shape = tuple(value.shape)
        if len(shape) < 2 or shape[-2:] != (n, p):
            hint = " (transposed? a value is (n, p) = (outputs, inputs + 1))" if (
                shape[-2:] == (p, n)) else ""
            raise ValueError(
                f"MatrixNormal.log_prob: value must have shape (..., n, p) = (..., {n}, {p}), "
                f"got {shape}{hint}"
            )
        try:
            torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        except RuntimeError:
            raise ValueError(
                f"MatrixNormal.log_prob: the leading dims {shape[:-2]} of value (shape {shape}) "
                f"do not broadcast against the batch shape {tuple(self.batch_shape)}"
            ) from None

    def entropy(self) -> torch.Tensor:
        r"""Differential entropy ``0.5 [np (1 + log 2π) + p log|S| + n log|A|]``.

        Returns shape ``batch_shape``.
        """
        n, p = self.event_shape
        h = 0.5 * n * p * (1.0 + math.log(2 * math.pi)) + self._half_log_det()
        return h.expand(self.batch_shape)


# ---------------------------------------------------------------------------- KL divergences
def _independent_normal_params(
    prior: torch.distributions.Independent, event_shape: torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(loc, scale)`` of an ``Independent(Normal, 2)`` prior, each shaped
    ``prior.batch_shape + (n, p)``; raise ``NotImplementedError`` for other structures."""
    ndims = 0
    base = prior
    while isinstance(base, torch.distributions.Independent):  # flatten nested to_event(...)
        ndims += base.reinterpreted_batch_ndims
        base = base.base_dist
    if ndims != 2:
        raise NotImplementedError(
            "KL(MatrixNormal || Independent) is implemented only for an Independent that "
            f"reinterprets exactly 2 batch dims (an (n, p) event); got {ndims}. Declare the prior "
            "as Normal(loc, scale).expand((n, p)).to_event(2)"
        )
    inner = base
    while isinstance(inner, ExpandedDistribution):
        inner = inner.base_dist
    if not isinstance(inner, torch.distributions.Normal):
        raise NotImplementedError(
            "KL(MatrixNormal || Independent) needs a Normal base distribution, got "
            f"{type(inner).__name__}"
        )
    if tuple(prior.event_shape) != tuple(event_shape):
        raise ValueError(
            f"KL(MatrixNormal || Independent(Normal)): event shapes differ, {tuple(event_shape)} "
            f"vs {tuple(prior.event_shape)}"
        )
    full = base.batch_shape  # == prior.batch_shape + (n, p)
    return base.mean.expand(full), base.stddev.expand(full)


def _kl_matrixnormal_independent_normal(
    q: MatrixNormal, prior: torch.distributions.Independent
) -> torch.Tensor:
    r"""``KL(MN(M, S, A) || prod_ij N(mu_ij, v_ij))`` in closed form, ``v = scale^2``.

    .. math::

        \mathrm{KL} = \tfrac12\Big[\sum_{ij}\frac{S_{ii}A_{jj} + (M_{ij}-\mu_{ij})^2}{v_{ij}}
            - np + \sum_{ij}\log v_{ij} - p\log|S| - n\log|A|\Big].

    Shape: ``broadcast(q.batch_shape, prior.batch_shape)``.
    """
    mu, scale = _independent_normal_params(prior, q.event_shape)
    n, p = q.event_shape
    batch = torch.broadcast_shapes(q.batch_shape, prior.batch_shape)
    s_diag = _row_sq_norms(q._unbroadcasted_scale_tril_row)
    a_diag = _row_sq_norms(q._unbroadcasted_scale_tril_col)
    q_var = s_diag.unsqueeze(-1) * a_diag.unsqueeze(-2)
    log_v = 2.0 * scale.log()
    quad = ((q_var + (q.loc - mu).pow(2)) * torch.exp(-log_v)).sum((-2, -1))
    kl = 0.5 * (quad - n * p + log_v.sum((-2, -1))) - q._half_log_det()
    return kl.expand(batch)


@register_kl(MatrixNormal, torch.distributions.Independent)
def _kl_mn_torch_independent(q: MatrixNormal, prior: torch.distributions.Independent):
    return _kl_matrixnormal_independent_normal(q, prior)


@register_kl(MatrixNormal, pyro_dist.Independent)
def _kl_mn_pyro_independent(q: MatrixNormal, prior: pyro_dist.Independent):
    return _kl_matrixnormal_independent_normal(q, prior)


@register_kl(MatrixNormal, MatrixNormal)
def _kl_matrixnormal_matrixnormal(q: MatrixNormal, r: MatrixNormal) -> torch.Tensor:
    r"""``KL(MN(M1, S1, A1) || MN(M2, S2, A2))`` in closed form.

    .. math::

        \mathrm{KL} = \tfrac12\Big[\operatorname{tr}(S_2^{-1}S_1)\operatorname{tr}(A_2^{-1}A_1)
            + \operatorname{tr}(A_2^{-1}\Delta^T S_2^{-1}\Delta) - np
            + \log\frac{|A_2 \otimes S_2|}{|A_1 \otimes S_1|}\Big],\quad \Delta = M_2 - M_1,

    with ``tr(S2^{-1} S1) = ||L_{S2}^{-1} L_{S1}||_F^2`` (same for ``A``). Shape:
    ``broadcast(q.batch_shape, r.batch_shape)``.
    """
    if q.event_shape != r.event_shape:
        raise ValueError(
            f"KL(MatrixNormal || MatrixNormal): event shapes differ, {tuple(q.event_shape)} vs "
            f"{tuple(r.event_shape)}"
        )
    n, p = q.event_shape
    batch = torch.broadcast_shapes(q.batch_shape, r.batch_shape)
    ls1, la1 = q._unbroadcasted_scale_tril_row, q._unbroadcasted_scale_tril_col
    ls2, la2 = r._unbroadcasted_scale_tril_row, r._unbroadcasted_scale_tril_col
    tr_s = _sq_frobenius(torch.linalg.solve_triangular(ls2, ls1, upper=False))
    tr_a = _sq_frobenius(torch.linalg.solve_triangular(la2, la1, upper=False))
    y = torch.linalg.solve_triangular(ls2, r.loc - q.loc, upper=False)
    maha = _sq_frobenius(torch.linalg.solve_triangular(la2, y.mT, upper=False))
    kl = 0.5 * (tr_s * tr_a + maha - n * p) + r._half_log_det() - q._half_log_det()
    return kl.expand(batch)


# ------------------------------------------------------------------ empirical Bayes (D.3-D.4)
def kl_minimising_variance(q: MatrixNormal) -> torch.Tensor:
    r"""Prior variance ``v*`` minimising ``KL(q || N(0, v I))`` (paper eq. 17).

    .. math:: v^* = \frac{\operatorname{Tr}\Sigma_q + \|m\|^2}{D}
        = \frac{\operatorname{tr}S\,\operatorname{tr}A + \|M\|_F^2}{np}.

    Args:
        q: a :class:`MatrixNormal` with ``event_shape = (n, p)``.

    Returns:
        ``v*``, shape ``q.batch_shape``.
    """
    if not isinstance(q, MatrixNormal):
        raise TypeError(f"kl_minimising_variance expects a MatrixNormal, got {type(q).__name__}")
    n, p = q.event_shape
    return q.second_moment() / (n * p)


def kl_at_optimal_variance(q: MatrixNormal) -> torch.Tensor:
    r"""``KL(q || N(0, v* I))`` at the KL-minimising variance of eq. 17 (paper eq. 18).

    .. math:: \mathrm{KL} = \tfrac12\big[D\log(\operatorname{tr}S\,\operatorname{tr}A
        + \|M\|_F^2) - D\log D - \log|A \otimes S|\big],\qquad D = np,

    with ``log|A ⊗ S| = 2 p sum_i log (L_S)_ii + 2 n sum_j log (L_A)_jj``. It measures only the
    relative volume of prior and posterior.

    Args:
        q: a :class:`MatrixNormal` with ``event_shape = (n, p)``.

    Returns:
        the KL, shape ``q.batch_shape``.
    """
    if not isinstance(q, MatrixNormal):
        raise TypeError(f"kl_at_optimal_variance expects a MatrixNormal, got {type(q).__name__}")
    n, p = q.event_shape
    D = n * p
    kl = 0.5 * (D * q.second_moment().log() - D * math.log(D)) - q._half_log_det()
    return kl.expand(q.batch_shape)
