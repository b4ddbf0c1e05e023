r"""The ELBO along the straight path from a run's learned generators to an oracle group.

    python experiments/sweeps/elbo_path.py RUN_DIR OUT.jsonl \
        [--target oracle_orbit] [--alphas 0 0.25 0.5 0.75 1] [--refit-epochs 200]

For each ``alpha`` the learned ``(K, M+1, M+1)`` generators ``G_l`` are replaced by the fixed
``G(alpha) = (1 - alpha) G_l + alpha Q G_t``, where ``G_t`` holds the target variant's ``L <= K``
generators padded with ``K - L`` zero rows and ``Q`` is the orthogonal ``K x K`` matrix closest to
mapping ``G_t`` onto ``G_l`` (orthogonal Procrustes). Because ``tau`` is uniform in a ball of
``R^K`` (or a centred normal), ``Q G_t`` defines exactly the same distribution of transforms
``expm(sum_k tau_k G_k)`` as ``G_t``: the path ends in the oracle's model, and it is the shortest
straight path there. At each point the script records the ``-ELBO/N`` (NLL/N + KL/N) and the
test MSEs twice: with the learned posterior over the weights unchanged, and after
``--refit-epochs`` epochs of SVI on the weights alone (``eta`` fixed at ``G(alpha)``), starting
from the learned posterior. The refit profile shows whether the ELBO rises or falls between the
learned point and the oracle: a barrier, a plateau, or a slope the optimiser did not follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import pyro
import torch

from pyro_razor import inference
from pyro_razor.models.quantities import FixedQuantities
from pyro_razor.runs.variants import build_model, load_variant


def aligned_target(learned: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``Q G_t``: ``target`` ``(L, M+1, M+1)`` padded to ``learned``'s ``K`` rows and rotated by
    the orthogonal ``Q`` that minimises ``||G_l - Q G_t||_F`` (``Q = U V^T`` from the SVD of
    ``G_l G_t^T`` with generators flattened to rows)."""
    K, L = learned.shape[0], target.shape[0]
    if L > K:
        raise ValueError(f"the target has {L} generators but the run learned only K = {K}")
    padded = torch.zeros_like(learned)
    padded[:L] = target
    U, _, Vh = torch.linalg.svd(learned.reshape(K, -1) @ padded.reshape(K, -1).T)
    return ((U @ Vh) @ padded.reshape(K, -1)).reshape(learned.shape)


def metrics(config, model, guide, data) -> dict:
    """``-ELBO/N``, NLL/N, KL/N and test MSEs with the evaluation settings of the run."""
    ev = config.evaluation
    N = data.n_transitions
    pyro.set_rng_seed(config.train.seed)
    train = inference.evaluate(model, guide, data.states, data.next_states, ev.num_samples,
                               ev.tau_samples, chunk_size=ev.chunk_size)
    kl = inference.kl_divergence_estimate(model, guide, data.states) / N
    out = {"nll_per_n": train["nll_per_n"], "kl_per_n": kl,
           "neg_elbo_per_n": train["nll_per_n"] + kl, "train_mse": train["mse"]}
    for name, (s, n) in data.tests.items():
        test = inference.evaluate(model, guide, s, n, ev.num_samples, ev.tau_samples,
                                  chunk_size=ev.chunk_size)
        out[f"test_mse{'_' + name if name else ''}"] = test["mse"]
    return out


def path_point(run_dir: str, target: str, alpha: float, refit_epochs: int) -> dict:
    config, data, model, guide = load_variant(run_dir, "learned")
    with torch.no_grad():
        learned = model.generators().detach().clone()
        oracle = build_model(config, target, data.system, learned.device,
                             phase_dim=learned.shape[-1] - 1).generators().to(learned)
        G = (1 - alpha) * learned + alpha * aligned_target(learned, oracle)
    model.quantities = FixedQuantities(G)
    record = {"alpha": alpha, "frozen": metrics(config, model, guide, data)}
    if refit_epochs:
        train_config = dataclasses.replace(config.train, epochs=refit_epochs,
                                           eta_warmup_epochs=0, checkpoint_every=0)
        start = time.perf_counter()
        result = inference.train(model, guide, data.states, data.next_states, train_config,
                                 progress=False)
        record["refit_s"] = time.perf_counter() - start
        record["refit"] = metrics(config, model, guide, data)
        record["refit_curve"] = [round(h["neg_elbo_per_n"], 4) for h in result.history]
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--target", default="oracle_orbit", help="oracle variant to walk to")
    parser.add_argument("--alphas", nargs="*", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--refit-epochs", type=int, default=200)
    args = parser.parse_args(argv)
    for alpha in args.alphas:
        record = {"run": args.run_dir, "target": args.target,
                  **path_point(args.run_dir, args.target, alpha, args.refit_epochs)}
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        short = {k: v for k, v in record.items() if k != "refit_curve"}
        print(json.dumps(short), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
