r"""Feature libraries beyond monomials: trigonometric, inverse distances, user callables, unions.

All share the interface of :mod:`~pyro_razor.discovery.features` (``M``, ``num_features``,
``labels``, ``__call__ -> (phi, J)``, ``standardised``, ``complexities``) and are evaluated on
the user's own coordinates (``standardised = False``):

- :class:`TrigFeatures` — ``cos(k x_i)``, ``sin(k x_i)`` of chosen coordinates (a pendulum's
  ``-cos q``);
- :class:`InverseDistanceFeatures` — for bodies with positions ``q = (body 1 x, y[, z], body 2
  ...)``: ``1/r_ij`` and the unit-vector components ``(q_i - q_j)_a / r_ij`` of every pair;
  one body is a body in a central field, ``r = |q|`` (Kepler's energy ``-1/r`` and
  Laplace-Runge-Lenz components ``... - x/r``);
- :class:`CallableFeatures` — user functions ``f(x (N, M)) -> (N,)`` in torch, with names for
  the formulas; Jacobians by autograd;
- :class:`FeatureUnion` (all columns of several libraries) and :class:`ProductFeatures`
  (every product of a column of one library with a column of another: ``exp(q1 - q2) p1``).

:func:`parse_feature_spec` builds a library from a command-line string such as
``"trig:0,inverse-distance:2"``.

Shapes: ``N`` states, ``M`` phase dimension, ``F`` features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pyro_razor.discovery.features import MonomialFeatures, check_states
from pyro_razor.symmetry import check_phase_dim

__all__ = ["CallableFeatures", "FeatureUnion", "InverseDistanceFeatures", "ProductFeatures",
           "TrigFeatures", "parse_feature_spec"]


def _check_names(names: Sequence[str], M: int, caller: str) -> list[str]:
    if len(names) != M:
        raise ValueError(f"{caller}.labels: need {M} names, got {len(names)}")
    return list(names)


class TrigFeatures:
    """``cos(k x_i)`` and ``sin(k x_i)`` for chosen coordinates ``i`` and ``k = 1..harmonics``.

    Args:
        M: phase dimension; coordinates: 0-based indices (e.g. ``[0]`` for an angle ``q``);
        harmonics: highest multiple ``k`` (1 to 4).
    """

    standardised = False

    def __init__(self, M: int, coordinates: Sequence[int], harmonics: int = 1):
        check_phase_dim(M)
        coordinates = [int(i) for i in coordinates]
        if not coordinates or any(not 0 <= i < M for i in coordinates):
            raise ValueError(f"TrigFeatures: coordinates {coordinates} must be indices in "
                             f"0..{M - 1} (M = {M})")
        if not (isinstance(harmonics, int) and 1 <= harmonics <= 4):
            raise ValueError(f"TrigFeatures: harmonics must be an integer 1 to 4, got "
                             f"{harmonics!r}")
        self.M, self.coordinates, self.harmonics = M, coordinates, harmonics
        # one row per feature: (coordinate, multiple k, 0 for cos / 1 for sin)
        self.table = [(i, k, s) for i in coordinates for k in range(1, harmonics + 1)
                      for s in (0, 1)]

    @property
    def num_features(self) -> int:
        return len(self.table)

    @property
    def complexities(self) -> torch.Tensor:
        return torch.tensor([k for _, k, _ in self.table])

    def labels(self, names: Sequence[str]) -> list[str]:
        names = _check_names(names, self.M, "TrigFeatures")
        return [f"{('cos', 'sin')[s]}({'' if k == 1 else k}{names[i]})"
                for i, k, s in self.table]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi (N, F)``, ``J (N, F, M)``."""
        check_states(x, self.M, "TrigFeatures")
        phi = x.new_empty(x.shape[0], self.num_features)
        J = x.new_zeros(x.shape[0], self.num_features, self.M)
        for f, (i, k, s) in enumerate(self.table):
            angle = k * x[:, i]
            phi[:, f] = angle.sin() if s else angle.cos()
            J[:, f, i] = k * angle.cos() if s else -k * angle.sin()
        return phi, J


