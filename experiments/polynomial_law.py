"""How close a learned polynomial quantity is to the system's energy (issue 24, point 3).

    PYTHONPATH=. python experiments/polynomial_law.py CONFIG RUN_DIR

reads ``RUN_DIR/learned/quantities.json`` (the coefficients ``eta`` of a polynomial learned
variant, in model units) and the config's data, and prints, for each learned quantity ``C``:

- ``energy R^2``: the fraction of ``C``'s variance over the training and test states that a
  fit ``a H + c`` (``H`` the system's Hamiltonian, mapped to model units) explains — 1 when
  ``C`` is an affine function of the energy, 0 when unrelated;
- ``within/total``: the within-trajectory variance of ``C`` over its total variance on the
  training and on the test trajectories (0 for a conserved quantity), beside the same for
  ``H``, which is conserved up to the integrator's error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pyro_razor.models.polynomial_quantities import PolynomialQuantities
from pyro_razor.runs.config import load_experiment
from pyro_razor.runs.data import RunData

F64 = torch.float64


def monomial_values(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``(..., M)`` -> ``(..., F)`` the monomials of the model's polynomial quantities
    (:meth:`PolynomialQuantities.monomials`, the order of their ``eta``)."""
    return PolynomialQuantities(x.shape[-1], 1, degree).to(x.dtype).monomials(x)


def within_over_total(values: torch.Tensor) -> float:
    """``(B, n)`` values along ``B`` trajectories: within-trajectory over total variance."""
    within = (values - values.mean(1, keepdim=True)).square().sum()
    return float(within / (values - values.mean()).square().sum().clamp_min(1e-300))


def energy_r2(C: torch.Tensor, H: torch.Tensor) -> float:
    """Fraction of the variance of ``C`` explained by ``a H + c`` (least squares)."""
    X = torch.stack([H, torch.ones_like(H)], -1)
    fit = X @ torch.linalg.lstsq(X, C[:, None]).solution
    return float(1 - (C - fit[:, 0]).square().sum() / (C - C.mean()).square().sum())


def law_report(config_path: str | Path, run_dir: str | Path) -> list[dict]:
    """One record per learned quantity (module docstring)."""
    config = load_experiment(config_path)
    record = json.loads((Path(run_dir) / "learned" / "quantities.json").read_text())
    eta = torch.tensor(record["eta"], dtype=F64)  # (K, F)
    data = RunData.load(config.data, "cpu", F64)
    energy = data.system.hamiltonian

    def values(z):  # (B, n, M) model units -> quantities (B, n, K), energy (B, n)
        C = monomial_values(z, config.model.quantity_degree) @ eta.T
        return C, energy(data.scaling.to_original(z))

    (C_tr, H_tr), (C_te, H_te) = values(data.train.to(F64)), values(data.test.to(F64))
    out = []
    for k in range(eta.shape[0]):
        both_C = torch.cat([C_tr[..., k].flatten(), C_te[..., k].flatten()])
        both_H = torch.cat([H_tr.flatten(), H_te.flatten()])
        out.append({"quantity": k + 1, "energy_r2": energy_r2(both_C, both_H),
                    "within_total_train": within_over_total(C_tr[..., k]),
                    "within_total_test": within_over_total(C_te[..., k]),
                    "energy_within_total_train": within_over_total(H_tr),
                    "energy_within_total_test": within_over_total(H_te)})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    for row in law_report(args.config, args.run_dir):
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
