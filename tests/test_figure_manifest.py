"""Every figure shipped under experiments/figures/ was made by the config and commit its
manifest names (experiments/figure_manifest.py), and the check catches a stale one."""

from __future__ import annotations

import json

import pytest
from experiment_scripts import load_experiment


@pytest.fixture(scope="module")
def manifest():
    return load_experiment("figure_manifest.py")


#: Figures shipped before the manifest whose run is not known (recorded as unverified); this
#: set may only shrink (regenerate one with its config and `figure_manifest.py add`): it is
#: empty since the n = 2 figures were re-made on 2026-12-07.
UNVERIFIED: set[str] = set()


def test_shipped_figures_match_their_manifest_and_todays_configs(manifest):
    """The repository's own figures: all recorded, unchanged, from today's configs (or in the
    known list of unverified ones), and every figure README.md / RESULTS.md embeds is
    shipped."""
    assert manifest.problems() == []
    assert set(manifest.unverified()) <= UNVERIFIED


def _run_dir(tmp_path, config_text: str):
    run = tmp_path / "runs" / "demo_quick"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "training_curves.png").write_bytes(b"\x89PNG fake 1")
    (run / "config.toml").write_text(config_text)
    return run


def test_check_flags_unrecorded_changed_and_stale_figures(manifest, tmp_path, monkeypatch):
    """A recorded figure passes; editing its config, its bytes, or adding an unrecorded
    figure each give one named problem; a document embedding a missing figure is flagged."""
    monkeypatch.setattr(manifest, "ROOT", tmp_path)
    figures, index = tmp_path / "figures", tmp_path / "figures" / "MANIFEST.json"
    figures.mkdir()
    config = tmp_path / "demo_quick.toml"
    config.write_text("name = 'demo_quick'\n")
    run = _run_dir(tmp_path, config.read_text())
    doc = tmp_path / "RESULTS.md"
    doc.write_text("![curves](figures/demo_quick__training_curves.png)\n")
    check = lambda: manifest.problems(figures, index, (doc,), tmp_path)  # noqa: E731

    assert manifest.add(run, config, "abc123", 12.0, figures, index) == [
        "demo_quick__training_curves.png"]
    entry = json.loads(index.read_text())["demo_quick__training_curves.png"]
    assert entry["commit"] == "abc123" and entry["config"] == "demo_quick.toml"
    assert check() == []

    config.write_text("name = 'demo_quick'\nepochs = 2\n")
    assert [p.split(":")[0] for p in check()] == ["demo_quick__training_curves.png"]
    assert "different demo_quick.toml" in check()[0]

    config.write_text("name = 'demo_quick'\n")
    (figures / "demo_quick__training_curves.png").write_bytes(b"\x89PNG edited")
    (figures / "other.png").write_bytes(b"\x89PNG")
    doc.write_text("![gone](figures/missing.png)\n")
    found = check()
    assert any("changed since it was recorded" in p for p in found)
    assert any(p.startswith("other.png: not in MANIFEST.json") for p in found)
    assert any("embeds figures/missing.png" in p for p in found)

    manifest.adopt(figures / "other.png", config, "made before the manifest", index)
    assert manifest.unverified(index) == ["other.png"]
    assert not any(p.startswith("other.png") for p in check())
