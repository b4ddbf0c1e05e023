r"""The Noether's razor probabilistic program (paper section 4.1, Figure 1, eq. 8).

Generative story, for transitions ``(x_t, x_{t+dt})`` of ``T`` observed trajectories:

1. ``theta_l ~ p(theta_l)`` for every layer of the non-symmetrised network ``F_theta``
   (``PyroSample`` sites named ``"hamiltonian_net.weight<l>"``, prior from a prior object);
2. the conserved quantities ``C_eta`` are *parameters* of the prior (``pyro.param`` s
   ``"quantities.W"``, ``"quantities.b"``, or ``"quantities.eta"`` for polynomial ones;
   empirical Bayes) — or fixed generators (oracle), or absent (vanilla HNN);
3. for every weight sample ``p``, ``S`` symmetry times ``tau_ps ~ mu`` (``tau`` of shape
   ``(P, S, K)``, as in the reference code: averaging over the ``P`` particles also averages the
   symmetry noise); the quantities decide what they become (:meth:`transforms`): quadratic
   quantities give transforms ``T_ps = expm(sum_k tau_psk G_k)``, computed once per call as one
   ``(P, S, M+1, M+1)`` batch and shared by every point and integrator step; polynomial ones
   keep the times, and their non-linear flows are integrated at every point;
4. the symmetrised Hamiltonian ``H_hat = 1/S sum_s F_theta o Phi^{tau_s}`` (eq. 14), built by
   the quantities (:meth:`hamiltonian`);
5. ``x_{t+dt} ~ N(ODESolve(J grad H_hat, x_t, dt), sigma^2_data I)``, the likelihood object
   :class:`~pyro_razor.models.likelihood.GaussianTransitionLikelihood` with its plates
   ``"trajectories"`` (minibatches of trajectories) and ``"time"`` (transitions).

The symmetry times are auxiliary Monte-Carlo variables of the unbiased estimator of eq. 12–14,
not latent variables: they are drawn from the torch RNG (seeded by ``pyro.set_rng_seed``), not
as ``pyro.sample`` sites, so guides see only the weight sites.

The model runs unchanged with :class:`~pyro_razor.guides.MatrixNormalGuide` and Pyro's
AutoGuides, with or without vectorised particles (``Trace_ELBO(num_particles=P,
vectorize_particles=True)``): the weight sites then have batch shape ``(P, 1, 1)`` and every
weight sample is pushed through the dynamics in one batched computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from pyro.nn import PyroModule
from torch.utils.checkpoint import checkpoint

from pyro_razor.integrators import integrate
from pyro_razor.models.hamiltonian import SymmetrisedHamiltonian
from pyro_razor.models.likelihood import GaussianTransitionLikelihood
from pyro_razor.models.networks import BayesianMLP, get_activation
from pyro_razor.models.noise import OutputNoise
from pyro_razor.models.polynomial_quantities import PolynomialQuantities
from pyro_razor.models.priors import FixedVariancePrior, LayerGaussianPrior
from pyro_razor.models.quantities import FixedQuantities, LearnedQuantities
from pyro_razor.symmetry import SymmetryMeasure, check_phase_dim

__all__ = ["NoetherRazorModel"]

MAX_PLATE_NESTING = GaussianTransitionLikelihood.max_plate_nesting


class NoetherRazorModel(PyroModule):
    """Bayesian Hamiltonian neural network symmetrised by conserved quantities.

    Args:
        phase_dim: ``M`` (even; positions then momenta).
        dt: time between consecutive observations ``Delta t``.
        hidden: hidden widths of ``F_theta``.
        activation: ``"elu"``, ``"tanh"``, ``"softplus"`` or ``"silu"``.
        elu_alpha: ``alpha`` of ELU.
        prior: prior object over the layer matrices (default ``N(0, I)``).
        noise: output noise of the likelihood (default fixed ``sigma^2 = 1e-3``).
        quantities: ``None`` (vanilla HNN), :class:`LearnedQuantities`,
            :class:`FixedQuantities` or :class:`PolynomialQuantities`.
        measure: the measure ``mu(tau)``.
        tau_samples: ``S``, Monte-Carlo samples of the symmetrisation per model call.
        tau_antithetic: draw the symmetry times in antithetic pairs ``(tau, -tau)`` (see
            :meth:`transforms`).
        tau_stratified: draw each weight sample's ``S`` times as one Latin-hypercube set
            (:meth:`~pyro_razor.symmetry.SymmetryMeasure.sample_stratified`: unbiased, far
            lower variance); :meth:`evaluation` switches it on at test time.
        integrator: ``"euler"`` (the paper), ``"rk4"``, ``"leapfrog"`` or ``"midpoint"``.
        integrator_steps: sub-steps over ``dt`` (the paper: 20).
        checkpoint_steps: recompute each integrator sub-step during the backward pass
            instead of storing it (``torch.utils.checkpoint``). Since the vector field's fast
            path (:mod:`~pyro_razor.models.fast_gradient`) keeps only each sub-step's points
            and gradients, this saves little memory and costs one more forward pass; it is
            kept for very long integrations.

    Use :meth:`vanilla`, :meth:`learned` and :meth:`oracle` to build the three variants.
    """

    def __init__(
        self,
        phase_dim: int,
        dt: float,
        hidden: Sequence[int] = (200, 200),
        activation: str = "elu",
        elu_alpha: float = 1.0,
        prior: LayerGaussianPrior | None = None,
        noise: OutputNoise | None = None,
        quantities: LearnedQuantities | FixedQuantities | PolynomialQuantities | None = None,
        measure: SymmetryMeasure | None = None,
        tau_samples: int = 100,
        tau_antithetic: bool = False,
        tau_stratified: bool = False,
        integrator: str = "euler",
        integrator_steps: int = 20,
        checkpoint_steps: bool = False,
    ) -> None:
        super().__init__()
        check_phase_dim(phase_dim)
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be positive and finite, got {dt}")
        if tau_samples < 1 or integrator_steps < 1:
            raise ValueError(
                f"tau_samples and integrator_steps must be >= 1, got {tau_samples}, "
                f"{integrator_steps}"
            )
        if quantities is not None and quantities.phase_dim != phase_dim:
            raise ValueError(
                f"conserved quantities act on a {quantities.phase_dim}-dim phase space but the "
                f"model's phase dimension is {phase_dim}"
            )
        self.phase_dim = phase_dim
        self.dt = float(dt)
        self.hamiltonian_net = BayesianMLP(
            phase_dim,
            hidden,
            get_activation(activation, elu_alpha),
            prior if prior is not None else FixedVariancePrior(1.0),
        )
        self.likelihood = GaussianTransitionLikelihood(noise)
        self.quantities = quantities
        self.measure = measure if measure is not None else SymmetryMeasure()
        self.tau_samples = int(tau_samples)
        self.tau_antithetic = bool(tau_antithetic)
        self.tau_stratified = bool(tau_stratified)
        self.integrator = integrator
        self.integrator_steps = int(integrator_steps)
        self.checkpoint_steps = bool(checkpoint_steps)

    # ----------------------------------------------------------------- variants
    @classmethod
    def vanilla(cls, phase_dim: int, dt: float, **kwargs) -> NoetherRazorModel:
        """A Bayesian HNN without symmetrisation (``K = 0``)."""
        return cls(phase_dim, dt, quantities=None, **kwargs)

    @classmethod
    def learned(
        cls,
        phase_dim: int,
        dt: float,
        num_quantities: int,
        init_std: float = 0.0,
        generator: torch.Generator | None = None,
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> NoetherRazorModel:
        """``K = num_quantities`` learnable quadratic conserved quantities (started at ``init
        = (A, b)`` if given, see :class:`LearnedQuantities`)."""
        quantities = LearnedQuantities(phase_dim, num_quantities, init_std, generator, init)
        return cls(phase_dim, dt, quantities=quantities, **kwargs)

    @classmethod
    def learned_polynomial(
        cls,
        phase_dim: int,
        dt: float,
        num_quantities: int,
        degree: int = 4,
        init_std: float = 0.0,
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
        flow_steps: int = 8,
        max_speed: float | None = 10.0,
        compile_flow: bool = False,
        **kwargs,
    ) -> NoetherRazorModel:
        """``K = num_quantities`` learnable polynomial quantities of degree ``<= degree`` with
        numerically integrated flows, at most ``max_speed`` fast (started at ``init (K, F)`` if
        given; ``compile_flow``: the training step's flows through ``torch.compile``; see
        :class:`PolynomialQuantities`)."""
        quantities = PolynomialQuantities(phase_dim, num_quantities, degree, init_std, generator,
                                          init, flow_steps=flow_steps, max_speed=max_speed,
                                          compile_flow=compile_flow)
        return cls(phase_dim, dt, quantities=quantities, **kwargs)

    @classmethod
    def oracle(cls, generators: torch.Tensor, dt: float, **kwargs) -> NoetherRazorModel:
        """Fixed ground-truth generators ``(L, M+1, M+1)`` (e.g. ``system.generators()``)."""
        quantities = FixedQuantities(generators)
        return cls(quantities.phase_dim, dt, quantities=quantities, **kwargs)

    # ----------------------------------------------------------------- pieces
    @property
    def num_quantities(self) -> int:
        return 0 if self.quantities is None else self.quantities.num_quantities

    @property
    def noise(self) -> OutputNoise:
        """The likelihood's output noise ``sigma^2_data``."""
        return self.likelihood.noise

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live."""
        return self.hamiltonian_net.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's tensors."""
        return self.hamiltonian_net.dtype

    @property
    def weight_sites(self) -> list[str]:
        """Names of the Pyro sample sites of the network's layer matrices."""
        return self.hamiltonian_net.site_names()

    def param_group(self, name: str) -> str:
        """Optimiser group of a param-store name: ``"eta"``, ``"hyper"`` or ``"theta"``."""
        if name.startswith("quantities."):
            return "eta"
        if name.startswith(("hamiltonian_net.prior.", "likelihood.")):
            return "hyper"
        return "theta"

    @property
    def quantity_family(self) -> str | None:
        """``"quadratic"`` (exact affine flows), ``"polynomial"`` (integrated non-linear flows)
        or ``None`` (vanilla)."""
        return None if self.quantities is None else self.quantities.family

    def generators(self) -> torch.Tensor | None:
        """``(K, M+1, M+1)`` current generators, or ``None`` for the vanilla model
        (``ValueError`` for polynomial quantities, whose flows are not linear)."""
        return None if self.quantities is None else self.quantities.generators()

    def transforms(
        self, num_samples: int | None = None, num_draws: int = 1
    ) -> torch.Tensor | None:
        r"""What the quantities make of ``tau ~ mu`` drawn independently for each of the ``P =
        num_draws`` weight samples (``S = num_samples``, default the model's): quadratic
        quantities the ``(P, S, M+1, M+1)`` transforms ``expm(sum_k tau_psk G_k)``, polynomial
        ones the ``(P, S, K)`` times themselves; ``None`` for the vanilla model.

        With ``tau_antithetic`` the second half of each weight sample's ``S`` times is the
        negated first half (``tau_{p, s + S/2} = -tau_{ps}``; an odd ``S`` drops the last
        negated one). Every measure offered is symmetric, so each ``tau`` is still distributed
        as ``mu`` and eq. 5's estimate stays unbiased; and since ``E F(expm(tau G) x) =
        F(x) + tau grad F . G x + O(|G|^2)``, the first-order term, zero in expectation but
        the dominant noise while a generator is small, cancels within every pair. With
        ``tau_stratified`` (which takes precedence) each weight sample's ``S`` times are one
        Latin-hypercube set instead (also unbiased; see :meth:`symmetry_times`).
        """
        q = self.quantities
        if q is None:
            return None
        return q.symmetry_elements(self.symmetry_times(num_samples, num_draws))

    def symmetry_times(self, num_samples: int | None = None, num_draws: int = 1) -> torch.Tensor:
        """``(P, S, K)`` times ``tau ~ mu`` (antithetic pairs with ``tau_antithetic``, one
        Latin-hypercube set per weight sample with ``tau_stratified``: see :meth:`transforms`
        and :meth:`~pyro_razor.symmetry.SymmetryMeasure.sample_stratified`), in the
        quantities' dtype and device."""
        q = self.quantities
        S = self.tau_samples if num_samples is None else num_samples
        K, kw = q.num_quantities, dict(dtype=q.dtype, device=q.device)
        if self.tau_stratified:
            return self.measure.sample_stratified(S, K, num_sets=num_draws, **kw)
        if not self.tau_antithetic:
            return self.measure.sample(num_draws * S, K, **kw).reshape(num_draws, S, K)
        half = (S + 1) // 2
        tau = self.measure.sample(num_draws * half, K, **kw).reshape(num_draws, half, K)
        return torch.cat([tau, -tau], dim=1)[:, :S]

    def init_loc_fn(self, site: dict) -> torch.Tensor:
        """Standard initial value for a weight site (for guides' ``init_loc_fn``)."""
        name = site["name"]
        if name in self.weight_sites:
            return self.hamiltonian_net.standard_init(self.weight_sites.index(name))
        return site["fn"].sample().detach()

    def hamiltonian(
        self, weights: Sequence[torch.Tensor], transforms: torch.Tensor | None
    ) -> SymmetrisedHamiltonian:
        """The symmetrised Hamiltonian for ``(P, out, in+1)`` weights and what
        :meth:`transforms` gave (one set per weight sample), built by the quantities:
        :class:`SymmetrisedHamiltonian` over affine transforms, or
        :class:`~pyro_razor.models.flow_hamiltonian.FlowSymmetrisedHamiltonian` over
        non-linear flows."""
        activation = self.hamiltonian_net.activation
        if self.quantities is None or transforms is None:
            return SymmetrisedHamiltonian(weights, activation, transforms)
        return self.quantities.hamiltonian(weights, activation, transforms)

    def predict(
        self,
        weights: Sequence[torch.Tensor],
        transforms: torch.Tensor | None,
        x: torch.Tensor,
        duration: float | None = None,
    ) -> torch.Tensor:
        """Mean of the next state: ``ODESolve(J grad H_hat, x, duration)``.

        Args:
            weights: per layer ``(P, out, in+1)``.
            transforms: ``(P, S, M+1, M+1)`` or ``None``.
            x: ``(N, M)`` or ``(P, N, M)`` states.
            duration: integration time (default ``dt``); sub-steps scale with it.

        Returns:
            ``(P, N, M)`` predicted states.
        """
        H = self.hamiltonian(weights, transforms)
        x = H.broadcast(x)
        duration = self.dt if duration is None else duration
        steps = max(1, round(self.integrator_steps * duration / self.dt))
        if not (self.checkpoint_steps and torch.is_grad_enabled()):
            return integrate(H.vector_field, x, duration, steps=steps, method=self.integrator)
        for _ in range(steps):
            x = checkpoint(
                integrate, H.vector_field, x, duration / steps, 1, self.integrator,
                use_reentrant=False,
            )
        return x

    # ----------------------------------------------------------------- model
    def check_data(self, states: torch.Tensor, next_states: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless ``states`` (and ``next_states``) are ``(T, n, M)``."""
        M = self.phase_dim
        if states.dim() != 3 or states.shape[-1] != M:
            raise ValueError(
                f"states must have shape (trajectories, transitions, {M}), got "
                f"{tuple(states.shape)}; use pyro_razor.systems.transitions(trajectories)"
            )
        if next_states is not None and next_states.shape != states.shape:
            raise ValueError(
                f"next_states must have the shape of states {tuple(states.shape)}, got "
                f"{tuple(next_states.shape)}"
            )

    def forward(
        self,
        states: torch.Tensor,
        next_states: torch.Tensor | None = None,
        subsample: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the generative model.

        Args:
            states: ``(T, n, M)`` the state before each transition.
            next_states: ``(T, n, M)`` observed next states, or ``None`` to sample them.
            subsample: optional ``(B,)`` trajectory indices of a minibatch.

        Returns:
            ``(*particles, B, n, M)`` the sampled or observed next states.
        """
        self.check_data(states, next_states)
        T, n, M = states.shape
        raw = self.hamiltonian_net.sample_weights()
        particle_shape = self._particle_shape(raw[0].shape[:-2])
        P = math.prod(particle_shape)
        weights = [w.reshape(P, *w.shape[-2:]) for w in raw]
        transforms = self.transforms(num_draws=P)
        with self.likelihood.trajectories(T, subsample) as idx:
            x = states[idx]  # (B, n, M)
            B = x.shape[0]
            mean = self.predict(weights, transforms, x.reshape(B * n, M))
            mean = mean.reshape(*particle_shape, B, n, M)
            obs = None if next_states is None else next_states[idx]
            return self.likelihood(mean, obs)

    @staticmethod
    def _particle_shape(batch: torch.Size) -> tuple[int, ...]:
        """The particle dims of a weight sample's batch shape.

        Weights are global, so every batch dim comes from a particle plate (vectorised ELBO
        particles or ``Predictive(parallel=True)``), possibly followed by singleton dims for the
        model's two data plates, e.g. ``(P, 1, 1)`` or ``(P,)``.
        """
        batch = tuple(batch)
        if len(batch) > MAX_PLATE_NESTING:
            if math.prod(batch[-MAX_PLATE_NESTING:]) != 1:
                raise ValueError(f"weight samples have unexpected batch shape {batch}")
            return batch[:-MAX_PLATE_NESTING]
        while len(batch) > 1 and batch[-1] == 1:
            batch = batch[:-1]
        return batch

    # ----------------------------------------------------------------- convenience
    @contextmanager
    def evaluation(self, tau_samples: int | None = None, stratified: bool | None = None):
        """Temporarily use ``tau_samples`` symmetrisation samples (e.g. more at test time)
        and, with ``stratified``, stratified times (``tau_stratified``)."""
        old = self.tau_samples, self.tau_stratified
        if tau_samples is not None:
            self.tau_samples = int(tau_samples)
        if stratified is not None:
            self.tau_stratified = bool(stratified)
        try:
            yield self
        finally:
            self.tau_samples, self.tau_stratified = old
