"""The ``pyro-razor`` command line: sub-commands, output, and one-line user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pyro_razor import __version__
from pyro_razor.cli import main
from pyro_razor.configio import dump_toml

TINY = {
    "name": "tiny_cli",
    "variants": ["vanilla", "learned"],
    "data": {"system": "sho", "n_train": 3, "train_points": 4, "n_test": 3, "test_points": 5,
             "dt": 0.2},
    "model": {"hidden": [8], "integrator_steps": 2, "tau_samples": 4, "measure": "cube",
              "num_quantities": 1, "eta_init_std": 0.1},
    "train": {"epochs": 2, "num_particles": 2, "lr": 0.01},
    "evaluation": {"num_samples": 2, "tau_samples": 8, "rollout_points": 8,
                   "rollout_trajectories": 2, "grid": 9},
}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def write_config(path: Path, data: dict = TINY) -> Path:
    path.write_text(dump_toml(data))
    return path


def one_line_error(capsys) -> str:
    """stderr must be exactly one ``pyro-razor: error: ...`` line, without a traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyro-razor: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """``pyro-razor run`` of the tiny config with the default output directory."""
    work = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        config = write_config(work / "tiny.toml")
        code = main(["run", str(config), "--no-progress", "--seed", "3"])
    return code, work / "runs" / "tiny_cli"


# ----------------------------------------------------------------------------- basics


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "analyse", "table", "ppc", "bench"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--out", "--device", "--seed", "--epochs", "--resume", "--no-progress"):
        assert option in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyro-razor {__version__}"


def help_text(capsys, *argv: str) -> str:
    """The ``--help`` output of ``pyro-razor ARGV``, on one line (argparse wraps at width)."""
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_describes_every_command_and_states_defaults(capsys):
    """A new user finds what each command does, the defaults, and the CSV columns in --help."""
    import inspect

    from pyro_razor.runs import run_ppc
    from pyro_razor.runs.discover import STEPS

    top = help_text(capsys)
    for line in ("analyse recompute rollouts, symmetry analysis and figures of a finished run",
                 "table paper-style results table of finished runs",
                 "ppc posterior predictive checks of a finished run (ArviZ)"):
        assert line in top
    for command in ("analyse", "table", "ppc"):
        text = help_text(capsys, command)
        description = text.split("positional arguments:")[0].split("]", 1)[-1]
        assert len(description.split()) > 10, (command, text)  # more than the usage line
    discover = help_text(capsys, "discover")
    assert f"default: about {STEPS} steps" in discover
    assert "--seed N seed of" in discover and "(default: 0)" in discover
    assert "--device DEVICE torch device" in discover and "(default: cpu)" in discover
    assert "--test-fraction F share of trajectories held out" in discover
    assert "(default: 0.2)" in discover
    for column in ("trajectory, traj or id", "time or t"):
        assert column in discover
    ppc = help_text(capsys, "ppc")
    samples = inspect.signature(run_ppc).parameters["samples"].default
    assert f"--samples N posterior samples (default: {samples})" in ppc
    assert "--horizon T rollout length in dt steps (default: the test trajectories' length" in ppc


def test_run_with_many_quantities_draws_a_readable_generator_figure(tmp_path, monkeypatch):
    """``model.num_quantities = 40``: the generator figure shows 30 of them, and says so."""
    import pyro_razor.plotting as plotting

    drawn = []
    plot = plotting.plot_generators
    monkeypatch.setattr(plotting, "plot_generators",
                        lambda *a, **k: drawn.append(plot(*a, **k)) or drawn[-1])
    many = {**TINY, "name": "many", "variants": ["learned"],
            "model": {**TINY["model"], "num_quantities": 40}, "train": {**TINY["train"],
                                                                       "epochs": 1}}
    config = write_config(tmp_path / "many.toml", many)
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    (fig,) = drawn
    generators = [ax for ax in fig.axes if ax.images and ax.get_title().startswith("G")]
    assert len(generators) == 30
    assert "(30 of 40 shown, largest norm)" in fig.subfigs[0].get_suptitle()
    assert (tmp_path / "run" / "figures" / "generators_learned.png").is_file()


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: pyro-razor" in capsys.readouterr().out


