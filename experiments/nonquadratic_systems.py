"""Non-quadratic conserved quantities: the direct estimator with the library each law needs.

Systems (issue 24): the quartic oscillator (energy p²/2 + q⁴/4, monomials to degree 4);
Hénon–Heiles at low (regular) and high (chaotic) energies (cubic energy and nothing else;
monomials to degree 3, and to degree 4 as a check that a larger library adds nothing); the
pendulum (p²/2 − cos q; trigonometric features of q); planar Kepler (energy with 1/r, angular
momentum and the two Laplace–Runge–Lenz components, related by A² = 1 + 2 H L²: 4 laws in the
span of monomials to degree 3 with 1/r, x/r, y/r, 3 functionally independent); the periodic
3-particle Toda lattice (momentum, energy and a cubic: 3 independent, 6 in the span with the
products P², P³, P·H); and two systems with no law in their library (a damped quartic
oscillator; the pendulum with polynomials only).

    python experiments/nonquadratic_systems.py            # the table (a few minutes)
    python experiments/nonquadratic_systems.py --quick    # two small systems (a test runs it)

Data: 30 trajectories of 21 points (float64, DOP853 at rtol = atol = 1e-12), noise 0 and 1 %
of each coordinate's spread (estimated by the estimator, or given to it). Each row: the truth,
the library, the calibrated count (span) with the number of functionally independent laws,
the formulas, wall time, and the least-squares baseline (eigenvalues of within/total scatter
below 1e-2 on the same library).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.integrate
import scipy.linalg
import torch

from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.features import ConditionedFeatures, MonomialFeatures
from pyro_razor.discovery.general import general_discovery
from pyro_razor.discovery.libraries import (
    CallableFeatures,
    FeatureUnion,
    InverseDistanceFeatures,
    ProductFeatures,
    TrigFeatures,
)
from pyro_razor.discovery.scatter import scatter_matrices
from pyro_razor.systems import HamiltonianSystem, gaussian_initial, simulate
from pyro_razor.systems.units import fit_scaling

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the direct benchmark beside it
from direct_benchmark import outcome  # noqa: E402
from nonlinear_systems import (  # noqa: E402
    energy_shell,
    henon_heiles_energy,
    kepler_energy,
    kepler_laws,
    kepler_orbits,
    pendulum_energy,
    quartic_energy,
    toda_energy,
    toda_exponentials,
    toda_laws,
)

F64 = torch.float64
B, N_POINTS = 30, 21


# ----------------------------------------------------------------------------- systems

def damped_quartic(n, g, dt):
    """Not Hamiltonian: q' = p, p' = −q³ − 0.3 p (no conserved quantity)."""
    x0 = torch.randn(B, 2, generator=g, dtype=F64).numpy()
    out = []
    for start in x0:
        sol = scipy.integrate.solve_ivp(lambda t, y: [y[1], -y[0] ** 3 - 0.3 * y[1]],
                                        (0, dt * (n - 1)), start, method="DOP853", rtol=1e-12,
                                        atol=1e-12, t_eval=dt * np.arange(n))
        out.append(sol.y.T)
    return torch.tensor(np.stack(out), dtype=F64)


def _hamiltonian(name, M, H, sampler):
    return HamiltonianSystem(name, M, H, sampler)


def raw_poly(M, degree):
    return MonomialFeatures(M, degree, standardised=False)


def toda_library():
    exps = CallableFeatures(6, [lambda x, i=i: toda_exponentials(x[:, :3])[:, i]
                                for i in range(3)],
                            ["exp(q1 − q2)", "exp(q2 − q3)", "exp(q3 − q1)"])
    return FeatureUnion(raw_poly(6, 3), exps, ProductFeatures(exps, raw_poly(6, 1)))


# name: (simulator, names, library, library label, truth span, truth independent, dt)
def cases():
    hh = ["x", "y", "px", "py"]
    return {
        "quartic": (_hamiltonian("quartic", 2, quartic_energy, gaussian_initial(2)),
                    ["q", "p"], raw_poly(2, 4), "poly ≤ 4", 1, 1, 0.2),
        "henon_heiles_low": (_hamiltonian("hh", 4, henon_heiles_energy, energy_shell(0.06, 0.09)),
                             hh, raw_poly(4, 3), "poly ≤ 3", 1, 1, 0.3),
        "henon_heiles_high": (_hamiltonian("hh", 4, henon_heiles_energy,
                                           energy_shell(0.14, 0.166)),
                              hh, raw_poly(4, 3), "poly ≤ 3", 1, 1, 0.3),
        "henon_heiles_high_deg4": (_hamiltonian("hh", 4, henon_heiles_energy,
                                                energy_shell(0.14, 0.166)),
                                   hh, raw_poly(4, 4), "poly ≤ 4", 1, 1, 0.3),
        "pendulum": (_hamiltonian("pendulum", 2, pendulum_energy, gaussian_initial(2)),
                     ["q", "p"], FeatureUnion(TrigFeatures(2, [0]), raw_poly(2, 2)),
                     "cos q, sin q, poly ≤ 2", 1, 1, 0.2),
        "kepler": (_hamiltonian("kepler", 4, kepler_energy, kepler_orbits),
                   hh, FeatureUnion(raw_poly(4, 3), InverseDistanceFeatures(4, 2)),
                   "poly ≤ 3, 1/r, x/r, y/r", 4, 3, 0.3),
        "toda3": (_hamiltonian("toda", 6, toda_energy, gaussian_initial(6, 0.5)),
                  ["q1", "q2", "q3", "p1", "p2", "p3"], toda_library(),
                  "poly ≤ 3, e^(qi−qj), e^(qi−qj)·(q, p)", 6, 3, 0.2),
        "damped_quartic": (damped_quartic, ["q", "p"], raw_poly(2, 4), "poly ≤ 4", 0, 0, 0.2),
        "pendulum_poly": (_hamiltonian("pendulum", 2, pendulum_energy, gaussian_initial(2)),
                          ["q", "p"], raw_poly(2, 4), "poly ≤ 4 (no cos)", 0, 0, 0.2),
    }


TRUE_LAWS = {"kepler": kepler_laws, "toda3": toda_laws, "quartic": quartic_energy,
             "pendulum": pendulum_energy}
QUICK = ("quartic", "pendulum")
NOISES = ((0.0, False), (0.01, False), (0.01, True))  # (noise, told the estimator its level)
CUTOFF = 1e-2


def data(name: str, noise: float = 0.0, seed: int = 0, B: int = B, n: int = N_POINTS):
    """``(B, n, M)`` states of case ``name`` with Gaussian noise of std ``noise`` times each
    coordinate's spread."""
    system, _, _, _, _, _, dt = cases()[name]
    g = torch.Generator().manual_seed(seed)
    if isinstance(system, HamiltonianSystem):
        x = simulate(system, system.sample_initial(B, g), n, dt)
    else:
        x = system(n, g, dt)
    return x + noise * x.flatten(0, 1).std(0) * torch.randn(x.shape, generator=g, dtype=F64)


