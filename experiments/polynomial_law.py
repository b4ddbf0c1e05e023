"""How close a learned quantity is to the system's laws (issue 24, point 3).

    PYTHONPATH=. python experiments/polynomial_law.py CONFIG RUN_DIR [--laws MODULE:FUNCTION]

reads the learned variant of ``RUN_DIR``: ``learned/quantities.json`` (the coefficients ``eta``
of a polynomial family, in model units) or, for the quadratic family, ``learned/generators.pt``
(each generator's quadratic form, :func:`~pyro_razor.symmetry.quantity_from_generator`), and
the config's data, and prints, for each learned quantity ``C``:

- ``energy_r2``: the fraction of ``C``'s variance over the training and test states that a
  fit ``a H + c`` (``H`` the system's Hamiltonian, mapped to model units) explains — 1 when
  ``C`` is an affine function of the energy, 0 when unrelated;
- with ``--laws``: a function ``(..., M) -> (..., L)`` of the system's true laws (e.g.
  ``experiments.nonlinear_systems:kepler_laws``), ``laws_r2`` (a fit ``sum_l a_l C_l + c`` on
  all of them together) and ``law_r2`` (each law alone);
- ``within_total_train`` / ``_test``: the within-trajectory variance of ``C`` over its total
  variance on the training and on the test trajectories (0 for a conserved quantity), beside
  the same for ``H``, which is conserved up to the integrator's error.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import torch

from pyro_razor.discovery.span_test import QuadraticQuantities
from pyro_razor.models.polynomial_quantities import PolynomialQuantities
from pyro_razor.runs.config import load_experiment
from pyro_razor.runs.data import RunData
from pyro_razor.symmetry import quantity_from_generator

F64 = torch.float64


def monomial_values(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``(..., M)`` -> ``(..., F)`` the monomials of the model's polynomial quantities
    (:meth:`PolynomialQuantities.monomials`, the order of their ``eta``)."""
    return PolynomialQuantities(x.shape[-1], 1, degree).to(x.dtype).monomials(x)


def within_over_total(values: torch.Tensor) -> float:
    """``(B, n)`` values along ``B`` trajectories: within-trajectory over total variance."""
    within = (values - values.mean(1, keepdim=True)).square().sum()
    return float(within / (values - values.mean()).square().sum().clamp_min(1e-300))


def explained(C: torch.Tensor, laws: torch.Tensor) -> float:
    """Fraction of the variance of ``C (N,)`` explained by ``sum_l a_l laws[:, l] + c``
    (least squares; ``laws (N, L)``)."""
    X = torch.cat([laws, torch.ones_like(C)[:, None]], -1)
    fit = X @ torch.linalg.lstsq(X, C[:, None]).solution
    return float(1 - (C - fit[:, 0]).square().sum() / (C - C.mean()).square().sum())


def energy_r2(C: torch.Tensor, H: torch.Tensor) -> float:
    """Fraction of the variance of ``C`` explained by ``a H + c`` (least squares)."""
    return explained(C, H[:, None])


def learned_quantities(run_dir: Path, config):
    """The learned quantities of ``run_dir`` as a function of model-unit states
    ``z (..., M)`` -> ``(..., K)``: polynomial ``eta`` from ``quantities.json``, else the
    quadratic forms of ``generators.pt``
    (:class:`~pyro_razor.discovery.span_test.QuadraticQuantities`)."""
    learned = run_dir / "learned"
    if (learned / "quantities.json").is_file():
        eta = torch.tensor(json.loads((learned / "quantities.json").read_text())["eta"], dtype=F64)
        return lambda z: monomial_values(z, config.model.quantity_degree) @ eta.T
    quadratic = QuadraticQuantities(*quantity_from_generator(
        torch.load(learned / "generators.pt").to(F64)))
    return lambda z: quadratic(z.reshape(-1, z.shape[-1]))[0].reshape(*z.shape[:-1], -1)


def law_report(config_path: str | Path, run_dir: str | Path, laws=None) -> list[dict]:
    """One record per learned quantity (module docstring); ``laws``: the system's true laws,
    a function ``(..., M) -> (..., L)`` in the system's units, or ``None``."""
    config = load_experiment(config_path)
    data = RunData.load(config.data, "cpu", F64)
    quantities = learned_quantities(Path(run_dir), config)
    energy = data.system.hamiltonian

    def values(z):  # (B, n, M) model units -> quantities (B, n, K), energy, laws
        x = data.scaling.to_original(z)
        return quantities(z), energy(x), None if laws is None else laws(x)

    (C_tr, H_tr, L_tr), (C_te, H_te, L_te) = values(data.train.to(F64)), values(data.test.to(F64))
    both_H = torch.cat([H_tr.flatten(), H_te.flatten()])
    both_L = None if laws is None else torch.cat([L_tr.flatten(0, -2), L_te.flatten(0, -2)])
    out = []
    for k in range(C_tr.shape[-1]):
        both_C = torch.cat([C_tr[..., k].flatten(), C_te[..., k].flatten()])
        row = {"quantity": k + 1, "energy_r2": energy_r2(both_C, both_H)}
        if both_L is not None:
            row["laws_r2"] = explained(both_C, both_L)
            row["law_r2"] = [explained(both_C, both_L[:, j:j + 1]) for j in range(both_L.shape[1])]
        row.update({"within_total_train": within_over_total(C_tr[..., k]),
                    "within_total_test": within_over_total(C_te[..., k]),
                    "energy_within_total_train": within_over_total(H_tr),
                    "energy_within_total_test": within_over_total(H_te)})
        out.append(row)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run_dir")
    parser.add_argument("--laws", help="MODULE:FUNCTION giving the system's true laws")
    args = parser.parse_args(argv)
    laws = None
    if args.laws is not None:
        module, _, name = args.laws.partition(":")
        laws = getattr(importlib.import_module(module), name)
    for row in law_report(args.config, args.run_dir, laws):
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else
                          [round(u, 6) for u in v] if isinstance(v, list) else v
                          for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
