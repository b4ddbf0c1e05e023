"""Bad input to the command line: damaged run files, bad output paths, impossible sizes and
diverging training each end in one line ``pyro-razor: error: ...`` (exit status 2) and leave the
files on disk as they were; the memory estimate matches measured peaks."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pyro_razor.cli import main
from pyro_razor.configio import dump_toml
from pyro_razor.inference import load_checkpoint

TINY = {
    "name": "tiny_rel",
    "variants": ["vanilla", "learned"],
    "data": {"system": "sho", "n_train": 3, "train_points": 4, "n_test": 3, "test_points": 5,
             "dt": 0.2},
    "model": {"hidden": [8], "integrator_steps": 2, "tau_samples": 4, "measure": "cube",
              "num_quantities": 1, "eta_init_std": 0.1},
    "train": {"epochs": 2, "num_particles": 2, "lr": 0.01, "checkpoint_every": 1},
    "evaluation": {"num_samples": 2, "tau_samples": 8, "rollout_points": 8,
                   "rollout_trajectories": 2, "grid": 9},
}
RUN = ["--no-progress", "--no-figures"]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def write_config(path: Path, **sections) -> Path:
    """TINY with some sections' keys replaced, e.g. ``train={"lr": 1000.0}``."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in TINY.items()}
    for name, changes in sections.items():
        data[name] = {**data[name], **changes} if isinstance(changes, dict) else changes
    path.write_text(dump_toml(data))
    return path


def one_line_error(capsys, err: str | None = None) -> str:
    """stderr (``err``, else what ``capsys`` captured) must be exactly one ``pyro-razor:
    error: ...`` line, without a traceback."""
    err = capsys.readouterr().err if err is None else err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pyro-razor: error: ")
    assert "Traceback" not in err
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under ``root``: files with their bytes and mtime, directories as ``None``."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-variant run (config file, run directory)."""
    work = tmp_path_factory.mktemp("rel")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYRO_RAZOR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        config = write_config(work / "tiny.toml")
        assert main(["run", str(config), "--out", str(work / "run"), *RUN]) == 0
    return config, work / "run"


@pytest.fixture
def copy(finished, tmp_path):
    """A private copy of the finished run to damage."""
    return shutil.copytree(finished[1], tmp_path / "run")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(bytes(torch.randint(0, 256, (777,), generator=torch.Generator()
                                         .manual_seed(5), dtype=torch.uint8).tolist()))


# ------------------------------------------------------------------------- damaged run files


def wrong_checkpoint(path: Path) -> None:
    torch.save({"format": 2, "epoch": 1}, path)


@pytest.mark.parametrize("damage", [truncate, garbage, wrong_checkpoint])
@pytest.mark.parametrize("command", ["resume", "analyse", "ppc"])
def test_damaged_checkpoint(finished, copy, capsys, damage, command):
    damage(copy / "learned" / "checkpoint.pt")
    before = snapshot(copy)
    argv = {"resume": ["run", str(finished[0]), "--out", str(copy), "--resume", *RUN],
            "analyse": ["analyse", str(copy)], "ppc": ["ppc", str(copy)]}[command]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert str(copy / "learned" / "checkpoint.pt") in line
    assert ("unreadable" in line) if damage is not wrong_checkpoint else ("lacks history" in line)
    assert "delete it to retrain variant 'learned'" in line and "--resume" in line
    assert snapshot(copy) == before  # the damaged checkpoint is not overwritten


def list_instead_of_object(path: Path) -> None:
    path.write_text(json.dumps([1, 2, 3]))


def variants_not_a_mapping(path: Path) -> None:
    path.write_text(json.dumps({"experiment": "x", "variants": ["vanilla", "learned"]}))


@pytest.mark.parametrize("damage", [truncate, garbage, list_instead_of_object,
                                    variants_not_a_mapping])
@pytest.mark.parametrize("command", ["table", "analyse", "ppc"])
def test_damaged_summary(copy, capsys, damage, command):
    damage(copy / "summary.json")
    before = snapshot(copy)
    assert main([command, str(copy)]) == 2
    line = one_line_error(capsys)
    assert f"{copy / 'summary.json'} is damaged" in line
    expected = {truncate: ["not valid JSON"], garbage: ["not UTF-8 text", "not valid JSON"],
                list_instead_of_object: ["expected a JSON object, got a list"],
                variants_not_a_mapping: ["'variants' must be an object of per-variant "
                                         "results, got a list"]}[damage]
    assert any(words in line for words in expected)
    assert f"pyro-razor run {copy / 'config.toml'} --out {copy} --resume" in line
    assert snapshot(copy) == before


