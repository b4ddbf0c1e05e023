"""The one place where names in a config become objects: variants, guides, priors, noises,
integrators, measures and activations.

Each :class:`Registry` maps a config name to a builder and refuses unknown names with the list
of known ones. The config dataclasses (:mod:`pyro_razor.runs.config`) declare the same names as
``Literal`` types so that a config is checked when it is loaded; a test keeps both in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

import torch
from pyro.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoLowRankMultivariateNormal,
    AutoNormal,
)

from pyro_razor.discovery.candidates import direct_start, polynomial_candidates
from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.guides import MatrixNormalGuide
from pyro_razor.integrators import METHODS
from pyro_razor.models import (
    ACTIVATIONS,
    ClosedFormVariancePrior,
    EmpiricalNoise,
    FixedNoise,
    FixedVariancePrior,
    LearnedVariancePrior,
    NoetherRazorModel,
    PolynomialQuantities,
)
from pyro_razor.models.polynomial_quantities import quadratic_coefficients
from pyro_razor.models.quantities import LearnedQuantities
from pyro_razor.symmetry import MEASURE_KINDS, SymmetryMeasure

__all__ = [
    "ACTIVATION_NAMES",
    "ETA_STARTS",
    "GUIDES",
    "INTEGRATORS",
    "MEASURES",
    "NOISES",
    "PRIORS",
    "QUANTITY_FAMILIES",
    "VARIANTS",
    "Registry",
]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only ``name -> builder`` mapping whose lookup error lists the known names.

    Args:
        what: what the names name (for the error message), e.g. ``"guide"``.
        entries: the builders by name.
    """

    def __init__(self, what: str, entries: Mapping[str, T]) -> None:
        self.what = what
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ValueError(f"unknown {self.what} {name!r}; choose one of {sorted(self._entries)}")
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _vanilla(M: int, dt: float, system, model_config, trajectories=None,
             **kwargs) -> NoetherRazorModel:
    return NoetherRazorModel.vanilla(M, dt, **kwargs)


def _learned(M: int, dt: float, system, model_config, trajectories=None,
             **kwargs) -> NoetherRazorModel:
    init = ETA_STARTS[model_config.eta_init](model_config, trajectories)
    quantities = QUANTITY_FAMILIES[model_config.quantity_family](M, model_config, init)
    return NoetherRazorModel(M, dt, quantities=quantities, **kwargs)


def _quadratic(M: int, mc, init) -> LearnedQuantities:
    return LearnedQuantities(M, mc.num_quantities, mc.eta_init_std,
                             torch.Generator().manual_seed(mc.eta_seed), init)


def _polynomial(M: int, mc, init) -> PolynomialQuantities:
    if isinstance(init, tuple):
        A, b = (torch.as_tensor(t, dtype=torch.get_default_dtype()) for t in init)
        init = quadratic_coefficients(A, b, mc.quantity_degree)
    return PolynomialQuantities(M, mc.num_quantities, mc.quantity_degree, mc.eta_init_std,
                                torch.Generator().manual_seed(mc.eta_seed), init,
                                flow_steps=mc.quantity_flow_steps,
                                max_speed=mc.quantity_max_speed or None,
                                compile_flow=mc.quantity_compile)


QUANTITY_FAMILIES: Registry[Callable] = Registry(
    "quantity family", {"quadratic": _quadratic, "polynomial": _polynomial},
)
"""The learned variant's quantities: ``builder(M, model_config, init)`` with ``init`` the
eta start's ``(A, b)``, ``(K, F)`` polynomial coefficients or ``None``: ``"quadratic"``
(:class:`LearnedQuantities`, exact affine flows) or ``"polynomial"``
(:class:`PolynomialQuantities` of degree ``quantity_degree``, a quadratic start embedded in
its monomial basis)."""


def _direct_start(model_config, trajectories):
    if trajectories is None or trajectories.dim() != 3:
        raise ValueError("model.eta_init = 'direct' needs the training trajectories "
                         "(B, n, M) to start from; build the model with them")
    if model_config.quantity_family == "polynomial" and model_config.quantity_degree > 2:
        return _polynomial_direct_start(model_config, trajectories)
    A, b, _ = direct_start(trajectories, model_config.num_quantities)
    return A, b


