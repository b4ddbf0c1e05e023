"""A run's variants in worker processes (``run --jobs``): the same numbers as one process with
the same thread count, warnings and errors carried back, and the memory check for several
variants at once."""

from __future__ import annotations

import json
import pickle
import warnings

import pytest
import torch
from test_experiment import VARIANTS, tiny_config

from pyro_razor.models.networks import ACTIVATIONS, get_activation
from pyro_razor.runs import RunError, run_experiment
from pyro_razor.runs.parallel import default_threads, run_in_processes
from pyro_razor.runs.variants import check_memory

TIMINGS = {"wall_time_s", "seconds_per_step"}


def _square_and_warn(x: int) -> int:
    """A worker task: warns for odd ``x``, fails for negative ones."""
    if x < 0:
        raise ValueError(f"negative input {x}")
    if x % 2:
        warnings.warn(f"odd input {x}", RuntimeWarning, stacklevel=2)
    return x * x


def test_run_in_processes_returns_every_result_and_forwards_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = dict(run_in_processes(_square_and_warn, [(2,), (3,), (4,)], jobs=2))
    assert results == {0: 4, 1: 9, 2: 16}
    assert [str(w.message) for w in caught] == ["odd input 3"]
    assert caught[0].category is RuntimeWarning


def test_run_in_processes_raises_a_workers_error_in_the_parent():
    with pytest.raises(ValueError, match="negative input -1"):
        dict(run_in_processes(_square_and_warn, [(1,), (-1,)], jobs=2))
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        dict(run_in_processes(_square_and_warn, [(1,)], jobs=0))


def test_default_threads_share_the_cores():
    cores = default_threads(1)
    assert cores >= 1
    assert default_threads(2) == max(1, cores // 2)
    assert default_threads(10 * cores) == 1


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_pickle_with_their_derivatives(name):
    """Networks and Hamiltonians travel between processes, so their activations must pickle
    and compute the same values afterwards."""
    act = get_activation(name, alpha=2.0)
    back = pickle.loads(pickle.dumps(act))
    a = torch.linspace(-3, 3, 13)
    h, g = act.fn(a), torch.linspace(0.5, 2, 13)
    assert torch.equal(back.fn(a), h)
    assert torch.equal(back.derivative(a, h), act.derivative(a, h))
    assert torch.equal(back.second_derivative(a, h), act.second_derivative(a, h))
    assert torch.equal(back.scale_by_derivative(g, a, h), act.scale_by_derivative(g, a, h))
    assert torch.equal(back.scale_by_second_derivative(g, a, h),
                       act.scale_by_second_derivative(g, a, h))


def test_variants_in_worker_processes_match_the_one_process_run(tmp_path):
    """Every metric of every variant equals, bit for bit, that of a one-process run with the
    workers' thread count (1 here), and the figures are drawn from the returned artefacts."""
    config = tiny_config(epochs=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = run_experiment(config, tmp_path / "one", progress=False, figures=False)
    finally:
        torch.set_num_threads(threads)
    lines: list[str] = []
    together = run_experiment(config, tmp_path / "two", progress=False, jobs=2,
                              report=lines.append)
    assert list(together["variants"]) == list(VARIANTS)  # the config's order
    for variant in VARIANTS:
        a, b = alone["variants"][variant], together["variants"][variant]
        assert set(a) == set(b)
        for key in set(a) - TIMINGS:
            assert a[key] == b[key], (variant, key)
        saved = json.loads((tmp_path / "two" / variant / "metrics.json").read_text())
        assert saved["neg_elbo_per_n"] == b["neg_elbo_per_n"]
    assert any("in 2 worker processes, 1 torch thread(s) each" in line for line in lines)
    assert sum("-ELBO/N" in line for line in lines) == len(VARIANTS)
    assert sorted(p.name for p in (tmp_path / "two" / "figures").iterdir()) == sorted(
        p.name for p in (tmp_path / "two" / "figures").iterdir() if p.suffix == ".png")
    assert any((tmp_path / "two" / "figures").iterdir())


def test_jobs_below_one_is_refused_before_any_work(tmp_path):
    with pytest.raises(RunError, match="--jobs must be at least 1"):
        run_experiment(tiny_config(), tmp_path / "r", progress=False, jobs=0)
    assert not (tmp_path / "r").exists()


def test_memory_check_adds_the_variants_that_run_at_once(monkeypatch):
    import pyro_razor.runs.variants as variants

    config = tiny_config()
    one = check_memory(config, "cpu")
    assert "variants at once" not in one
    estimates = sorted(variants.estimate_variant_memory(config, v).total for v in VARIANTS)
    # room for the largest variant alone, not for the two largest together
    monkeypatch.setattr(variants, "available_memory", lambda device: estimates[-1] + 1)
    check_memory(config, "cpu")
    with pytest.raises(RunError, match="with 2 variants at once: .* use fewer --jobs"):
        check_memory(config, "cpu", jobs=2)
    monkeypatch.setattr(variants, "available_memory", lambda device: 10 * estimates[-1])
    assert "for 3 variants at once" in check_memory(config, "cpu", jobs=3)


def test_cli_run_with_jobs(tmp_path, capsys):
    """``pyro-razor run --jobs 2`` reports every variant and the results table (warnings
    raised in the workers are raised again in the parent, where the command's one-line
    format applies: the first test above and test_cli's warning test); ``--jobs 0`` is an
    argument error."""
    from test_cli import write_config

    from pyro_razor.cli import main

    config = write_config(tmp_path / "tiny.toml")
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--no-progress",
                 "--no-figures"]) == 0
    printed = capsys.readouterr()
    assert "in 2 worker processes" in printed.out
    for variant in ("vanilla", "learned"):  # the variants of test_cli's tiny config
        assert f"{variant}: -ELBO/N" in printed.out
    assert f"results in {out}" in printed.out
    assert "Traceback" not in printed.err
    with pytest.raises(SystemExit):
        main(["run", str(config), "--jobs", "0"])