def test_argparse_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "x.toml", "--epochs", "-3"])
    assert info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------- run / table / analyse


def test_run_writes_default_out_dir_and_prints_table(finished_run):
    code, out = finished_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["variants"]) == ["vanilla", "learned"]
    assert summary["variants"]["learned"]["epochs"] == 2
    config = (out / "config.toml").read_text()
    assert "seed = 3" in config  # the --seed override is part of the resolved config


def test_table_prints_every_variant(finished_run, capsys):
    _, out = finished_run
    assert main(["table", str(out), str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("| HNN + learned symmetry |") == 2
    summary = json.loads((out / "summary.json").read_text())
    row = next(line for line in text.splitlines() if line.startswith("| HNN |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    value, se = (float(part) for part in cells[4].split(" ± "))
    vanilla = summary["variants"]["vanilla"]
    assert value == pytest.approx(vanilla["neg_elbo_per_n"], rel=5e-4)
    assert se == pytest.approx(vanilla["standard_errors"]["neg_elbo_per_n"], rel=5e-4)


def test_run_keeps_its_warnings_in_the_json_and_prints_each_on_one_line(tmp_path, capsys,
                                                                      monkeypatch):
    """A runtime warning raised while a variant trains is printed as one ``pyro-razor:
    warning:`` line (no Python source line) and kept in that variant's metrics.json and in
    summary.json; the other variant's JSON has none."""
    import warnings

    from pyro_razor import inference

    real_train = inference.train

    def warning_train(model, *args, **kwargs):
        if model.num_quantities:
            warnings.warn("learned: the posterior scale is capped; train longer", RuntimeWarning,
                          stacklevel=2)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(inference, "train", warning_train)
    config = write_config(tmp_path / "tiny.toml")
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--no-progress", "--no-figures"]) == 0
    printed = capsys.readouterr()
    err = printed.err
    # every stage of a variant says what comes next (here: the rollouts after the metrics)
    assert "learned: metrics in " in printed.out and "long-horizon rollouts of 8 points" in (
        printed.out)
    shown = [line for line in err.splitlines() if "posterior scale is capped" in line]
    assert shown == ["pyro-razor: warning: learned: the posterior scale is capped; train longer"]
    assert "warning_train" not in err and "warnings.warn(" not in err
    learned = json.loads((out / "learned" / "metrics.json").read_text())
    assert "learned: the posterior scale is capped; train longer" in learned["warnings"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"]["learned"]["warnings"] == learned["warnings"]
    assert not any("capped" in w for w in summary["variants"]["vanilla"]["warnings"])


def test_analyse_rewrites_figures(finished_run, capsys):
    _, out = finished_run
    (out / "figures" / "rollouts.png").unlink()
    assert main(["analyse", str(out)]) == 0
    assert (out / "figures" / "rollouts.png").is_file()
    assert "HNN + learned symmetry" in capsys.readouterr().out


def test_rerun_into_existing_dir_needs_resume(finished_run, capsys, monkeypatch):
    _, out = finished_run
    config = write_config(out.parent.parent / "again.toml")
    assert main(["run", str(config), "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in one_line_error(capsys)
    # --resume with the same settings (the saved config has seed 3) trains nothing
    from pyro_razor import inference

    monkeypatch.setattr(inference, "train", lambda *a, **k: pytest.fail("trained again"))
    code = main(["run", str(config), "--out", str(out), "--no-progress", "--resume",
                 "--seed", "3", "--no-figures"])
    assert code == 0


def test_seconds_per_step_predicts_the_training_time(tmp_path):
    """The estimate ``discover`` prints is built from :func:`seconds_per_step`: 5 timed steps
    of each variant predict the seconds per step of a 40-epoch training of the same config
    within a factor of 3 (both measured in this process, one after the other)."""
    from pyro_razor import inference
    from pyro_razor.runs.benchmark import seconds_per_step
    from pyro_razor.runs.config import load_experiment
    from pyro_razor.runs.data import RunData
    from pyro_razor.runs.variants import fresh_variant

    config = load_experiment(write_config(tmp_path / "tiny.toml",
                                          {**TINY, "train": {**TINY["train"], "epochs": 40}}))
    predicted = seconds_per_step(config, ("vanilla", "learned"))
    data = RunData.load(config.data, "cpu", config.torch_dtype)
    for variant, estimate in predicted.items():
        model, guide = fresh_variant(config, variant, data.system, "cpu", data.states,
                                     data.next_states)
        result = inference.train(model, guide, data.states, data.next_states, config.train,
                                 progress=False)
        print(variant, "predicted", estimate, "measured", result.seconds_per_step)
        assert 1 / 3 < estimate / result.seconds_per_step < 3, variant


def test_bench_prints_a_table(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.toml", {**TINY, "variants": ["learned"]})
    assert main(["bench", str(config), "--steps", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("| case | variant | device | s/step (median)")
    assert len(out) == 3 and out[2].startswith("| tiny_cli | learned | cpu |")
    seconds = float(out[2].split("|")[4])
    assert seconds > 0
    assert main(["bench", str(config), "--steps", "1", "--warmup", "0", "--checkpoint-steps"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[2].startswith("| tiny_cli+ckpt | learned | cpu |")


def test_ppc_forwards_its_options(monkeypatch, tmp_path):
    import pyro_razor.runs

    calls = []
    monkeypatch.setattr(pyro_razor.runs, "run_ppc", lambda *a, **k: calls.append((a, k)) or {})
    assert main(["ppc", str(tmp_path), "--variant", "learned", "--samples", "5",
                 "--horizon", "7"]) == 0
    assert calls == [((str(tmp_path),), {"variant": "learned", "samples": 5, "horizon": 7})]
    assert main(["ppc", str(tmp_path)]) == 0
    assert calls[1] == ((str(tmp_path),), {"variant": None})


# ----------------------------------------------------------------------------- user errors


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in one_line_error(capsys)


def test_bad_config_names_the_key(tmp_path, capsys):
    bad = {**TINY, "model": {**TINY["model"], "hiden": [8]}}
    assert main(["run", str(write_config(tmp_path / "bad.toml", bad))]) == 2
    line = one_line_error(capsys)
    assert "unknown key 'model.hiden'" in line and "did you mean 'hidden'" in line
    bad = {**TINY, "train": {**TINY["train"], "epochs": -1}}
    assert main(["run", str(write_config(tmp_path / "bad.toml", bad))]) == 2
    assert "epochs must be >= 1" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.toml")
    out = tmp_path / "out"
    assert main(["run", str(config), "--device", "cuda", "--out", str(out)]) == 2
    assert "CUDA is not available" in one_line_error(capsys)
    assert not out.exists()  # nothing was done
    assert main(["bench", str(config), "--device", "cuda"]) == 2
    assert "CUDA is not available" in one_line_error(capsys)


def test_bench_unknown_case(capsys):
    assert main(["bench", "--case", "ref_table9"]) == 2
    assert "unknown benchmark case(s) ['ref_table9']" in one_line_error(capsys)


def test_analyse_and_table_of_a_dir_without_summary(tmp_path, capsys):
    assert main(["analyse", str(tmp_path)]) == 2
    assert "no summary.json" in one_line_error(capsys)
    assert main(["table", str(tmp_path)]) == 2
    assert "no summary.json" in one_line_error(capsys)


def test_bench_quotes_reference_figures_without_a_ratio():
    from pyro_razor.runs.benchmark import BenchResult, format_bench

    result = BenchResult("ref_table1", "learned", "cpu", 30.0, 29.0, 3, 1400.0, 900.0, 26.5)
    header, _, row = format_bench([result]).strip().splitlines()
    assert "quoted from another machine" in header and "/ ours" not in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-1] == "26.5 (quoted)"
    assert len(cells) == len(header.strip("|").split("|")) == 10
