"""The ``pyro-razor`` command line."""

from __future__ import annotations

import argparse
import sys

from pyro_razor import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyro-razor",
        description="Learn conserved quantities and symmetries of Hamiltonian systems "
        "with Noether's razor (Bayesian model selection in Pyro).",
    )
    parser.add_argument("--version", action="version", version=f"pyro-razor {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