class InverseDistanceFeatures:
    """``1/r`` and unit-vector components of every pair of bodies (module docstring).

    Args:
        M: phase dimension, ``M = 2 * bodies * dim``; dim: space dimension (1 to 3).
    """

    standardised = False

    def __init__(self, M: int, dim: int):
        check_phase_dim(M)
        if not (isinstance(dim, int) and 1 <= dim <= 3) or (M // 2) % dim:
            raise ValueError(f"InverseDistanceFeatures: dim must be 1, 2 or 3 and divide the "
                             f"{M // 2} positions, got dim={dim!r}")
        self.M, self.dim = M, dim
        bodies = M // 2 // dim
        self.pairs = ([(0, None)] if bodies == 1 else
                      [(i, j) for i in range(bodies) for j in range(i + 1, bodies)])

    @property
    def num_features(self) -> int:
        return len(self.pairs) * (1 + self.dim)

    @property
    def complexities(self) -> torch.Tensor:
        return torch.ones(self.num_features, dtype=torch.long)

    def labels(self, names: Sequence[str]) -> list[str]:
        names, out = _check_names(names, self.M, "InverseDistanceFeatures"), []
        for i, j in self.pairs:
            if j is None:
                out += ["1/r"] + [f"{names[a]}/r" for a in range(self.dim)]
                continue
            r = f"r{i + 1}{j + 1}"
            out += [f"1/{r}"] + [f"({names[i * self.dim + a]} − {names[j * self.dim + a]})/{r}"
                                 for a in range(self.dim)]
        return out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi (N, F)``, ``J (N, F, M)``; a distance of 0 gives inf (rejected downstream)."""
        check_states(x, self.M, "InverseDistanceFeatures")
        n, d = x.shape[0], self.dim
        phi, J = x.new_empty(n, self.num_features), x.new_zeros(n, self.num_features, self.M)
        eye = torch.eye(d, dtype=x.dtype)
        for p, (i, j) in enumerate(self.pairs):
            qi = slice(i * d, (i + 1) * d)
            delta = x[:, qi] - (0.0 if j is None else x[:, j * d:(j + 1) * d])  # (n, d)
            inv = 1.0 / delta.norm(dim=-1)  # (n,)
            unit = delta * inv[:, None]
            f = p * (1 + d)
            phi[:, f], phi[:, f + 1:f + 1 + d] = inv, unit
            grads = [(-inv[:, None] ** 2 * unit)[:, None]]  # d(1/r)/d delta: (n, 1, d)
            grads.append(inv[:, None, None] * (eye - unit[:, :, None] * unit[:, None, :]))
            G = torch.cat(grads, dim=1)  # (n, 1 + d, d)
            J[:, f:f + 1 + d, qi] = G
            if j is not None:
                J[:, f:f + 1 + d, j * d:(j + 1) * d] = -G
        return phi, J


class CallableFeatures:
    """User features: torch functions of the states, one value per state.

    Args:
        M: phase dimension.
        functions: callables ``x (N, M) -> (N,)`` (differentiable torch code).
        names: one label per function, used in the formulas (e.g. ``"exp(q1 − q2)"``).
    """

    standardised = False

    def __init__(self, M: int, functions: Sequence[Callable], names: Sequence[str]):
        check_phase_dim(M)
        functions, names = list(functions), [str(n) for n in names]
        if not functions or len(functions) != len(names) or not all(map(callable, functions)):
            raise ValueError(f"CallableFeatures: need one or more callables and one name each, "
                             f"got {len(functions)} functions and {len(names)} names")
        self.M, self.functions, self.names = M, functions, names

    @property
    def num_features(self) -> int:
        return len(self.functions)

    @property
    def complexities(self) -> torch.Tensor:
        return torch.ones(self.num_features, dtype=torch.long)

    def labels(self, names: Sequence[str]) -> list[str]:
        _check_names(names, self.M, "CallableFeatures")
        return list(self.names)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi (N, F)``, ``J (N, F, M)`` (rows of ``J`` by autograd of each function)."""
        check_states(x, self.M, "CallableFeatures")
        values, grads = [], []
        with torch.enable_grad():
            for f, name in zip(self.functions, self.names, strict=True):
                z = x.detach().clone().requires_grad_(True)
                out = f(z)
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != (x.shape[0],):
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
                    raise ValueError(f"CallableFeatures: feature {name!r} returned {got}; it "
                                     f"must return one value per state, shape ({x.shape[0]},)")
                grad = (torch.autograd.grad(out.sum(), z, allow_unused=True)[0]
                        if out.requires_grad else None)
                values.append(out.detach())
                grads.append(torch.zeros_like(x) if grad is None else grad)
        return torch.stack(values, -1).to(x.dtype), torch.stack(grads, 1).to(x.dtype)


def _common_flag(libraries, caller: str) -> bool:
    flags = {bool(getattr(lib, "standardised", False)) for lib in libraries}
    if len(flags) > 1:
        raise ValueError(f"{caller}: mixes libraries on standardised and on the user's "
                         "coordinates; build MonomialFeatures(M, degree, standardised=False)")
    return flags.pop()


def _common_M(libraries, caller: str) -> int:
    Ms = {lib.M for lib in libraries}
    if len(Ms) != 1:
        raise ValueError(f"{caller}: the libraries have different phase dimensions {sorted(Ms)}")
    return Ms.pop()


class FeatureUnion:
    """All columns of several libraries of the same ``M``, in order."""

    def __init__(self, *libraries):
        if not libraries:
            raise ValueError("FeatureUnion: need at least one library")
        self.M = _common_M(libraries, "FeatureUnion")
        self.standardised = _common_flag(libraries, "FeatureUnion")
        self.libraries = list(libraries)

    @property
    def num_features(self) -> int:
        return sum(lib.num_features for lib in self.libraries)

    @property
    def complexities(self) -> torch.Tensor:
        return torch.cat([torch.as_tensor(lib.complexities) for lib in self.libraries])

    def labels(self, names: Sequence[str]) -> list[str]:
        return [label for lib in self.libraries for label in lib.labels(names)]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [lib(x) for lib in self.libraries]
        return torch.cat([p for p, _ in parts], 1), torch.cat([J for _, J in parts], 1)


class ProductFeatures:
    """Every product ``phi_a * phi_b`` of a column of ``first`` with a column of ``second``."""

    def __init__(self, first, second):
        self.M = _common_M([first, second], "ProductFeatures")
        self.standardised = _common_flag([first, second], "ProductFeatures")
        self.first, self.second = first, second

    @property
    def num_features(self) -> int:
        return self.first.num_features * self.second.num_features

    @property
    def complexities(self) -> torch.Tensor:
        a, b = torch.as_tensor(self.first.complexities), torch.as_tensor(self.second.complexities)
        return (a[:, None] + b[None, :]).reshape(-1)

    def labels(self, names: Sequence[str]) -> list[str]:
        return [f"{a}·{b}" for a in self.first.labels(names) for b in self.second.labels(names)]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (pa, Ja), (pb, Jb) = self.first(x), self.second(x)
        phi = (pa[:, :, None] * pb[:, None, :]).flatten(1)
        J = Ja[:, :, None] * pb[:, None, :, None] + pa[:, :, None, None] * Jb[:, None]
        return phi, J.flatten(1, 2)


def _spec_item(item: str, M: int):
    kind, _, arg = item.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "poly":
            return MonomialFeatures(M, int(arg), standardised=False)
        if kind == "trig":
            coords, _, harmonics = arg.partition(":")
            return TrigFeatures(M, [int(i) for i in coords.split("+")],
                                int(harmonics) if harmonics else 1)
        if kind == "inverse-distance":
            return InverseDistanceFeatures(M, int(arg))
    except ValueError as exc:
        if "invalid literal" not in str(exc):
            raise
    raise ValueError(f"feature spec: cannot read {item!r}; use poly:N, trig:I[+J..][:H] or "
                     "inverse-distance:DIM (0-based coordinate indices)")


def parse_feature_spec(spec: str, M: int, degree: int):
    """The library of ``--degree degree --features spec``.

    Monomials of degree ``1..degree`` in the user's coordinates (none for ``degree = 0``),
    joined by each comma-separated item of ``spec``: ``poly:N`` (monomials up to ``N``),
    ``trig:I+J[:H]`` (:class:`TrigFeatures` of coordinates ``I, J``, 0-based, harmonics ``H``,
    default 1) and ``inverse-distance:DIM`` (:class:`InverseDistanceFeatures`, space dimension
    ``DIM``). Example: ``parse_feature_spec("trig:0", 2, 2)`` is the pendulum's library.
    """
    if not (isinstance(degree, int) and 0 <= degree <= 4):
        raise ValueError(f"feature spec: degree must be an integer 0 to 4, got {degree!r}")
    parts = [MonomialFeatures(M, degree, standardised=False)] if degree else []
    parts += [_spec_item(item, M) for item in (spec or "").split(",") if item.strip()]
    if not parts:
        raise ValueError("feature spec: no features; give a degree >= 1 or some --features")
    return parts[0] if len(parts) == 1 else FeatureUnion(*parts)