def _polynomial_direct_start(model_config, trajectories) -> torch.Tensor:
    """``(K, F)``: the direct estimate of the quantities' own degree on the training
    trajectories, its first ``K`` reported quantities at unit flow speed, the rest zero."""
    degree, K = model_config.quantity_degree, model_config.num_quantities
    x = trajectories.detach().to("cpu", torch.float64)
    found = polynomial_candidates(direct_estimate(x, degree=degree), x, degree)
    eta = torch.zeros(K, found.shape[1], dtype=torch.float64)
    eta[: min(K, found.shape[0])] = found[:K]
    return eta.to(torch.get_default_dtype())  # as the quadratic start: the model's .to follows


ETA_STARTS: Registry[Callable] = Registry(
    "eta start",
    {"normal": lambda model_config, trajectories: None, "direct": _direct_start},
)
"""Where the learned quantities start: ``builder(model_config, trajectories) -> (A, b)`` or
``None`` (``"normal"``: ``W, b ~ N(0, eta_init_std^2)`` drawn with ``eta_seed``; ``"direct"``:
the direct estimate's candidates on the training trajectories, the rest at zero:
:func:`~pyro_razor.discovery.candidates.direct_start`)."""


def _oracle(M: int, dt: float, system, model_config, trajectories=None,
            **kwargs) -> NoetherRazorModel:
    return NoetherRazorModel.oracle(system.oracle_generators(dtype=torch.float64), dt, **kwargs)


def _oracle_orbit(M: int, dt: float, system, model_config, trajectories=None,
                  **kwargs) -> NoetherRazorModel:
    return NoetherRazorModel.oracle(system.generators(dtype=torch.float64), dt, **kwargs)


VARIANTS: Registry[Callable[..., NoetherRazorModel]] = Registry(
    "variant",
    {"vanilla": _vanilla, "learned": _learned, "oracle": _oracle, "oracle_orbit": _oracle_orbit},
)
"""Model variants: ``builder(M, dt, system, model_config, trajectories, **model_kwargs)``
(``trajectories (B, n, M)``: the training data in model units, used by a data-derived start
of the learned quantities, else ``None``). They share every setting and differ only in the
conserved quantities: none, ``K`` learnable ones, the system's fixed oracle group
(``system.oracle_quantities``, e.g. SE(2) for the 2d 3-body system) or all its known conserved
quantities (``"oracle_orbit"``)."""

GUIDES: Registry[Callable] = Registry(
    "guide kind",
    {
        "matrix_normal": lambda model, gc: MatrixNormalGuide(
            model, init_scale=gc.resolved_init_scale()
        ),
        "auto_normal": lambda model, gc: AutoNormal(
            model, init_loc_fn=model.init_loc_fn, init_scale=gc.resolved_init_scale()
        ),
        "auto_lowrank": lambda model, gc: AutoLowRankMultivariateNormal(
            model, init_loc_fn=model.init_loc_fn, init_scale=gc.resolved_init_scale(),
            rank=gc.rank,
        ),
        "auto_delta": lambda model, gc: AutoDelta(model, init_loc_fn=model.init_loc_fn),
        "auto_diagonal": lambda model, gc: AutoDiagonalNormal(
            model, init_loc_fn=model.init_loc_fn, init_scale=gc.resolved_init_scale()
        ),
    },
)
"""Variational families over the weights: ``builder(model, guide_config)``."""

PRIORS = Registry(
    "prior",
    {
        "fixed": lambda mc: FixedVariancePrior(mc.prior_variance),
        "learned": lambda mc: LearnedVariancePrior(mc.prior_variance),
        "closed_form": lambda mc: ClosedFormVariancePrior(
            mc.prior_variance, damping=mc.prior_damping, warmup_steps=mc.prior_warmup_steps
        ),
    },
)
"""Priors over the layer matrices: ``builder(model_config)``."""

NOISES = Registry("output noise", {"fixed": FixedNoise, "empirical": EmpiricalNoise})
"""Output noise of the likelihood: ``builder(variance)``."""

INTEGRATORS = Registry("integrator", METHODS)
"""Step functions of the likelihood's ODE solve (the model takes the name)."""

MEASURES = Registry(
    "symmetry measure",
    {kind: (lambda scale, kind=kind: SymmetryMeasure(kind, scale))
     for kind in MEASURE_KINDS},
)
"""Measures ``mu(tau)`` of the symmetry times: ``builder(scale)``."""

ACTIVATION_NAMES = Registry("activation", ACTIVATIONS)
"""Hidden activations of ``F_theta`` (the model takes the name)."""
