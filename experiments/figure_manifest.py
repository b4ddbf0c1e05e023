"""Which run made each shipped figure: ``experiments/figures/MANIFEST.json`` and its check.

    python experiments/figure_manifest.py add RUN_DIR CONFIG --commit SHA [--wall-s S]
    python experiments/figure_manifest.py adopt FIGURE CONFIG --reason TEXT
    python experiments/figure_manifest.py check

``add`` copies every ``RUN_DIR/figures/*.png`` to ``experiments/figures/<run name>__<figure>``
and records, per copied file, the config it was made from (its path and SHA-256), the commit
the run ran at, the run's own copy of its config (SHA-256 of ``RUN_DIR/config.toml``), the
figure's SHA-256 and the run's wall time. ``adopt`` records a figure shipped before the
manifest existed, whose run is not known, as **unverified** (with the reason and no config
hash): ``check`` lists those as debt, never as verified. ``check`` (run by
``tests/test_figure_manifest.py``, so CI runs it) fails, one line per problem, when

- a figure under ``experiments/figures/`` has no manifest entry, or its bytes changed;
- the config a (verified) figure was made from no longer has the recorded SHA-256 (the
  figure shows a superseded setting: regenerate it with ``pyro-razor run`` and ``add``);
- ``README.md`` or ``experiments/RESULTS.md`` embeds a figure that is not shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "experiments" / "figures"
MANIFEST = FIGURES / "MANIFEST.json"
DOCUMENTS = (ROOT / "README.md", ROOT / "experiments" / "RESULTS.md")
EMBEDDED = re.compile(r"!\[[^\]]*\]\(([^)]+\.png)\)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(manifest: Path = MANIFEST) -> dict:
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def add(run_dir: Path, config: Path, commit: str, wall_s: float | None = None,
        figures: Path = FIGURES, manifest: Path = MANIFEST) -> list[str]:
    """Copy a run's figures into ``figures`` and record them; returns the copied names."""
    sources = sorted((run_dir / "figures").glob("*.png"))
    if not sources:
        raise SystemExit(f"figure_manifest: no figures in {run_dir / 'figures'}; run "
                         "`pyro-razor run` (or `analyse`) on it first")
    if not config.is_file():
        raise SystemExit(f"figure_manifest: no config {config}")
    entries = load(manifest)
    name = run_dir.name
    copied = []
    for source in sources:
        target = figures / f"{name}__{source.name}"
        shutil.copyfile(source, target)
        entries[target.name] = {
            "config": config.resolve().relative_to(ROOT).as_posix(),
            "config_sha256": sha256(config), "run_config_sha256": sha256(run_dir / "config.toml"),
            "commit": commit, "wall_s": wall_s, "png_sha256": sha256(target)}
        copied.append(target.name)
    manifest.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")
    return copied


def adopt(figure: Path, config: Path, reason: str, manifest: Path = MANIFEST) -> None:
    """Record a shipped figure of unknown run as unverified (module docstring)."""
    if not figure.is_file():
        raise SystemExit(f"figure_manifest: no figure {figure}")
    entries = load(manifest)
    entries[figure.name] = {"config": config.resolve().relative_to(ROOT).as_posix(),
                            "verified": False, "reason": reason,
                            "png_sha256": sha256(figure)}
    manifest.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")


def unverified(manifest: Path = MANIFEST) -> list[str]:
    """Names of the figures recorded as unverified (made before the manifest)."""
    return sorted(k for k, v in load(manifest).items() if v.get("verified") is False)


def problems(figures: Path = FIGURES, manifest: Path = MANIFEST,
             documents=DOCUMENTS, root: Path = ROOT) -> list[str]:
    """Every way the shipped figures disagree with the manifest or the documents."""
    entries = load(manifest)
    out = []
    for png in sorted(figures.glob("*.png")):
        entry = entries.get(png.name)
        if entry is None:
            out.append(f"{png.name}: not in {manifest.name}; regenerate it and `add` its run")
            continue
        if sha256(png) != entry["png_sha256"]:
            out.append(f"{png.name}: changed since it was recorded")
        config = root / entry["config"]
        if entry.get("verified") is False:
            continue
        if not config.is_file() or sha256(config) != entry["config_sha256"]:
            out.append(f"{png.name}: made from a different {entry['config']} than today's; "
                       "regenerate it")
    for name in sorted(set(entries) - {p.name for p in figures.glob("*.png")}):
        out.append(f"{name}: in {manifest.name} but not shipped")
    for document in documents:
        for link in EMBEDDED.findall(document.read_text()):
            if not (document.parent / link).is_file():
                out.append(f"{document.name} embeds {link}, which is not shipped")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    adding = sub.add_parser("add")
    adding.add_argument("run_dir", type=Path)
    adding.add_argument("config", type=Path)
    adding.add_argument("--commit", required=True)
    adding.add_argument("--wall-s", type=float, default=None)
    adopting = sub.add_parser("adopt")
    adopting.add_argument("figure", type=Path)
    adopting.add_argument("config", type=Path)
    adopting.add_argument("--reason", required=True)
    sub.add_parser("check")
    args = parser.parse_args(argv)
    if args.command == "add":
        for name in add(args.run_dir, args.config, args.commit, args.wall_s):
            print(name)
        return 0
    if args.command == "adopt":
        adopt(args.figure, args.config, args.reason)
        return 0
    for name in unverified():
        print(f"unverified (made before the manifest): {name}")
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
