"""Systems built to test the direct estimator, and its calibration benchmark.

``SYSTEMS`` maps a name to ``(system, true number of quadratic conserved quantities)``:
systems with quadratic laws (one oscillator; detuned, coupled and nearly resonant "beating"
pairs; two masses on a spring, free or with zero total momentum in every run; three identical
oscillators, u(3); planar two-body gravity, 7) and systems with none (pendulum, quartic
oscillator, Hénon–Heiles, a chaotic double pendulum).

    python experiments/direct_benchmark.py grid        # outcome per system, regime and noise
    python experiments/direct_benchmark.py rates       # false claims / misses over 20 seeds

Noise is Gaussian with std ``noise`` times each coordinate's spread; regimes: 30 trajectories
of 11 points at dt 0.3 ("n11"), of 3 points ("n3"), and of 101 points over 0.05 time units
("short"). Both tables set the least-squares baseline (:func:`least_squares_count`, a fixed
cut-off on the within/total eigenvalues, no noise model) beside the calibrated estimate.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from pyro_razor.discovery.direct import direct_estimate
from pyro_razor.discovery.features import MonomialFeatures
from pyro_razor.discovery.scatter import scatter_matrices
from pyro_razor.systems import HamiltonianSystem, gaussian_initial, make_system, simulate
from pyro_razor.systems.units import fit_scaling

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the razor's benchmark beside it
from discovery_systems import SYSTEMS as RAZOR_SYSTEMS  # noqa: E402
from discovery_systems import oscillator_pair  # noqa: E402

F64 = torch.float64


def _henon_heiles(x):
    q1, q2, p1, p2 = x.unbind(-1)
    return 0.5 * (p1**2 + p2**2 + q1**2 + q2**2) + q1**2 * q2 - q2**3 / 3


def _double_pendulum(x):
    """Equal masses and lengths, g = 1, angles and canonical momenta."""
    t1, t2, p1, p2 = x.unbind(-1)
    c, s = torch.cos(t1 - t2), torch.sin(t1 - t2)
    return ((p1**2 + 2 * p2**2 - 2 * p1 * p2 * c) / (2 * (1 + s**2))
            - 2 * torch.cos(t1) - torch.cos(t2))


def _spring(x):
    """Masses 1 and 0.5 on a unit spring, in one dimension."""
    q1, q2, p1, p2 = x.unbind(-1)
    return p1**2 / 2 + p2**2 / (2 * 0.5) + 0.5 * (q1 - q2) ** 2


def _zero_momentum(n, g):
    x = torch.randn(n, 4, generator=g, dtype=F64, device=g.device)
    x[:, 3] = -x[:, 2]
    return x


def _small(n, g):
    return 0.3 * torch.randn(n, 4, generator=g, dtype=F64, device=g.device)


def _wide_angles(n, g):
    x = torch.randn(n, 4, generator=g, dtype=F64, device=g.device)
    x[:, :2] *= 1.5
    return x


MASSES = (1.0, 0.5)


def _gravity(x):
    """Planar two-body gravity (G = 1), x = (x1, y1, x2, y2, px1, py1, px2, py2)."""
    q = x[..., :4].unflatten(-1, (2, 2))
    p = x[..., 4:].unflatten(-1, (2, 2))
    m = torch.tensor(MASSES, dtype=x.dtype, device=x.device)
    kinetic = ((p**2).sum(-1) / (2 * m)).sum(-1)
    return kinetic - m[0] * m[1] / (q[..., 0, :] - q[..., 1, :]).norm(dim=-1)


def _bound_orbits(n, g):
    """Relative separation 0.8-1.2, tangential speed 0.8-1.1 of circular, random centre of
    mass position and momentum: bound, non-colliding orbits."""
    m1, m2 = MASSES
    M, mu = m1 + m2, m1 * m2 / (m1 + m2)
    u = torch.rand(n, 3, generator=g, dtype=F64)
    angle, r = 2 * math.pi * u[:, 0], 0.8 + 0.4 * u[:, 1]
    speed = (M / r).sqrt() * (0.8 + 0.3 * u[:, 2])
    radial = torch.stack([angle.cos(), angle.sin()], -1)
    tangent = torch.stack([-angle.sin(), angle.cos()], -1)
    centre = torch.randn(n, 2, generator=g, dtype=F64)
    P = 0.5 * torch.randn(n, 2, generator=g, dtype=F64)
    rel, v = radial * r[:, None], tangent * speed[:, None]
    q1, q2 = centre + rel * m2 / M, centre - rel * m1 / M
    p1, p2 = mu * v + P * m1 / M, -mu * v + P * m2 / M
    return torch.cat([q1, q2, p1, p2], -1)


def _system(name, M, H, sampler):
    return HamiltonianSystem(name, M, H, sampler)


SYSTEMS = {
    "sho": (_system("sho", 2, lambda x: 0.5 * (x**2).sum(-1), gaussian_initial(2)), 1),
    "detuned": (RAZOR_SYSTEMS["detuned"][0], 2),
    "coupled": (RAZOR_SYSTEMS["coupled"][0], 2),
    "beating": (_system("beating", 4, oscillator_pair(1.05**2, 0.0), gaussian_initial(4)), 2),
    "spring_free": (_system("spring_free", 4, _spring, gaussian_initial(4)), 3),
    "spring_zero": (_system("spring_zero", 4, _spring, _zero_momentum), 3),
    "u3": (make_system("oscillators", n=3), 9),
    "gravity2": (_system("gravity2", 8, _gravity, _bound_orbits), 7),
    "pendulum": (_system("pendulum", 2, lambda x: 0.5 * x[..., 1] ** 2 - torch.cos(x[..., 0]),
                         gaussian_initial(2)), 0),
    "quartic": (_system("quartic", 2, lambda x: 0.5 * x[..., 1] ** 2 + 0.25 * x[..., 0] ** 4,
                        gaussian_initial(2)), 0),
    "henon_heiles": (_system("henon_heiles", 4, _henon_heiles, _small), 0),
    "double_pendulum": (_system("double_pendulum", 4, _double_pendulum, _wide_angles), 0),
}
NULL_SYSTEMS = ("pendulum", "quartic", "henon_heiles", "double_pendulum")


def data(name: str, B: int = 30, n: int = 11, dt: float = 0.3, noise: float = 0.0,
         seed: int = 0, offset: float = 0.0) -> tuple[torch.Tensor, int]:
    """``(B, n, M)`` trajectories of ``SYSTEMS[name]`` (noise: std relative to each
    coordinate's spread; offset: added to the positions) and the true count."""
    system, truth = SYSTEMS[name]
    g = torch.Generator().manual_seed(seed)
    x = simulate(system, system.sample_initial(B, g), n, dt)
    x = x + noise * x.flatten(0, 1).std(0) * torch.randn(x.shape, generator=g, dtype=F64)
    x[..., : x.shape[-1] // 2] += offset
    return x, truth


REGIMES = {"n11": (11, 0.3), "n3": (3, 0.3), "short": (101, 0.0005)}
NOISES = (0.0, 0.01, 0.03, 0.1)


def outcome(e) -> str:
    """``"2"`` determined, ``"2+1"`` conserved + approximately conserved, ``"[0,2]"``."""
    if e.status == "determined":
        return str(e.count)
    if e.status == "approximate":
        return f"{e.count}+{e.range[1] - e.count}"
    return f"[{e.range[0]},{e.range[1]}]"


def grid(names, tolerance: float) -> None:
    print(f"| system | truth | regime | {' | '.join(f'noise {s:g}' for s in NOISES)} | ms | "
          "least squares |")
    print("|---|---|---|" + "---|" * (len(NOISES) + 2))
    for name in names:
        for regime, (n, dt) in REGIMES.items():
            cells, ms, baseline = [], [], []
            for noise in NOISES:
                x, truth = data(name, n=n, dt=dt, noise=noise)
                e = direct_estimate(x, tolerance=tolerance)
                cells.append(outcome(e))
                ms.append(1000 * e.seconds)
                baseline.append(str(least_squares_count(x)))
            print(f"| {name} | {truth} | {regime} | {' | '.join(cells)} | "
                  f"{min(ms):.0f}-{max(ms):.0f} | {' / '.join(baseline)} |", flush=True)


BASELINE_CUTOFF = 1e-2


def least_squares_count(x: torch.Tensor, cutoff: float = BASELINE_CUTOFF) -> int:
    """The simplest method that could answer (Kaiser, Kutz & Brunton 2018; issue 23's forty
    lines): generalised eigenvalues of (within-trajectory, total) scatter of the standardised
    degree <= 2 monomials, counted below a fixed ``cutoff`` — no noise model, no test."""
    zs = list(fit_scaling(x).to_scaled(x))
    s = scatter_matrices(zs, MonomialFeatures(x.shape[-1], 2))
    T = s.total.numpy()
    ratios = scipy.linalg.eigvalsh(s.within.numpy(), T + 1e-12 * np.trace(T) * np.eye(len(T)))
    return int((ratios < cutoff).sum())


def _cell(name: str, regime: str, noise: float, seeds: int, tolerance: float) -> dict:
    n, dt = REGIMES[regime]
    tally = dict.fromkeys(["false", "wrong", "right", "approx", "held", "ls_false", "ls_miss",
                           "ls_right"], 0)
    for seed in range(seeds):
        x, truth = data(name, n=n, dt=dt, noise=noise, seed=100 + seed)
        e = direct_estimate(x, tolerance=tolerance)
        tally["false"] += e.kinds.count("conserved") > truth
        if e.status == "determined":
            tally["right"] += e.count == truth
            tally["wrong"] += e.count != truth
        tally["approx"] += e.kinds.count("approximate") > 0
        tally["held"] += e.status == "undetermined" and e.range[0] <= truth <= e.range[1]
        baseline = least_squares_count(x)
        tally["ls_false"] += baseline > truth
        tally["ls_miss"] += baseline < truth
        tally["ls_right"] += baseline == truth
    return {**tally, "truth": truth}


def rates(names, tolerance: float, seeds: int) -> None:
    """Per system and noise over ``seeds`` data sets (regimes n11 and n3): runs claiming more
    exactly conserved quantities than the truth (false claim), determined with a wrong count,
    determined right, claiming an approximately conserved one, undetermined with the truth in
    the range; and the least-squares baseline's over-counts, under-counts and right counts."""
    keys = ["false", "wrong", "right", "approx", "held", "ls_false", "ls_miss", "ls_right"]
    print("| system | truth | regime | noise | false claim | wrong count | right | "
          "approx. claimed | undetermined, range holds truth | LS over | LS under | LS right |")
    print("|---|---|---|---|" + "---|" * len(keys))
    for name in names:
        for regime in ("n11", "n3"):
            for noise in NOISES:
                t = _cell(name, regime, noise, seeds, tolerance)
                print(f"| {name} | {t['truth']} | {regime} | {noise:g} | "
                      + " | ".join(f"{t[k]}/{seeds}" for k in keys) + " |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["grid", "rates"])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    names = args.systems.split(",")
    start = time.perf_counter()
    if args.what == "grid":
        grid(names, args.tolerance)
    else:
        rates(names, args.tolerance, args.seeds)
    print(f"\nwall time {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
