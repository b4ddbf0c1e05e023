r"""``pyro_razor.discover``: one call from trajectories to the conserved quantities.

Example::

    import pyro_razor
    found = pyro_razor.discover(x, names=["x", "y", "px", "py"])   # x: (B, n, M) array
    print(found.verdict)
    for q in found.quantities:
        print(q["kind"], q["formula"])

The direct estimate (:func:`~pyro_razor.discovery.direct.direct_estimate`, milliseconds) always
runs; ``razor=True`` adds the razor stage of ``pyro-razor discover`` (trains a vanilla and a
learned-symmetry HNN, minutes; :func:`~pyro_razor.runs.discover.run_discovery`), whose
:class:`~pyro_razor.discovery.report.Discovery` then carries the direct answer in
``evidence["direct"]``.

Laws beyond quadratics: ``degree=3`` or ``4`` (monomials in the user's coordinates) or
``features=`` any library of :mod:`~pyro_razor.discovery.libraries` (e.g.
``FeatureUnion(TrigFeatures(2, [0]), MonomialFeatures(2, 2, standardised=False))`` for a
pendulum) go through :func:`~pyro_razor.discovery.general.general_discovery`: sparse formulas
and the number of functionally independent laws; the razor stage handles quadratics only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.features import MonomialFeatures
from pyro_razor.discovery.general import general_discovery
from pyro_razor.discovery.laws import direct_discovery
from pyro_razor.discovery.report import Discovery
from pyro_razor.discovery.trajectories import as_trajectory_list
from pyro_razor.symmetry import phase_labels

__all__ = ["discover"]


def _from_file(path: str, dt, names) -> tuple[list, list[str], float]:
    from pyro_razor.systems.files import read_trajectories

    data = read_trajectories(path, dt=dt, names=names)
    xs = list(data.trajectories) + (list(data.test) if data.test is not None else [])
    return xs, list(data.names), data.dt


def discover(
    trajectories,
    dt: float | None = None,
    names: Sequence[str] | None = None,
    *,
    alpha: float = 0.05,
    noise=None,
    tolerance: float = 0.05,
    razor: bool = False,
    degree: int = 2,
    features=None,
    out_dir: str | os.PathLike | None = None,
    **razor_settings,
) -> Discovery:
    """Which quantities do these trajectories conserve (quadratic unless told otherwise)?

    Args:
        trajectories: a ``(B, n, M)`` array, a list of ``(n_b, M)`` arrays of any lengths, or
            a trajectory file (``.npz``, ``.npy``, ``.csv``, ``.nc``; its test set is used too).
        dt: time between states (needed by the razor stage when the data carry none).
        names: ``M`` coordinate names, positions first (default ``q1..qd, p1..pd``).
        alpha, noise, tolerance: the direct estimate's test level, noise std in the data's units
            (``None``: estimated) and relative drift tolerance.
        razor: also run the razor stage (trains networks; writes to ``out_dir``; quadratic
            laws only).
        degree: the monomials' degree, 1 to 4 (2 with ``features=None``: the quadratic
            ``(A, b)`` answer with its Lie algebra).
        features: a feature library of ``M`` coordinates (:mod:`.libraries`,
            :func:`~pyro_razor.discovery.libraries.parse_feature_spec`); replaces the
            monomials of ``degree``.
        out_dir: the razor stage's run directory (default ``runs/discover_<name>``).
        razor_settings: :func:`~pyro_razor.runs.discover.discovery_config`'s keywords
            (``quantities``, ``epochs``, ``seed``, ``device``, ``test_fraction``) and
            ``progress``, ``overwrite``, ``report``, ``confirm_epochs``.

    Returns:
        The :class:`~pyro_razor.discovery.report.Discovery`.
    """
    general = features is not None or degree != 2
    if general and razor:
        raise ValueError("discover: the razor stage only handles quadratic laws; use "
                         "razor=False with degree != 2 or features=...")
    if isinstance(trajectories, (str, os.PathLike)):
        path = os.fspath(trajectories)
        if razor:
            return _razor(path, out_dir, dt, names, alpha, noise, tolerance, razor_settings)
        xs, names, _ = _from_file(path, dt, names)
    else:
        xs = as_trajectory_list(trajectories, "discover")
        names = list(names) if names is not None else phase_labels(xs[0].shape[-1])
        if razor:
            path = _write_arrays(xs, dt, names, out_dir)
            return _razor(path, out_dir, None, names, alpha, noise, tolerance, razor_settings)
    if len(names) != xs[0].shape[-1]:
        raise ValueError(f"discover: got {len(names)} names for M = {xs[0].shape[-1]}")
    if general:
        M = xs[0].shape[-1]
        library = features if features is not None else MonomialFeatures(M, degree, False)
        estimate = direct_estimate(xs, alpha=alpha, noise=noise, tolerance=tolerance,
                                   features=library)
        return general_discovery(estimate, xs, names)
    estimate = direct_estimate(xs, alpha=alpha, noise=noise, tolerance=tolerance)
    return direct_discovery(estimate, names)


def _write_arrays(xs, dt, names, out_dir) -> str:
    import torch

    from pyro_razor.systems.files import write_trajectories

    if dt is None or len({x.shape[0] for x in xs}) != 1:
        raise ValueError("discover: the razor stage needs dt and trajectories of equal length; "
                         "give dt=..., or razor=False for the direct estimate alone")
    folder = Path(out_dir) if out_dir is not None else Path("runs") / "discover_arrays"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trajectories.npz"
    write_trajectories(path, torch.stack(xs), dt, names=names)
    return str(path)


def _razor(path, out_dir, dt, names, alpha, noise, tolerance, settings) -> Discovery:
    from pyro_razor.runs.discover import run_discovery

    return run_discovery(path, out_dir, dt=dt, names=names, alpha=alpha, noise=noise,
                         tolerance=tolerance, razor=True, **settings)
