"""Tests for ``pyro_razor.distributions``: MatrixNormal and its closed-form KLs (appendix D)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.torch_distribution import ExpandedDistribution
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import MultivariateNormal, kl_divergence

from pyro_razor.distributions import (
    MatrixNormal,
    kl_at_optimal_variance,
    kl_minimising_variance,
)

DT = torch.float64


def _chol(*shape: int, gen: torch.Generator, k: int) -> torch.Tensor:
    """Random lower-Cholesky factors of shape ``shape + (k, k)`` (diagonal in [0.4, 1.4])."""
    L = torch.randn(*shape, k, k, generator=gen, dtype=DT).tril(-1) * 0.5
    diag = 0.4 + torch.rand(*shape, k, generator=gen, dtype=DT)
    return L + torch.diag_embed(diag)


def _random_mn(n: int, p: int, batch=(), seed: int = 0) -> MatrixNormal:
    gen = torch.Generator().manual_seed(seed)
    loc = torch.randn(*batch, n, p, generator=gen, dtype=DT)
    return MatrixNormal(loc, _chol(*batch, gen=gen, k=n), _chol(*batch, gen=gen, k=p))


def _vec(x: torch.Tensor) -> torch.Tensor:
    """Column-major vec of ``(..., n, p)`` -> ``(..., n p)``."""
    return x.mT.reshape(*x.shape[:-2], -1)


def _as_mvn(q: MatrixNormal) -> MultivariateNormal:
    return MultivariateNormal(_vec(q.loc), covariance_matrix=q.covariance_kron())


SHAPES = [(1, 1), (2, 3), (4, 2), (3, 5)]


# --------------------------------------------------------------------------- construction
def test_shapes_and_attributes():
    gen = torch.Generator().manual_seed(1)
    loc = torch.randn(5, 1, 3, 2, dtype=DT, generator=gen)
    q = MatrixNormal(loc, _chol(4, gen=gen, k=3), _chol(gen=gen, k=2))
    assert q.batch_shape == (5, 4) and q.event_shape == (3, 2)
    assert q.has_rsample
    assert q.mean.shape == (5, 4, 3, 2)
    torch.testing.assert_close(q.mean, loc.expand(5, 4, 3, 2), rtol=0, atol=0)
    # elementwise variance equals the diagonal of A ⊗ S (column-major)
    var_kron = q.covariance_kron().diagonal(dim1=-2, dim2=-1)
    torch.testing.assert_close(_vec(q.variance), var_kron, rtol=1e-12, atol=0)
    bs, es = MatrixNormal.infer_shapes(
        loc=(5, 1, 3, 2), scale_tril_row=(4, 3, 3), scale_tril_col=(2, 2)
    )
    assert bs == (5, 4) and es == (3, 2)


def test_covariance_kron_entries():
    """Entry [j n + i, l n + k] of A ⊗ S is Cov(X_ij, X_kl) = A_jl S_ik."""
    q = _random_mn(3, 2, seed=2)
    S = q.scale_tril_row @ q.scale_tril_row.mT
    A = q.scale_tril_col @ q.scale_tril_col.mT
    torch.testing.assert_close(q.covariance_kron(), torch.kron(A, S), rtol=1e-14, atol=0)


# ------------------------------------------------------------------ density and entropy
@pytest.mark.parametrize("n,p", SHAPES)
@pytest.mark.parametrize("batch", [(), (3,), (2, 1)])
def test_log_prob_and_entropy_match_mvn(n, p, batch):
    q = _random_mn(n, p, batch, seed=10 * n + p)
    mvn = _as_mvn(q)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, *q.batch_shape, n, p, generator=gen, dtype=DT) * 2.0
    lp = q.log_prob(x)
    assert lp.shape == (4, *q.batch_shape)
    torch.testing.assert_close(lp, mvn.log_prob(_vec(x)), rtol=1e-8, atol=0)
    torch.testing.assert_close(q.entropy(), mvn.entropy(), rtol=1e-8, atol=0)
    assert q.entropy().shape == q.batch_shape


def test_log_prob_broadcasts_value_against_batch():
    q = _random_mn(2, 3, (4,), seed=4)
    x = torch.zeros(2, 3, dtype=DT)  # no batch dims: broadcast against batch (4,)
    torch.testing.assert_close(q.log_prob(x), _as_mvn(q).log_prob(_vec(x)), rtol=1e-8, atol=0)


# ----------------------------------------------------------------------------- sampling
def test_rsample_moments_monte_carlo():
    """200k draws: mean within 5 standard errors, covariance within 5 SE of A ⊗ S entrywise,
    the SE of an empirical covariance entry being sqrt((Σ_aa Σ_bb + Σ_ab^2) / N)."""
    torch.manual_seed(0)
    q = _random_mn(2, 3, seed=5)
    N = 200_000
    x = q.rsample((N,))
    assert x.shape == (N, 2, 3)
    v = _vec(x)
    cov = q.covariance_kron()
    mean_se = (cov.diagonal() / N).sqrt()
    assert ((v.mean(0) - _vec(q.loc)).abs() < 5 * mean_se).all()
    emp = torch.cov(v.T)
    var = cov.diagonal()
    cov_se = ((var[:, None] * var[None, :] + cov**2) / N).sqrt()
    assert ((emp - cov).abs() < 5 * cov_se).all()


def test_rsample_shapes_with_batch_and_sample():
    q = _random_mn(3, 2, (4, 1), seed=6)
    assert q.rsample().shape == (4, 1, 3, 2)
    assert q.rsample((7,)).shape == (7, 4, 1, 3, 2)
    assert q.sample((2, 5)).shape == (2, 5, 4, 1, 3, 2)


def test_rsample_gradients_reach_all_parameters():
    q0 = _random_mn(3, 4, seed=7)
    loc = q0.loc.clone().requires_grad_()
    ls = q0.scale_tril_row.clone().requires_grad_()
    la = q0.scale_tril_col.clone().requires_grad_()
    torch.manual_seed(1)
    x = MatrixNormal(loc, ls, la).rsample((16,))
    (x**2).sum().backward()
    for g in (loc.grad, ls.grad, la.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # the loc gradient of sum(X^2) is 2 sum_s X_s exactly
    torch.testing.assert_close(loc.grad, 2 * x.detach().sum(0), rtol=1e-12, atol=1e-12)


def test_second_moment_monte_carlo_and_formula():
    q = _random_mn(3, 2, (2,), seed=8)
    exact = q.covariance_kron().diagonal(dim1=-2, dim2=-1).sum(-1) + (q.loc**2).sum((-2, -1))
    torch.testing.assert_close(q.second_moment(), exact, rtol=1e-12, atol=0)
    torch.manual_seed(2)
    sq = q.rsample((100_000,)).pow(2).sum((-2, -1))
    se = sq.std(0) / math.sqrt(sq.shape[0])
    assert ((sq.mean(0) - exact).abs() < 5 * se).all()


# ---------------------------------------------------------------------------------- KLs
def _prior(loc, scale, n, p, batch=()):
    return dist.Normal(loc, scale).expand(torch.Size(batch) + (n, p)).to_event(2)


@pytest.mark.parametrize("n,p", SHAPES)
def test_kl_to_isotropic_normal_matches_mvn(n, p):
    q = _random_mn(n, p, seed=n * p)
    s = 0.7
    prior = _prior(torch.tensor(0.0, dtype=DT), torch.tensor(s, dtype=DT), n, p)
    kl = kl_divergence(q, prior)
    ref = kl_divergence(
        _as_mvn(q),
        MultivariateNormal(torch.zeros(n * p, dtype=DT), s**2 * torch.eye(n * p, dtype=DT)),
    )
    assert kl.shape == ()
    torch.testing.assert_close(kl, ref, rtol=1e-8, atol=0)


def test_kl_to_elementwise_normal_matches_mvn_with_batch():
    n, p = 3, 4
    q = _random_mn(n, p, (2, 1), seed=11)
    gen = torch.Generator().manual_seed(12)
    mu = torch.randn(5, n, p, generator=gen, dtype=DT)
    scale = 0.3 + torch.rand(5, n, p, generator=gen, dtype=DT)
    prior = dist.Normal(mu, scale).to_event(2)
    kl = kl_divergence(q, prior)
    assert kl.shape == (2, 5)
    ref = kl_divergence(
        _as_mvn(q), MultivariateNormal(_vec(mu), torch.diag_embed(_vec(scale) ** 2))
    )
    torch.testing.assert_close(kl, ref, rtol=1e-8, atol=0)
    # torch's own Independent (not Pyro's subclass) dispatches the same closed form
    tprior = torch.distributions.Independent(torch.distributions.Normal(mu, scale), 2)
    torch.testing.assert_close(kl_divergence(q, tprior), kl, rtol=1e-14, atol=0)


def test_kl_to_normal_monte_carlo():
    """Closed form vs E_q[log q - log p] within 4 standard errors (200k draws)."""
    n, p = 2, 3
    q = _random_mn(n, p, seed=13)
    gen = torch.Generator().manual_seed(14)
    mu = 0.5 * torch.randn(n, p, generator=gen, dtype=DT)
    scale = 0.5 + torch.rand(n, p, generator=gen, dtype=DT)
    prior = dist.Normal(mu, scale).to_event(2)
    torch.manual_seed(3)
    x = q.sample((200_000,))
    ratio = q.log_prob(x) - prior.log_prob(x)
    se = ratio.std() / math.sqrt(ratio.numel())
    assert (ratio.mean() - kl_divergence(q, prior)).abs() < 4 * se


def test_kl_matrixnormal_matrixnormal_matches_mvn():
    for (n, p), batch_q, batch_r in [((2, 3), (), ()), ((3, 2), (4,), (1,)), ((1, 4), (), (3,))]:
        q = _random_mn(n, p, batch_q, seed=20 + n)
        r = _random_mn(n, p, batch_r, seed=40 + p)
        kl = kl_divergence(q, r)
        assert kl.shape == torch.broadcast_shapes(batch_q, batch_r)
        ref = kl_divergence(_as_mvn(q), _as_mvn(r))
        torch.testing.assert_close(kl, ref, rtol=1e-8, atol=1e-12)
    q = _random_mn(2, 3, seed=1)
    torch.testing.assert_close(kl_divergence(q, q), torch.tensor(0.0, dtype=DT), rtol=0, atol=1e-12)


def test_kl_unsupported_prior_structures():
    q = _random_mn(2, 3, seed=15)
    one = torch.tensor(1.0, dtype=DT)
    with pytest.raises(NotImplementedError, match="exactly 2 batch dims"):
        kl_divergence(q.expand((4,)), dist.Normal(0 * one, one).expand((4, 2, 3)).to_event(3))
    with pytest.raises(NotImplementedError, match="Normal base"):
        kl_divergence(q, dist.Laplace(0 * one, one).expand((2, 3)).to_event(2))
    with pytest.raises(ValueError, match=r"event shapes differ, \(2, 3\) vs \(3, 2\)"):
        kl_divergence(q, _prior(0 * one, one, 3, 2))
    with pytest.raises(ValueError, match="event shapes differ"):
        kl_divergence(q, _random_mn(3, 2))


def test_kl_nested_or_wrapped_prior_is_unwrapped():
    q = _random_mn(2, 3, seed=16)
    one = torch.tensor(1.0, dtype=DT)
    base = torch.distributions.Normal(0 * one, one).expand((2, 3))
    nested = torch.distributions.Independent(torch.distributions.Independent(base, 1), 1)
    ref = kl_divergence(q, _prior(0 * one, one, 2, 3))
    torch.testing.assert_close(kl_divergence(q, nested), ref, rtol=1e-14, atol=0)
    # a Pyro ExpandedDistribution wrapping the Normal is unwrapped too
    wrapped = ExpandedDistribution(dist.Normal(0 * one, one), (2, 3)).to_event(2)
    torch.testing.assert_close(kl_divergence(q, wrapped), ref, rtol=1e-14, atol=0)


# --------------------------------------------------------------- empirical Bayes (D.3/D.4)
@pytest.mark.parametrize("n,p", [(2, 3), (5, 4)])
def test_optimal_variance_minimises_kl_and_eq18(n, p):
    q = _random_mn(n, p, (2,), seed=30 + n)
    v_star = kl_minimising_variance(q)
    assert v_star.shape == (2,)
    torch.testing.assert_close(v_star, q.second_moment() / (n * p), rtol=1e-14, atol=0)

    def kl_at(v):
        return kl_divergence(
            q, _prior(torch.zeros(2, 1, 1, dtype=DT), v.sqrt()[:, None, None], n, p, (2,))
        )

    kl_star = kl_at(v_star)
    torch.testing.assert_close(kl_star, kl_at_optimal_variance(q), rtol=0, atol=1e-10)
    for factor in (0.9, 0.99, 1.01, 1.1):
        assert (kl_at(v_star * factor) > kl_star).all()
    # stationarity: d KL / d v = 0 at v*
    v = v_star.clone().requires_grad_()
    (grad,) = torch.autograd.grad(kl_at(v).sum(), v)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-10)


def test_empirical_bayes_helpers_reject_other_distributions():
    with pytest.raises(TypeError, match="expects a MatrixNormal"):
        kl_minimising_variance(dist.Normal(0.0, 1.0))
    with pytest.raises(TypeError, match="expects a MatrixNormal"):
        kl_at_optimal_variance(dist.Normal(0.0, 1.0))


# ------------------------------------------------------------------------ expand / plates
def test_expand_to_particle_batch():
    n, p, P = 3, 2, 5
    q = _random_mn(n, p, seed=17)
    qe = q.expand((P, 1, 1))
    assert qe.batch_shape == (P, 1, 1)
    x = qe.rsample()
    assert x.shape == (P, 1, 1, n, p)
    lp = qe.log_prob(x)
    assert lp.shape == (P, 1, 1)
    torch.testing.assert_close(lp, q.log_prob(x), rtol=1e-14, atol=0)
    torch.testing.assert_close(qe.entropy(), q.entropy().expand(P, 1, 1), rtol=0, atol=0)
    one = torch.tensor(1.0, dtype=DT)
    prior = _prior(0 * one, one, n, p).expand((P, 1, 1))
    kl = kl_divergence(qe, prior)
    assert kl.shape == (P, 1, 1)
    torch.testing.assert_close(
        kl, kl_divergence(q, _prior(0 * one, one, n, p)).expand(P, 1, 1), rtol=1e-14, atol=0
    )
    # prior batch larger than q's: broadcast
    assert kl_divergence(q, prior).shape == (P, 1, 1)
    assert q.expand((2, 4)).covariance_kron().shape == (2, 4, n * p, n * p)
    with pytest.raises(ValueError, match=r"cannot expand batch shape \(5, 1, 1\) to \(3, 1, 1\)"):
        qe.expand((3, 1, 1))


@pytest.mark.parametrize("dim,batch", [(-1, (4,)), (-3, (4, 1, 1))])
def test_pyro_sample_inside_plate(dim, batch):
    q = _random_mn(3, 2, seed=18)

    def guide():
        with pyro.plate("particles", 4, dim=dim):
            return pyro.sample("W", q)

    tr = pyro.poutine.trace(guide).get_trace()
    site = tr.nodes["W"]
    assert site["value"].shape == (*batch, 3, 2)
    assert site["fn"].batch_shape == batch
    tr.compute_log_prob()
    torch.testing.assert_close(site["log_prob"], q.log_prob(site["value"]), rtol=1e-14, atol=0)


# ----------------------------------------------------------------------------- Pyro ELBOs
def _make_problem():
    gen = torch.Generator().manual_seed(19)
    xs = torch.randn(6, 2, dtype=DT, generator=gen)
    ys = torch.randn(6, 3, dtype=DT, generator=gen)
    sigma = 0.5

    def model():
        W = pyro.sample(
            "W",
            dist.Normal(torch.tensor(0.0, dtype=DT), torch.tensor(1.0, dtype=DT))
            .expand((3, 2))
            .to_event(2),
        )
        mean = torch.einsum("...ij,tj->...ti", W, xs)  # (..., 6, 3): a linear function of W
        pyro.sample("y", dist.Normal(mean, sigma).to_event(2), obs=ys)

    q = _random_mn(3, 2, seed=21)

    def guide():
        pyro.sample("W", MatrixNormal(q.loc, q.scale_tril_row, q.scale_tril_col))

    return model, guide, q, (xs, ys, sigma)


def test_trace_mean_field_uses_closed_form_kl():
    """Prior-only model: TraceMeanField_ELBO's loss is the closed-form KL exactly (a sampled
    fallback would be random), also with vectorised particles (batch (P,))."""
    q = _random_mn(3, 2, seed=22)
    prior = _prior(torch.tensor(0.0, dtype=DT), torch.tensor(1.0, dtype=DT), 3, 2)

    def model():
        pyro.sample("W", prior)

    def guide():
        pyro.sample("W", q)

    kl = kl_divergence(q, prior).item()
    for elbo in (
        TraceMeanField_ELBO(),
        TraceMeanField_ELBO(num_particles=7, vectorize_particles=True),
    ):
        assert elbo.loss(model, guide) == pytest.approx(kl, rel=1e-12)
    # the Trace_ELBO single-particle estimate is noisy, so it differs from the KL
    pyro.set_rng_seed(0)
    assert Trace_ELBO().loss(model, guide) != pytest.approx(kl, rel=1e-6)


def test_trace_mean_field_equals_trace_elbo_in_expectation():
    """Both ELBOs estimate the same quantity. With common random numbers (the same seed, hence
    the same 2000 vectorised weight draws, for both) the per-batch difference is
    ``KL - mean_s [log q(W_s) - log p(W_s)]``: its mean over 20 batches is within 4 standard
    errors of 0, and it is not identically 0 (a sampled fallback would give exactly 0)."""
    model, guide, _, _ = _make_problem()
    mf = TraceMeanField_ELBO(num_particles=2000, vectorize_particles=True)
    tr = Trace_ELBO(num_particles=2000, vectorize_particles=True)
    a, b = [], []
    for seed in range(20):
        pyro.set_rng_seed(seed)
        a.append(mf.loss(model, guide))
        pyro.set_rng_seed(seed)
        b.append(tr.loss(model, guide))
    a, b = torch.tensor(a, dtype=DT), torch.tensor(b, dtype=DT)
    d = a - b
    se = d.std() / math.sqrt(d.numel())
    assert d.mean().abs() < 4 * se
    assert (d.abs() > 1e-6).all()
    # the loss means also agree within 4 combined SEs (conservative: a and b are correlated)
    se_ab = (a.var() / 20 + b.var() / 20).sqrt()
    assert (a.mean() - b.mean()).abs() < 4 * se_ab


def test_elbo_at_exact_posterior_is_log_evidence():
    """Bayesian linear regression ``Y = X W^T + noise``, ``W ~ N(0, I)``: the exact posterior is
    ``MN(Y^T X Σ / σ², I, Σ)`` with ``Σ = (I + X^T X / σ²)^{-1}``, so every Trace_ELBO draw
    equals ``-log p(Y)`` (to 1e-9) and TraceMeanField_ELBO (closed-form KL) agrees within 4 SE
    over 20 x 500 particles; its gradients reach all three guide parameters."""
    model, _, _, (xs, ys, sigma) = _make_problem()
    cov = torch.linalg.inv(torch.eye(2, dtype=DT) + xs.T @ xs / sigma**2)
    loc = ys.T @ xs @ cov / sigma**2
    marg = MultivariateNormal(
        torch.zeros(6, dtype=DT), xs @ xs.T + sigma**2 * torch.eye(6, dtype=DT)
    )
    log_evidence = marg.log_prob(ys.T).sum().item()
    params = [
        loc.clone().requires_grad_(),
        torch.eye(3, dtype=DT).requires_grad_(),
        torch.linalg.cholesky(cov).requires_grad_(),
    ]

    def guide():
        pyro.sample("W", MatrixNormal(*params))

    pyro.set_rng_seed(5)
    for _ in range(3):
        assert Trace_ELBO().loss(model, guide) == pytest.approx(-log_evidence, abs=1e-9)
    mf = TraceMeanField_ELBO(num_particles=500, vectorize_particles=True)
    a = torch.tensor([mf.loss(model, guide) for _ in range(20)], dtype=DT)
    assert (a.mean() + log_evidence).abs() < 4 * a.std() / math.sqrt(20)
    mf.differentiable_loss(model, guide).backward()
    for t in params:
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- validation
def test_validation_errors():
    gen = torch.Generator().manual_seed(23)
    loc = torch.zeros(3, 2, dtype=DT)
    ls, la = _chol(gen=gen, k=3), _chol(gen=gen, k=2)
    upper = ls.mT.clone()
    with pytest.raises(ValueError, match="scale_tril_row.*LowerCholesky"):
        MatrixNormal(loc, upper, la, validate_args=True)
    neg = la.clone()
    neg[0, 0] = -1.0
    with pytest.raises(ValueError, match="scale_tril_col.*LowerCholesky"):
        MatrixNormal(loc, ls, neg, validate_args=True)
    bad_loc = loc.clone()
    bad_loc[0, 0] = float("nan")
    with pytest.raises(ValueError, match="loc"):
        MatrixNormal(bad_loc, ls, la, validate_args=True)
    with pytest.raises(ValueError, match=r"scale_tril_row must have shape .*\(3, 2\).*\(2, 2\)"):
        MatrixNormal(loc, la, la)
    with pytest.raises(ValueError, match=r"scale_tril_col must have shape .*\(3, 3\)"):
        MatrixNormal(loc, ls, ls)
    with pytest.raises(ValueError, match=r"loc must have shape \(\.\.\., n, p\).*\(3,\)"):
        MatrixNormal(torch.zeros(3, dtype=DT), ls, la)
    with pytest.raises(ValueError, match=r"batch shapes .*\(4,\).*\(5,\).*do not broadcast"):
        MatrixNormal(loc.expand(4, 3, 2), ls.expand(5, 3, 3), la)
    with pytest.raises(TypeError, match="one dtype"):
        MatrixNormal(loc.float(), ls, la)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        MatrixNormal([[0.0, 0.0]], ls, la)
    q = MatrixNormal(loc, ls, la, validate_args=True)
    with pytest.raises(ValueError):
        q.log_prob(torch.zeros(2, 3, dtype=DT))


def test_validation_messages_name_the_argument_and_what_is_wrong():
    gen = torch.Generator().manual_seed(29)
    loc = torch.zeros(3, 2, dtype=DT)
    ls, la = _chol(gen=gen, k=3), _chol(gen=gen, k=2)
    upper = ls.mT.clone()
    with pytest.raises(ValueError) as info:
        MatrixNormal(loc, upper, la, validate_args=True)
    message = str(info.value)
    assert message.startswith("MatrixNormal: scale_tril_row must be a lower-triangular (3, 3)")
    assert "got nonzero entries above the diagonal" in message and "(shape (3, 3))" in message
    assert "\n" not in message and "tensor(" not in message  # one line, no tensor dump
    zero = la.clone()
    zero[1, 1] = 0.0
    with pytest.raises(ValueError, match=r"scale_tril_col .* got a diagonal entry 0 <= 0"):
        MatrixNormal(loc, ls, zero, validate_args=True)
    MatrixNormal(loc, upper, la, validate_args=False)  # unchecked when validation is off
    for validate in (True, False):
        q = MatrixNormal(loc, ls, la, validate_args=validate)
        with pytest.raises(ValueError) as info:
            q.log_prob(torch.zeros(4, 2, 3, dtype=DT))
        assert str(info.value) == (
            "MatrixNormal.log_prob: value must have shape (..., n, p) = (..., 3, 2), got "
            "(4, 2, 3) (transposed? a value is (n, p) = (outputs, inputs + 1))"
        )
        with pytest.raises(ValueError, match=r"leading dims \(5,\) .* batch shape \(4,\)"):
            MatrixNormal(loc.expand(4, 3, 2), ls, la).log_prob(torch.zeros(5, 3, 2, dtype=DT))
