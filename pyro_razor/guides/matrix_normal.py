r"""A layer-wise matrix-normal variational posterior (paper appendix D.1, eq. 15–16).

For every matrix-valued latent site ``theta_l = [W_l b_l]`` (shape ``(n, p)``) of the model,

.. math:: q(\theta_l) = \mathcal{MN}(M_l, S_l, A_l),
          \qquad \mathrm{vec}\,\theta_l \sim \mathcal N(\mathrm{vec} M_l, A_l \otimes S_l),

with learnable mean ``M_l``, row (output) Cholesky factor ``L_S`` and column (input + bias)
Cholesky factor ``L_A`` (positive diagonals through ``constraints.lower_cholesky``).

The guide is an :class:`~pyro.infer.autoguide.AutoGuide`: it discovers the sites by tracing the
model on its first call, names the same sample sites, and supports vectorised particles and
plates exactly like :class:`~pyro.infer.autoguide.AutoNormal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack

import pyro
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import init_to_feasible
from pyro.nn import PyroModule, PyroParam
from pyro.poutine.util import site_is_subsample

from pyro_razor.distributions import MatrixNormal

__all__ = ["MatrixNormalGuide", "reference_init_scales"]


def deep_getattr(obj, name: str):
    """``obj.a.b.c`` for ``name = "a.b.c"`` (guides store per-site parameters this way)."""
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _deep_setattr(obj, name: str, value) -> None:
    parts = name.split(".")
    for part in parts[:-1]:
        if not hasattr(obj, part):
            setattr(obj, part, PyroModule())
        obj = getattr(obj, part)
    setattr(obj, parts[-1], value)


def _is_real(constraint) -> bool:
    while isinstance(constraint, constraints.independent):
        constraint = constraint.base_constraint
    return constraint is constraints.real


def reference_init_scales(shapes: Sequence[tuple[int, int]]) -> list[float]:
    r"""Initial posterior standard deviations per layer as the reference implementation sets
    them (``init_mlp_vi`` with its ``init_posterior_scale = 10`` and factor doubling), for layer
    matrices of shapes ``(out_l, in_l + 1)``:

    .. math:: s_0 = 1.6 / \sqrt{out_0}, \qquad s_l = 1.6 / (in_l + out_l), \qquad
              s_L = 1.6 \cdot 32 / (in_L + out_L)

    for the first, middle and last layer (a single layer counts as the first). For a 2-64-64-1
    network: 0.20, 0.0125, 0.79; for 2-200-200-1: 0.11, 0.004, 0.25.
    """
    L, scales = len(shapes), []
    for l, (out, cols) in enumerate(shapes):
        fan_in = cols - 1
        if l == 0:
            scales.append(1.6 / math.sqrt(out))
        elif l == L - 1:
            scales.append(1.6 * 32.0 / (fan_in + out))
        else:
            scales.append(1.6 / (fan_in + out))
    return scales


def _check_init_scale(init_scale) -> None:
    if isinstance(init_scale, str):
        if init_scale != "reference":
            raise ValueError(
                f"init_scale must be a float, a list or 'reference', got {init_scale!r}"
            )
        return
    values = [init_scale] if isinstance(init_scale, (int, float)) else list(init_scale)
    if not values or not all(isinstance(v, (int, float)) and 0 < v < math.inf for v in values):
        raise ValueError(f"init_scale must be positive and finite, got {init_scale!r}")


def _resolve_init_scales(init_scale, shapes: list) -> list[float]:
    if isinstance(init_scale, str):
        return reference_init_scales([tuple(s) for s in shapes])
    if isinstance(init_scale, (int, float)):
        return [float(init_scale)] * len(shapes)
    if len(init_scale) != len(shapes):
        raise ValueError(
            f"init_scale has {len(init_scale)} values but the model has {len(shapes)} matrix "
            "sites; give one per site or a single float"
        )
    return [float(v) for v in init_scale]


class MatrixNormalGuide(AutoGuide):
    """Matrix-normal posterior over every matrix-valued latent site of ``model``.

    Args:
        model: a Pyro model whose latent sites all have ``event_dim == 2`` and real support
            (e.g. :class:`~pyro_razor.models.NoetherRazorModel`).
        init_loc_fn: per-site initial mean; defaults to ``model.init_loc_fn`` when the model
            has one (standard network initialisation), else ``init_to_feasible``.
        init_scale: initial posterior standard deviation ``s`` of the entries of each site:
            ``L_S = L_A = sqrt(s) I``. A float (every site), a sequence (one per site, in the
            model's order) or ``"reference"`` (per layer as the reference implementation
            starts, see :func:`reference_init_scales`). Start wide: Adam moves the
            log-diagonals of the factors by about ``lr`` per step, so a posterior scale can
            shrink or grow by at most ``exp(2 sum_t lr_t)`` over a run; shrinking to what the
            data allow is quick, growing from a tiny start to the prior's size is not. The
            factors are stored in units of ``sqrt(s)`` (``L_S = sqrt(s) * L_S_param``), so an
            optimiser step changes their off-diagonal entries *relative* to the diagonal, as it
            changes the log-diagonal.
        create_plates: as for AutoGuides.
    """

    def __init__(
        self, model, *, init_loc_fn=None, init_scale: float | Sequence[float] | str = "reference",
        create_plates=None,
    ):
        _check_init_scale(init_scale)
        if init_loc_fn is None:
            init_loc_fn = getattr(model, "init_loc_fn", init_to_feasible)
        self.init_loc_fn = init_loc_fn
        self._init_scale = init_scale
        super().__init__(model, create_plates=create_plates)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        shapes = [site["fn"].event_shape for _, site in self.prototype_trace.iter_stochastic_nodes()
                  if not site_is_subsample(site)]
        scales = iter(_resolve_init_scales(self._init_scale, shapes))
        self._site_scales: dict[str, float] = {}
        self.locs = PyroModule()
        self.scale_tril_rows = PyroModule()
        self.scale_tril_cols = PyroModule()
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if site_is_subsample(site):
                continue
            fn = site["fn"]
            if fn.event_dim != 2 or not _is_real(fn.support):
                raise ValueError(
                    f"MatrixNormalGuide: site {name!r} is not a real-valued matrix "
                    f"(event_dim={fn.event_dim}, support={fn.support}); use an AutoGuide for "
                    "it (e.g. in an AutoGuideList)"
                )
            if any(frame.vectorized for frame in site["cond_indep_stack"]):
                raise ValueError(
                    f"MatrixNormalGuide: site {name!r} lies inside a plate; only global "
                    "matrix sites are supported"
                )
            self._site_scales[name] = next(scales)
            with torch.no_grad():
                loc = torch.as_tensor(self.init_loc_fn(site)).detach()
            loc = loc.to(site["value"]).reshape(fn.event_shape).clone()
            n, p = fn.event_shape
            _deep_setattr(self.locs, name, PyroParam(loc, constraints.real, event_dim=2))
            _deep_setattr(
                self.scale_tril_rows,
                name,
                PyroParam(torch.eye(n).to(loc), constraints.lower_cholesky, event_dim=2),
            )
            _deep_setattr(
                self.scale_tril_cols,
                name,
                PyroParam(torch.eye(p).to(loc), constraints.lower_cholesky, event_dim=2),
            )

    def _site_distribution(self, name: str) -> MatrixNormal:
        """The site's matrix normal, unvalidated: its factors are lower-Cholesky by their
        params' constraint, and a non-finite parameter is caught after every step by the
        training loop; re-checking the factors on every draw cost a fifth of a small step."""
        root = self._site_scales[name] ** 0.5
        return MatrixNormal(
            deep_getattr(self.locs, name),
            root * deep_getattr(self.scale_tril_rows, name),
            root * deep_getattr(self.scale_tril_cols, name),
            validate_args=False,
        )

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Sample every matrix site from its matrix normal; returns ``{site: value}``."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if site_is_subsample(site):
                continue
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, self._site_distribution(name))
        return result

    def site_names(self) -> list[str]:
        """The latent sites this guide covers (available after the first call)."""
        if self.prototype_trace is None:
            raise RuntimeError("call the guide once (with the model's arguments) first")
        return [
            n for n, s in self.prototype_trace.iter_stochastic_nodes() if not site_is_subsample(s)
        ]

    @torch.no_grad()
    def distribution(self, name: str) -> MatrixNormal:
        """The (detached) variational distribution of site ``name``."""
        d = self._site_distribution(name)
        return MatrixNormal(d.loc.detach(), d.scale_tril_row.detach(), d.scale_tril_col.detach())

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior means (= medians) of every site."""
        return {name: self.distribution(name).loc for name in self.site_names()}

    @torch.no_grad()
    def second_moment(self, name: str) -> torch.Tensor:
        """``E_q |theta|_F^2 = Tr S Tr A + |M|_F^2`` of site ``name`` (appendix D.3)."""
        return self.distribution(name).second_moment()