@pytest.mark.parametrize("damage", [truncate, list_instead_of_object])
def test_table_checks_every_metrics_file(copy, capsys, damage):
    damage(copy / "vanilla" / "metrics.json")
    before = snapshot(copy)
    assert main(["table", str(copy)]) == 2
    line = one_line_error(capsys)
    assert f"{copy / 'vanilla' / 'metrics.json'} is damaged" in line
    assert "delete it and run" in line and "--resume` to recompute it" in line
    assert capsys.readouterr().out == ""  # no table
    assert snapshot(copy) == before


def test_damaged_metrics_stop_a_resume_before_any_write(finished, copy, capsys):
    truncate(copy / "learned" / "metrics.json")
    before = snapshot(copy)
    assert main(["run", str(finished[0]), "--out", str(copy), "--resume", *RUN]) == 2
    assert "learned/metrics.json is damaged: not valid JSON" in one_line_error(capsys)
    assert snapshot(copy) == before


# ------------------------------------------------------------------------- output paths


def test_out_is_a_file_or_under_a_file(finished, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory\n")
    assert main(["run", str(finished[0]), "--out", str(blocker), *RUN]) == 2
    assert f"output directory {blocker} is an existing file" in one_line_error(capsys)
    assert main(["run", str(finished[0]), "--out", str(blocker / "a" / "b"), *RUN]) == 2
    line = one_line_error(capsys)
    assert f"lies under {blocker}, which is a file" in line and "choose another --out" in line
    assert blocker.read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# ------------------------------------------------------------------------- impossible sizes


@pytest.mark.parametrize("section, key, value, words", [
    ("model", "hidden", [1000000, 1000000], "use a smaller network (model.hidden"),
    ("data", "n_train", 100000000000, "use fewer or shorter trajectories (data.n_train"),
])
def test_impossible_sizes_are_refused_before_any_work(tmp_path, capsys, section, key, value,
                                                      words):
    config = write_config(tmp_path / "big.toml", **{section: {key: value}})
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), *RUN]) == 2
    line = one_line_error(capsys)
    assert "'tiny_rel' does not fit in memory: memory estimate" in line
    assert " available on cpu" in line and words in line
    assert not out.exists()


def test_run_and_bench_report_the_estimate(tmp_path, capsys):
    from pyro_razor.runs import load_experiment
    from pyro_razor.runs.variants import estimate_variant_memory

    config = write_config(tmp_path / "tiny.toml", variants=["learned"])
    assert main(["bench", str(config), "--steps", "1", "--warmup", "0"]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    row = [c.strip() for c in table[2].strip("|").split("|")]
    expected = estimate_variant_memory(load_experiment(config), "learned").total / 2**20
    assert float(row[header.index("est. MiB")]) == pytest.approx(expected, rel=1e-2)


# ------------------------------------------------------------------------- divergence


def finite_checkpoint(path: Path) -> dict:
    ckpt = load_checkpoint(path)
    for name, value in ckpt["param_store"]["params"].items():
        assert torch.isfinite(value).all(), name
    return ckpt


def test_divergence_of_a_fresh_run(tmp_path, capsys):
    config = write_config(tmp_path / "bad.toml", variants=["learned"], train={"lr": 1000.0})
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), *RUN]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("tiny_rel: memory estimate ")  # run's first line
    assert len(captured.out.splitlines()) == 1
    line = one_line_error(capsys, captured.err)
    assert "variant 'learned' diverged in epoch 1: parameter " in line
    assert "train.lr = 1000" in line and "model.integrator_steps = 2" in line
    assert "no checkpoint was written yet, so the variant restarts from scratch" in line
    assert "--resume --warm-start" in line
    assert not (out / "learned" / "checkpoint.pt").exists()


def test_divergence_keeps_the_last_good_checkpoint_and_warm_start_continues(tmp_path, capsys):
    out = tmp_path / "out"
    good = write_config(tmp_path / "good.toml", variants=["learned"])
    assert main(["run", str(good), "--out", str(out), *RUN]) == 0
    ckpt_path = out / "learned" / "checkpoint.pt"
    kept = ckpt_path.read_bytes()
    capsys.readouterr()

    bad = write_config(tmp_path / "bad.toml", variants=["learned"],
                       train={"lr": 1000.0, "epochs": 5})
    assert main(["run", str(bad), "--out", str(out), "--resume", *RUN]) == 2
    assert "add --warm-start" in one_line_error(capsys)  # plain resume needs the same settings
    assert main(["run", str(bad), "--out", str(out), "--warm-start", *RUN]) == 2
    assert "pass it together with --resume" in one_line_error(capsys)
    other = write_config(tmp_path / "other.toml", variants=["learned"], model={"hidden": [9]},
                         train={"lr": 1000.0})
    assert main(["run", str(other), "--out", str(out), "--resume", "--warm-start", *RUN]) == 2
    assert "cannot warm-start" in (line := one_line_error(capsys)) and "model.hidden" in line

    assert main(["run", str(bad), "--out", str(out), "--resume", "--warm-start", *RUN]) == 2
    line = one_line_error(capsys)
    assert "variant 'learned' diverged in epoch 3:" in line
    assert f"the last good checkpoint (epoch 2) is kept in {ckpt_path}" in line
    assert ckpt_path.read_bytes() == kept
    assert finite_checkpoint(ckpt_path)["epoch"] == 2

    sane = write_config(tmp_path / "sane.toml", variants=["learned"],
                        train={"lr": 0.005, "epochs": 4})
    assert main(["run", str(sane), "--out", str(out), "--resume", "--warm-start", *RUN]) == 0
    ckpt = finite_checkpoint(ckpt_path)
    assert ckpt["epoch"] == 4 and [r["epoch"] for r in ckpt["history"]] == [1, 2, 3, 4]
    assert ckpt["history"][2]["lr"] == pytest.approx(0.0025)  # a fresh schedule at 0.005
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variants"]["learned"]["epochs"] == 4
    assert math.isfinite(summary["variants"]["learned"]["neg_elbo_per_n"])