def true_law_drift(name: str, x: torch.Tensor) -> float | None:
    """Largest change of a true law along a noise-free trajectory, relative to its spread."""
    if name not in TRUE_LAWS:
        return None
    v = TRUE_LAWS[name](x)
    v = v[..., None] if v.dim() == 2 else v
    return float(((v - v[:, :1]).abs().amax((0, 1)) / v.flatten(0, 1).std(0)).max())


def least_squares_count(x: torch.Tensor, library, cutoff: float = CUTOFF) -> int:
    """Baseline: generalised eigenvalues of (within, total) scatter of the same conditioned
    library counted below a fixed ``cutoff`` (no noise model, no test)."""
    scaling = fit_scaling(x)
    zs = list(scaling.to_scaled(x))
    s = scatter_matrices(zs, ConditionedFeatures(library, scaling, torch.cat(zs)))
    T = s.total.numpy()
    ratios = scipy.linalg.eigvalsh(s.within.numpy(), T + 1e-12 * np.trace(T) * np.eye(len(T)))
    return int((ratios < cutoff).sum())


def run_case(name: str, noise: float, given: bool = False, seed: int = 0) -> dict:
    """One row: ``given`` passes the true noise level (``noise`` x each coordinate's spread of
    the noise-free data) instead of estimating it."""
    _, names, library, label, span, independent, _ = cases()[name]
    x = data(name, noise, seed)
    level = (noise * data(name, 0.0, seed).flatten(0, 1).std(0)).tolist() if given else None
    start = time.perf_counter()
    e = direct_estimate(x, features=library, noise=level)
    found = general_discovery(e, x, names)
    seconds = time.perf_counter() - start
    conserved = [q for q in found.quantities if q["kind"] == "conserved"]
    return {"name": name, "noise": f"{noise:g}" + (" (given)" if given else ""),
            "library": f"{label} (F={library.num_features})",
            "truth": f"{span} / {independent}", "outcome": outcome(e),
            "span": len(conserved), "independent": found.evidence["independent"],
            "formulas": [q["formula"] if q["independent"] else
                         f"{q['label']} = f({', '.join(q['function_of'])})" for q in conserved],
            "seconds": seconds, "baseline": least_squares_count(x, library),
            "drift": true_law_drift(name, data(name, 0.0, seed)) if noise == 0 else None}


def table(names) -> list[dict]:
    print("| system | library (F) | noise | truth: span / independent | calibrated | span | "
          "independent | formulas (conserved) | s | least squares |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        for noise, given in NOISES:
            r = run_case(name, noise, given)
            rows.append(r)
            text = "; ".join(r["formulas"]) or "—"
            text = text if len(text) <= 400 else text[:397] + "..."
            print(f"| {name} | {r['library']} | {r['noise']} | {r['truth']} | {r['outcome']} | "
                  f"{r['span']} | {r['independent']} | {text} | {r['seconds']:.2f} | "
                  f"{r['baseline']} |", flush=True)
    drifts = {r["name"]: r["drift"] for r in rows if r["drift"] is not None}
    print("\ntrue laws' largest relative change along the noise-free data: "
          + ", ".join(f"{k} {v:.1e}" for k, v in drifts.items()))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quartic and pendulum only")
    parser.add_argument("--systems", default=None, help="comma-separated case names")
    args = parser.parse_args(argv)
    names = (args.systems.split(",") if args.systems else QUICK if args.quick else list(cases()))
    start = time.perf_counter()
    table(names)
    print(f"\nwall time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
