"""Systems whose quadratic conserved quantities are known, for measuring ``pyro-razor discover``.

None of them is a built-in; each conserves fewer quadratic quantities than the largest group of
its shape (``u(2)``, 4 generators, for M = 4), or none:

- ``detuned``: two uncoupled oscillators with frequencies 1 and 1.6: only their two energies
  (``u(1)^2``), not the rotations and mixings of ``u(2)``;
- ``coupled``: two oscillators coupled by ``k q1 q2`` (k = 0.5): the two normal-mode energies
  (``u(1)^2``), neither of the uncoupled energies;
- ``central``: a particle in the plane in the quartic potential ``|q|^4 / 4``: the angular
  momentum ``x py - y px`` only (``H`` itself is quartic);
- ``pendulum``: ``p^2/2 - cos q``: no quadratic conserved quantity at all.

    python experiments/discovery_systems.py [--systems detuned central] [--noise 0 0.01]
        [--out runs/discovery] [--results experiments/discovery_results.jsonl]

writes a trajectory file per system and noise level, runs :func:`run_discovery` on it and
appends what it found beside the truth to the results file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pyro_razor.runs.discover import run_discovery
from pyro_razor.systems import HamiltonianSystem, gaussian_initial, simulate
from pyro_razor.systems.files import write_trajectories

F64 = torch.float64


def oscillator_pair(omega2: float, k: float):
    """``H = (p1² + p2² + q1² + omega2 q2²) / 2 + k q1 q2``."""
    def H(x):
        q1, q2, p1, p2 = x.unbind(-1)
        return 0.5 * (p1**2 + p2**2 + q1**2 + omega2 * q2**2) + k * q1 * q2

    return H


SYSTEMS = {
    "detuned": (HamiltonianSystem("detuned", 4, oscillator_pair(1.6**2, 0.0), gaussian_initial(4)),
                ["x", "y", "px", "py"], 2, "u(1)^2"),
    "coupled": (HamiltonianSystem("coupled", 4, oscillator_pair(1.0, 0.5), gaussian_initial(4)),
                ["x", "y", "px", "py"], 2, "u(1)^2"),
    "central": (HamiltonianSystem(
        "central", 4, lambda x: 0.5 * (x[..., 2:] ** 2).sum(-1) + 0.25 * ((x[..., :2] ** 2)
                                                                           .sum(-1)) ** 2,
        gaussian_initial(4)), ["x", "y", "px", "py"], 1, "u(1)"),
    "pendulum": (HamiltonianSystem("pendulum", 2, lambda x: 0.5 * x[..., 1] ** 2
                                   - torch.cos(x[..., 0]), gaussian_initial(2)),
                 ["theta", "p"], 0, "0"),
}
"""name -> (system, coordinate names, true number of quadratic conserved quantities, algebra)."""


def make_file(name: str, path: Path, noise: float = 0.0, B: int = 24, n: int = 11,
              dt: float = 0.3, seed: int = 0) -> Path:
    """Simulate ``B`` trajectories of ``n`` points of system ``name`` (Gaussian noise of std
    ``noise`` on every observed state) and write them to ``path``."""
    system, names, _, _ = SYSTEMS[name]
    generator = torch.Generator().manual_seed(seed)
    x = simulate(system, system.sample(B, generator), n, dt)
    if noise > 0:
        x = x + noise * torch.randn(x.shape, dtype=F64, generator=generator)
    write_trajectories(path, x, dt, names=names)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="*", default=list(SYSTEMS))
    parser.add_argument("--noise", nargs="*", type=float, default=[0.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/discovery")
    parser.add_argument("--results", default="experiments/discovery_results.jsonl")
    args = parser.parse_args(argv)
    for name in args.systems:
        _, _, true_count, true_algebra = SYSTEMS[name]
        for noise in args.noise:
            tag = f"{name}_noise{noise:g}_seed{args.seed}"
            data = make_file(name, Path(args.out) / f"{tag}.npz", noise, seed=args.seed)
            start = time.perf_counter()
            found = run_discovery(str(data), Path(args.out) / tag, progress=False,
                                  overwrite=True, seed=args.seed)
            record = {"system": name, "noise": noise, "seed": args.seed,
                      "true_count": true_count, "true_algebra": true_algebra,
                      "found": found.n_found, "algebra": found.algebra["name"],
                      "formulas": [q["formula"] for q in found.quantities],
                      "verdict": found.verdict, "warnings": found.warnings,
                      "elbo": found.evidence["elbo"], "wall_s": time.perf_counter() - start}
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