def test_a_resumed_warm_start_is_bit_identical(tmp_path, capsys):
    """A warm-started run interrupted and resumed (plain --resume) equals the uninterrupted
    one: the restarted learning-rate schedule is rebuilt from the checkpoint."""
    from dataclasses import replace

    from pyro_razor.inference import train
    from pyro_razor.runs import fresh_variant, load_experiment
    from pyro_razor.runs.data import RunData

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--warm-start" in capsys.readouterr().out
    config = load_experiment(write_config(tmp_path / "c.toml", variants=["learned"]))
    data = RunData.load(config.data, torch.device("cpu"), config.torch_dtype)
    changed = replace(config.train, lr=0.02, epochs=4)

    def history(path: Path, interrupt: bool) -> list[dict]:
        model, guide = fresh_variant(config, "learned", data.system, "cpu",
                                     data.states, data.next_states)
        args = (model, guide, data.states, data.next_states)
        train(*args, config.train, checkpoint=path, progress=False)

        def stop(epoch, record):
            if interrupt and epoch == 3:
                raise KeyboardInterrupt

        try:
            result = train(*args, changed, checkpoint=path, resume=True, warm_start=True,
                           progress=False, callback=stop)
        except KeyboardInterrupt:
            result = train(*args, changed, checkpoint=path, resume=True, progress=False)
        return [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]

    whole = history(tmp_path / "a.pt", interrupt=False)
    assert [r["epoch"] for r in whole] == [1, 2, 3, 4] and whole[2]["lr"] == 0.01
    assert history(tmp_path / "b.pt", interrupt=True) == whole


# ------------------------------------------------------------------------- memory estimate

MEASURE = textwrap.dedent('''
    import ctypes, gc, json, sys
    import torch
    from pyro_razor.inference import TrainingStep
    from pyro_razor.runs import fresh_variant, load_experiment
    from pyro_razor.runs.data import RunData
    from pyro_razor.runs.variants import estimate_variant_memory

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    out = []
    for path in sys.argv[1:]:
        config = load_experiment(path)
        variant = config.variants[0]
        data = RunData.load(config.data, torch.device("cpu"), config.torch_dtype)
        model, guide = fresh_variant(config, variant, data.system, "cpu",
                                     data.states, data.next_states)
        step = TrainingStep(model, guide, config.train, total_steps=10)
        torch.set_flush_denormal(True)
        step(data.states, data.next_states)  # warm-up: code pages and the optimiser state
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        step(data.states, data.next_states)
        out.append([status("VmHWM") - before,
                    estimate_variant_memory(config, variant).activations])
    print(json.dumps(out))
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_memory_estimate_matches_the_measured_peak_of_an_svi_step(tmp_path):
    """Peak RSS increase of one SVI step (after a warm-up step, in a fresh process) against the
    estimated activations (within 2x), for a 200-wide learned step on the blocked fast path, a
    64-wide one on plain autograd and a vanilla one (the calibration of
    ``inference/memory.py``)."""
    configs = [
        write_config(tmp_path / "a.toml", variants=["learned"],
                     data={"n_train": 8, "train_points": 11},
                     model={"hidden": [200, 200], "integrator_steps": 10, "tau_samples": 128},
                     train={"num_particles": 4}),
        write_config(tmp_path / "b.toml", variants=["learned"],
                     data={"n_train": 8, "train_points": 11},
                     model={"hidden": [64, 64], "integrator_steps": 5, "tau_samples": 16}),
        write_config(tmp_path / "c.toml", variants=["vanilla"],
                     data={"n_train": 8, "train_points": 11},
                     model={"hidden": [200, 200], "integrator_steps": 20},
                     train={"num_particles": 4}),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, *map(str, configs)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for measured, estimated in json.loads(done.stdout.strip().splitlines()[-1]):
        assert 10e6 < estimated < 200e6
        assert estimated / 2 < measured < 2 * estimated, (measured, estimated)
